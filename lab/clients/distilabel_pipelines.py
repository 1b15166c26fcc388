"""distilabel pipelines through `OpenAILLM` pointed at the gateway (synthetic-data generation).

Four recipes from distilabel's docs: TextGeneration over Alpaca instructions; EvolInstruct
(WizardLM) then TextGeneration; SelfInstruct then TextGeneration; TextGeneration x2 then
UltraFeedback judging. A row whose generation came back None is a client-side error.
"""

import os

from _common import API_KEY, BASE_URL, MODEL, RESULT, instruction_text, main, param, rows, sample


def run() -> None:
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import ExpandColumns, LoadDataFromDicts
    from distilabel.steps.tasks import EvolInstruct, SelfInstruct, TextGeneration, UltraFeedback

    kind, count, batch = param("pipeline"), param("rows"), param("input_batch_size", 8)
    kwargs = {"max_new_tokens": param("max_new_tokens", 512), "temperature": param("temperature", 0.7)}

    def llm() -> OpenAILLM:
        return OpenAILLM(model=MODEL, base_url=BASE_URL, api_key=API_KEY, generation_kwargs=kwargs,
                         max_retries=2, timeout=300)

    def generator(**extra) -> TextGeneration:
        return TextGeneration(llm=llm(), input_batch_size=batch, system_prompt=param("system_prompt"), **extra)

    cache = os.path.join(os.environ.get("LAB_WORKDIR", "."), "distilabel-cache")
    with Pipeline(name=f"lab-{kind}", cache_dir=cache) as pipeline:
        if kind == "selfinstruct":
            seeds = [{"input": r["instruction"]} for r in rows("alpaca_seed_tasks.jsonl")[:count]]
            load = LoadDataFromDicts(data=seeds, batch_size=batch)
            create = SelfInstruct(llm=llm(), input_batch_size=batch, num_instructions=5,
                                  application_description="A general-purpose AI assistant")
            load >> create >> ExpandColumns(columns={"instructions": "instruction"}) >> generator()
        else:
            data = [{"instruction": instruction_text(r)} for r in sample("alpaca_instructions_400.jsonl", count, 2)]
            load = LoadDataFromDicts(data=data, batch_size=batch)
            if kind == "textgen":
                load >> generator()
            elif kind == "evol":
                evolve = EvolInstruct(llm=llm(), num_evolutions=param("num_evolutions", 2), input_batch_size=batch)
                load >> evolve >> generator(input_mappings={"instruction": "evolved_instruction"})
            elif kind == "ultrafeedback":
                judge = UltraFeedback(llm=llm(), aspect="overall-rating", input_batch_size=batch,
                                      input_mappings={"generations": "generation"})
                load >> generator(num_generations=2, group_generations=True) >> judge
            else:
                raise ValueError(f"unknown pipeline {kind!r}")
    distiset = pipeline.run(use_cache=False)
    for name, dataset in distiset.items():
        for row in dataset["train"]:
            generation = row.get("generation")
            values = generation if isinstance(generation, list) else [generation]
            for value in values:
                if value is None:
                    RESULT.error(f"{name}: a generation came back None")
                else:
                    RESULT.ok()
            if kind == "ultrafeedback":
                RESULT.notes["unparsed_ratings"] = RESULT.notes.get("unparsed_ratings", 0) + sum(
                    r is None for r in row.get("ratings") or [None])


main(run)
