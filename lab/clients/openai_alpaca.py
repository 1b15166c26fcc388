"""Alpaca-style self-instruct with the plain openai SDK (stanford_alpaca generate_instruction.py).

Each request is the Alpaca generation prompt plus 3 random seed tasks; each answer is
parsed into new instructions, which then get an answer each: the harvesting baseline.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import openai
from _common import DATA, MODEL, RESULT, main, param, rows, sample

PROMPT = (DATA / "alpaca_prompt.txt").read_text()


def encode(tasks: list[dict]) -> str:
    text = PROMPT + "\n"
    for i, task in enumerate(tasks, 1):
        text += f"###\n{i}. Instruction: {task['instruction']}\n{i}. Input:\n{task['input'] or '<noinput>'}\n"
        text += f"{i}. Output:\n{task['output']}\n"
    return text + f"###\n{len(tasks) + 1}. Instruction:"


def run() -> None:
    client = openai.OpenAI(max_retries=2)
    seeds = rows("alpaca_seed_tasks.jsonl")
    system = param("system")
    generation_requests = param("generation_requests", 60)
    answer_requests = param("answer_requests", 240)
    fallback = sample("alpaca_instructions_400.jsonl", answer_requests, seed=3)
    harvested: list[str] = []

    def ask(content: str, max_tokens: int) -> str | None:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        try:
            answer = client.chat.completions.create(
                model=MODEL, messages=messages, temperature=param("temperature", 1.0), top_p=1.0,
                max_tokens=max_tokens, stop=["\n20", "20.", "20 ."])
        except openai.OpenAIError as exc:
            RESULT.error(exc)
            return None
        RESULT.ok()
        return answer.choices[0].message.content or ""

    import random
    rng = random.Random(param("seed", 0))
    prompts = [encode(rng.sample(seeds, 3)) for _ in range(generation_requests)]
    with ThreadPoolExecutor(param("concurrency", 5)) as pool:
        for text in pool.map(lambda p: ask(p, param("generation_max_tokens", 3072)), prompts):
            for line in re.split(r"\n\d+\s?\. ", text or ""):
                instruction = re.split(r"\d+\.\s?Input:", line)[0].replace("Instruction:", "").strip()
                if 3 < len(instruction.split()) <= 150:
                    harvested.append(instruction)
        work = (harvested + [r["instruction"] for r in fallback])[:answer_requests]
        list(pool.map(lambda p: ask(p, param("max_tokens", 1024)), work))
    RESULT.notes["harvested_instructions"] = len(harvested)


main(run)
