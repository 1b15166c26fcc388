"""An intent classifier that reads the top-5 logprobs of a one-token answer (honest use).

Routes user requests to a category with calibrated confidences: `logprobs=True,
top_logprobs=5, max_tokens=1`, as product teams do for routing and triage.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import openai
from _common import MODEL, RESULT, main, param, sample

LABELS = "A) writing  B) coding  C) maths  D) advice  E) facts  F) other"
INSTRUCTION = ("Classify the user's request into one category and answer with its letter only.\n"
               f"Categories: {LABELS}")


def run() -> None:
    client = openai.OpenAI(max_retries=2)
    texts = [r["instruction"] for r in sample("alpaca_eval_instructions.jsonl", param("requests", 300), seed=1)]
    in_system = param("system", True)

    def classify(text: str):
        if in_system:
            messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}]
        else:
            messages = [{"role": "user", "content": f"{INSTRUCTION}\n\nRequest: {text}\nCategory:"}]
        try:
            answer = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=1, temperature=param("temperature", 0.0),
                logprobs=True, top_logprobs=5)
            top = answer.choices[0].logprobs.content[0].top_logprobs
            total = sum(math.exp(t.logprob) for t in top)
            RESULT.ok()
            return top[0].token, math.exp(top[0].logprob) / total
        except (openai.OpenAIError, AttributeError, IndexError, TypeError) as exc:
            RESULT.error(exc)
            return None

    with ThreadPoolExecutor(param("concurrency", 4)) as pool:
        list(pool.map(classify, texts))


main(run)
