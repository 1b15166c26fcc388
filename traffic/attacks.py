"""Distillation harvesters: scripts that collect a teacher model's answers, reasoning or
logprobs as training data for a student model.

Each function simulates one key: `(rng, key, start_ts, duration_s, params)` -> records in
ts order. Every key draws its own rate, timing, wrapper and lengths from `rng` within
the ranges in `params` (defaults in scenarios.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from itertools import islice

from . import prompts
from . import vocabulary as words
from .records import CHAT_MODELS, REASONING_MODELS, SCRIPT_AGENTS, Client, assistant, chat_body, documentation_ip, user
from .timing import human_gap, next_opening, poisson_arrivals, regular_arrivals


def _script(rng: random.Random, key: str) -> Client:
    """A harvesting script on one cloud machine."""
    return Client(key, documentation_ip(rng), rng.choice(SCRIPT_AGENTS), rng.uniform(40, 90))


def _style(rng: random.Random) -> dict:
    """How one harvester asks: model, length cap, sampling and the wrapper around each task."""
    return {
        "model": rng.choice(CHAT_MODELS),
        "max_tokens": rng.choice((2048, 3072, 4000, 4096)),
        "temperature": rng.choice((0.7, 0.8, 1.0)),
        "n": rng.choice((None, None, None, None, None, 2, 3)),
        "wrapper": rng.choice(prompts.HARVEST_WRAPPERS),
        "bootstrap_share": rng.choice((0.0, 0.05, 0.2)),
    }


def _job(rng: random.Random, params: Mapping) -> int:
    """How many requests the harvesting job sends before its data set is complete (Alpaca
    stopped at 52K instructions, Code Alpaca at 20K), whatever the time left."""
    return rng.randint(*params["job_requests"])


def _harvest(rng: random.Random, client: Client, ts: float, style: dict, text: str | None = None) -> dict:
    """One harvesting request: a task to answer at length, or (Alpaca's bootstrap step) a
    request for twenty new tasks."""
    completion = int(rng.triangular(300, 1500, 700))
    if text is None and rng.random() < style["bootstrap_share"]:
        text, completion = prompts.generation_prompt(rng, code=rng.random() < 0.2), rng.randint(1200, 3000)
    elif text is None:
        text = prompts.harvest_prompt(rng, style["wrapper"])
    body = chat_body(style["model"], [user(text)], max_tokens=style["max_tokens"],
                     temperature=style["temperature"], n=style["n"])
    return client.request(rng, ts, body, completion)


# stanford_alpaca generate_instruction.py: its sampling settings, and request_batch_size.
ALPACA_SETTINGS = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072, "stop": ["\n20", "20.", "20."],
                   "logit_bias": {"50256": -100}}
ALPACA_BATCH = 5
# self-instruct bootstrap_instructions.py: its settings (engine davinci, 5 prompts a batch).
SELF_INSTRUCT_SETTINGS = {"temperature": 0.7, "top_p": 0.5, "max_tokens": 1024, "presence_penalty": 2,
                          "frequency_penalty": 0, "stop": ["\n\n", "\n16", "16.", "16 ."]}


def _generation(rng: random.Random, client: Client, ts: float, model: str, loop: str) -> dict:
    """One request of a self-instruct generation loop as its public script sends it: Alpaca's
    or Code Alpaca's prompt.txt plus three seed tasks, or self-instruct's eight numbered
    instructions; the answer lists new tasks (Alpaca's with their outputs)."""
    if loop == "self_instruct":
        body = chat_body(model, [user(prompts.bootstrap_prompt(rng))], **SELF_INSTRUCT_SETTINGS)
        return client.request(rng, ts, body, rng.randint(150, 1024))
    body = chat_body(model, [user(prompts.generation_prompt(rng, code=loop == "code_alpaca"))], **ALPACA_SETTINGS)
    return client.request(rng, ts, body, rng.randint(1200, 3072))


def burst_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Self-instruct harvesting at full speed: Alpaca's generation loop or its answering pass, clock-regular."""
    client, style = _script(rng, key), _style(rng)
    rate = rng.uniform(*params["rate_per_s"])
    end, jitter = start_ts + duration_s, rng.uniform(0.005, 0.05)
    job = _job(rng, params)
    if rng.random() >= params["generation_share"]:  # answering collected instructions one by one
        for ts in islice(regular_arrivals(rng, start_ts, end, 1.0 / rate, jitter), job):
            yield _harvest(rng, client, ts, style)
        return
    loop = rng.choices(("alpaca", "code_alpaca", "self_instruct"), weights=(0.6, 0.2, 0.2))[0]
    for batch_ts in islice(regular_arrivals(rng, start_ts, end, ALPACA_BATCH / rate, jitter), job // ALPACA_BATCH):
        ts = batch_ts
        for _ in range(ALPACA_BATCH):  # the batch's prompts leave together, from parallel threads
            if ts >= end:
                return
            yield _generation(rng, client, ts, style["model"], loop)
            ts += rng.uniform(0.001, 0.03)


def low_and_slow(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """The same harvesting kept far under every limit: one to three requests a minute, day and night."""
    client, style = _script(rng, key), _style(rng)
    per_minute = rng.uniform(*params["per_minute"])
    for ts in regular_arrivals(rng, start_ts, start_ts + duration_s, 60.0 / per_minute, rng.uniform(0.1, 0.4)):
        yield _harvest(rng, client, ts, style)


def reasoning_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Harvesting reasoning traces: diverse tasks that ask for step-by-step thinking, in several languages."""
    client = _script(rng, key)
    languages = rng.sample(prompts.REASONING_LANGUAGES, rng.randint(1, 3))
    reasoning_model = rng.random() < 0.5
    model = rng.choice(REASONING_MODELS if reasoning_model else CHAT_MODELS)
    rate, job = rng.uniform(*params["rate_per_s"]), _job(rng, params)
    for ts in islice(regular_arrivals(rng, start_ts, start_ts + duration_s, 1.0 / rate, rng.uniform(0.05, 0.3)), job):
        text = prompts.reasoning_prompt(rng, rng.choice(languages))
        if reasoning_model:  # the trace itself comes back as reasoning tokens (DeepSeek's reasoning_content)
            body = chat_body(model, [user(text)], max_completion_tokens=8192, reasoning_effort="high")
            yield client.request(rng, ts, body, int(rng.triangular(800, 8192, 2500)),
                                 reasoning_share=rng.uniform(0.6, 0.9))
        else:
            body = chat_body(model, [user(text)], max_tokens=4096, temperature=0.6)
            yield client.request(rng, ts, body, int(rng.triangular(500, 2500, 1100)))


def logprob_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Harvesting the teacher's token distributions as soft labels: top logprobs of label tokens or whole answers."""
    client = _script(rng, key)
    model, temperature = rng.choice(CHAT_MODELS), rng.choice((0.0, 1.0))
    top_logprobs = rng.choice((5, 10, 20, 20))
    whole_answers = rng.random() < params["sequence_share"]  # sequence-level soft labels, else label tokens
    max_tokens = rng.choice((512, 1024, 2048)) if whole_answers else rng.randint(1, 5)
    rate, job = rng.uniform(*params["rate_per_s"]) / (8 if whole_answers else 1), _job(rng, params)
    for ts in islice(regular_arrivals(rng, start_ts, start_ts + duration_s, 1.0 / rate, rng.uniform(0.01, 0.2)), job):
        text = prompts.harvest_prompt(rng, rng.choice(prompts.HARVEST_WRAPPERS))
        body = chat_body(model, [user(text)], max_tokens=max_tokens, temperature=temperature,
                         logprobs=True, top_logprobs=top_logprobs)
        answer = int(rng.triangular(150, max_tokens, 0.6 * max_tokens)) if whole_answers else max_tokens
        yield client.request(rng, ts, body, answer)


def topic_sweep(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Systematic coverage: one 'Explain {topic} to {audience}' template walked through a topic list in order."""
    client, style = _script(rng, key), _style(rng)
    audiences = rng.sample(words.AUDIENCES, rng.randint(2, 5))
    first = rng.randrange(len(words.TOPICS))
    rate = rng.uniform(*params["rate_per_s"])
    arrivals = regular_arrivals(rng, start_ts, start_ts + duration_s, 1.0 / rate, rng.uniform(0.02, 0.3))
    for step, ts in enumerate(islice(arrivals, _job(rng, params))):
        lap, position = divmod(step, len(words.TOPICS))
        topic = words.TOPICS[(first + position) % len(words.TOPICS)]
        aspects = words.ASPECTS[(step // 7) % len(words.ASPECTS)]
        text = prompts.sweep_prompt(topic, audiences[lap % len(audiences)], aspects)
        yield _harvest(rng, client, ts, style, text)


def paraphrase_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Template evasion: every request reworded (opening, verb, extras, order), still single-turn and long-answer."""
    client, style = _script(rng, key), _style(rng)
    rate = rng.uniform(*params["rate_per_s"])
    for ts in islice(poisson_arrivals(rng, start_ts, start_ts + duration_s, rate), _job(rng, params)):
        yield _harvest(rng, client, ts, style, prompts.paraphrased_prompt(rng))


def human_timing_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Harvesting disguised as a person: only in waking hours of one time zone, with log-normal gaps and breaks."""
    client, style = _script(rng, key), _style(rng)
    offset = rng.choice((-8, -5, -3, 0, 1, 2, 3, 5, 8, 9))
    wake, sleep = rng.uniform(7, 9.5), rng.uniform(22, 24)
    median_gap = rng.uniform(*params["median_gap_s"])
    end = start_ts + duration_s
    ts = next_opening(start_ts, offset, wake, sleep)
    while ts < end:
        yield _harvest(rng, client, ts, style)
        ts += human_gap(rng, median_gap, 0.9)
        if rng.random() < 0.03:
            ts += rng.uniform(300, 2700)
        woke = next_opening(ts, offset, wake, sleep)
        ts = woke if woke == ts else woke + rng.uniform(0, 1800)



# Short made-up exchanges a harvester puts before each task so that every request looks like
# the next turn of a chat (the earlier turns were never sent on their own).
PRIMING = (
    ("Hi! I have a question for you.", "Of course, I'd be happy to help. What would you like to know?"),
    ("Can you help me with something?", "Sure! What do you need help with?"),
    ("hello", "Hello! How can I assist you today?"),
    ("I'm working on a project and need some help.", "I'd be glad to help with your project. What's it about?"),
    ("Quick question", "Go ahead, what's your question?"),
)


def fake_history_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Single-turn harvesting dressed as chat: each task sent after a made-up opening exchange,
    so no request is single-turn, though no conversation ever continues."""
    client, style = _script(rng, key), _style(rng)
    rate = rng.uniform(*params["rate_per_s"])
    openings = rng.sample(PRIMING, rng.randint(1, len(PRIMING)))
    arrivals = regular_arrivals(rng, start_ts, start_ts + duration_s, 1.0 / rate, rng.uniform(0.02, 0.3))
    for ts in islice(arrivals, _job(rng, params)):
        opening, reply = rng.choice(openings)
        messages = [user(opening), assistant(reply), user(prompts.harvest_prompt(rng, style["wrapper"]))]
        body = chat_body(style["model"], messages, max_tokens=style["max_tokens"], temperature=style["temperature"],
                         n=style["n"])
        yield client.request(rng, ts, body, int(rng.triangular(300, 1500, 700)))


def greedy_harvester(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Harvesting the teacher's single most likely answer: temperature 0 on every request, as
    evaluations do, but over its own ever-new tasks and for as long as the data set needs."""
    client, style = _script(rng, key), {**_style(rng), "temperature": 0.0, "n": None}
    rate = rng.uniform(*params["rate_per_s"])
    arrivals = regular_arrivals(rng, start_ts, start_ts + duration_s, 1.0 / rate, rng.uniform(0.02, 0.3))
    for ts in islice(arrivals, _job(rng, params)):
        yield _harvest(rng, client, ts, style)
