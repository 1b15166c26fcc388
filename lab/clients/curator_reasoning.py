"""bespokelabs-curator distilling reasoning traces: an `LLM` subclass over maths and code problems.

The recipe of curator's reasoning examples (Open-Thoughts style): ask for step-by-step
thinking, keep problem, trace and answer as a training row. Failed rows are client errors.
"""

from _common import API_KEY, BASE_URL, MODEL, RESULT, instruction_text, main, param, sample

SYSTEM = ("Your role as an assistant involves thoroughly exploring questions through a systematic long "
          "thinking process before providing the final precise and accurate solutions. Structure your "
          "response into a Thought section and a Solution section.")


def run() -> None:
    from bespokelabs import curator

    count = param("rows", 250)
    problems = [{"problem": r["prompt"]} for r in sample("arena_hard_v2_math_coding_300.jsonl", count // 2, 4)]
    problems += [{"problem": instruction_text(r)} for r in sample("code_alpaca_300.jsonl", count - len(problems), 5)]
    reasoning = param("reasoning", True)
    in_system = param("system", False)

    class Reasoner(curator.LLM):
        def prompt(self, row):
            if not reasoning:
                return row["problem"]
            if in_system:
                return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["problem"]}]
            return f"{row['problem']}\n\nLet's think step by step, then give the final answer."

        def parse(self, row, response):
            return {"problem": row["problem"], "trace": response}

    llm = Reasoner(
        model_name=MODEL, backend="openai",
        generation_params={"max_tokens": param("max_tokens", 2048), "temperature": param("temperature", 0.7)},
        backend_params={"base_url": BASE_URL, "api_key": API_KEY, "max_retries": 2,
                        "max_requests_per_minute": param("max_requests_per_minute", 600),
                        "max_tokens_per_minute": 10_000_000, "require_all_responses": False},
    )
    result = llm(problems)
    dataset = getattr(result, "dataset", result)
    done = len(dataset)
    RESULT.ok(done)
    if done < len(problems):
        RESULT.error(f"{len(problems) - done} of {len(problems)} rows failed", len(problems) - done)


main(run)
