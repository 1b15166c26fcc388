"""An inspect-ai benchmark run on local data (honest evaluation work).

`arithmetic`: generate() then match() on lab/data/arithmetic_qa_200.jsonl;
`arithmetic_cot`: chain_of_thought() first; `graded`: MT-Bench first turns answered, then
graded by the same model with model_graded_qa() (a judge call per sample).
"""

import os

from _common import MODEL, RESULT, main, param, rows

CRITERION = "A helpful, correct and complete answer that follows the user's instructions."


def run() -> None:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import match, model_graded_qa
    from inspect_ai.solver import chain_of_thought, generate, system_message

    task_kind = param("task", "arithmetic")
    solvers = [system_message("You are a careful assistant. Answer concisely.")] if param("system") else []
    if task_kind == "graded":
        dataset = MemoryDataset([Sample(input=r["turns"][0], target=CRITERION, id=r["question_id"])
                                 for r in rows("mt_bench_questions.jsonl")])
        task = Task(dataset=dataset, solver=[*solvers, generate()], scorer=model_graded_qa())
    else:
        dataset = MemoryDataset([Sample(input=r["question"], target=r["answer"], id=r["id"])
                                 for r in rows("arithmetic_qa_200.jsonl")])
        if task_kind == "arithmetic_cot":
            solvers.append(chain_of_thought())
        task = Task(dataset=dataset, solver=[*solvers, generate()], scorer=match(numeric=True))
    # responses_api=False: the simulator serves Chat Completions only (no /v1/responses yet).
    logs = inspect_eval(task, model=f"openai/{MODEL}", model_args={"responses_api": False}, limit=param("limit"), display="none",
                        max_connections=param("max_connections", 10), max_tokens=param("max_tokens", 1024),
                        temperature=param("temperature", 0.0), fail_on_error=False, retry_on_error=1,
                        log_dir=os.environ.get("INSPECT_LOG_DIR", "logs"))
    for log in logs:
        if log.status != "success":
            RESULT.error(f"eval {log.status}: {log.error}")
        for sample in log.samples or []:
            if sample.error is not None:
                RESULT.error(sample.error.message)
            else:
                RESULT.ok()


main(run)
