"""Harvesting families from the public record that single-prompt harvesters do not cover:
Evol-Instruct, synthetic dialogues in which the model also writes the user's turns,
grading and reward-model data, reasoning traces asked for in the system prompt or through
reasoning models, soft labels over long answers, and code capability harvests.

Same shape as attacks.py: `(rng, key, start_ts, duration_s, params)` -> records in ts
order. Every key draws its own model, caps, sampling, template, language and pace from
`rng`, in wide ranges, so no single parameter value describes the family.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from itertools import islice

from . import harvest_templates as t
from . import prompts
from . import vocabulary as words
from .records import CHAT_MODELS, REASONING_MODELS, SCRIPT_AGENTS, Client, assistant, chat_body, documentation_ip, user
from .records import system as system_message
from .timing import PACES, interleave_sessions, paced_arrivals, regular_arrivals

CAPS = (None, 256, 512, 1024, 2048, 3072, 4096)
OFFSETS = (-8, -5, -3, 0, 1, 2, 3, 5, 8, 9)
MAX_REPLY_TOKENS_KEPT = 600  # an earlier answer resent in a history is cut to this stand-in length


def script_client(rng: random.Random, key: str) -> Client:
    """A pipeline on one cloud machine."""
    return Client(key, documentation_ip(rng), rng.choice(SCRIPT_AGENTS), rng.uniform(40, 120))


def cap_options(rng: random.Random, caps: tuple = CAPS) -> dict:
    """How a key caps answers: no cap, `max_tokens` or `max_completion_tokens` (newer SDKs)."""
    cap = rng.choice(caps)
    if cap is None:
        return {}
    return {rng.choice(("max_tokens", "max_tokens", "max_completion_tokens")): cap}


def arrivals(rng: random.Random, start_ts: float, duration_s: float, params: Mapping) -> Iterator[float]:
    """The key's send times: its rate and pace drawn from `params`, cut at its job's size."""
    pace = rng.choice(PACES)
    rate = rng.uniform(*params["rate_per_s"])
    times = paced_arrivals(rng, start_ts, start_ts + duration_s, rate, pace, rng.choice(OFFSETS))
    return islice(times, rng.randint(*params["job_requests"]))


def stand_in(rng: random.Random, tokens: int) -> str:
    """Text of about `tokens` tokens standing for a model's earlier answer."""
    return prompts.assistant_reply(rng, max(8, min(tokens, MAX_REPLY_TOKENS_KEPT)))


def _sent(rng: random.Random, client: Client, times: Iterator[float], plan: Iterator[tuple[dict, int]]
          ) -> Iterator[dict]:
    """Each planned (body, answer tokens) sent at the key's next send time."""
    for ts, (body, answer) in zip(times, plan, strict=False):
        yield client.request(rng, ts, body, answer)


# --- Evol-Instruct --------------------------------------------------------------------------


def evol_instruct(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                  ) -> Iterator[dict]:
    """Evol-Instruct (WizardLM): instructions rewritten round after round into harder ones, then answered."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    templates = rng.sample(tuple(t.EVOL_TEMPLATES), rng.randint(1, 3))
    rounds, batch = rng.randint(1, 4), rng.choice((1, 4, 8, 16, 64))
    evolve_options = {**cap_options(rng, (None, 256, 512, 1024, 2048)), "temperature": rng.choice((None, 0.7, 1.0))}
    answer_options = {**cap_options(rng), "temperature": rng.choice((None, 0.0, 0.7, 1.0))}
    eliminate = rng.choice((0.0, 0.0, 0.5, 1.0))  # share of evolutions checked for "Equal / Not Equal"
    answer_every_round = rng.random() < 0.3

    def plan() -> Iterator[tuple[dict, int]]:
        while True:
            pool = [prompts.harvest_task(rng)[0] for _ in range(batch)]
            evolved = list(pool)
            for _ in range(rounds):
                for index, instruction in enumerate(evolved):
                    template = t.EVOL_TEMPLATES[rng.choice(templates)]
                    text = template.format(method=rng.choice(t.EVOL_METHODS), prompt=instruction)
                    evolved[index] = f"{instruction} {rng.choice(t.EVOL_ADDITIONS)}"
                    yield chat_body(model, [user(text)], **evolve_options), int(len(evolved[index]) / 4 + 20)
                    if rng.random() < eliminate:
                        check = t.EVOL_ELIMINATION.format(first=instruction, second=evolved[index])
                        yield chat_body(model, [user(check)], **evolve_options), rng.randint(1, 4)
                if answer_every_round:
                    yield from _answers(evolved)
            if not answer_every_round:
                yield from _answers(evolved)

    def _answers(instructions: list[str]) -> Iterator[tuple[dict, int]]:
        for instruction in instructions:
            yield chat_body(model, [user(instruction)], **answer_options), int(rng.triangular(200, 2500, 800))

    yield from _sent(rng, client, arrivals(rng, start_ts, duration_s, params), plan())


# --- dialogues in which the model writes both sides ------------------------------------------


def synthetic_dialogues(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                        ) -> Iterator[dict]:
    """Synthetic multi-turn dialogues where the model also writes the user's turns (CAMEL role-play, UltraChat)."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    style = rng.choice(("camel", "camel", "ultrachat"))
    options = {**cap_options(rng, (None, 512, 1024, 2048, 4096)), "temperature": rng.choice((None, 0.2, 0.7, 1.0))}
    turns = (rng.randint(2, 6), rng.randint(7, 20))
    step_gap = rng.uniform(0.05, 3.0)  # between an answer and the request it feeds
    session = _camel_session if style == "camel" else _ultrachat_session
    job = rng.randint(*params["job_requests"])
    rate = rng.uniform(*params["rate_per_s"])
    per_session = 2 * sum(turns) / 2 + 1  # requests in a session, on average
    starts = regular_arrivals(rng, start_ts, start_ts + duration_s, per_session / rate, 0.3)
    sessions = (session(rng, client, ts, model, options, rng.randint(*turns), step_gap) for ts in starts)
    for record in islice(interleave_sessions(sessions), job):
        if record["ts"] >= start_ts + duration_s:
            return
        yield record


def _camel_session(rng: random.Random, client: Client, ts: float, model: str, options: dict, turns: int,
                   step_gap: float) -> Iterator[dict]:
    """One CAMEL role-play: the task specified, then the AI user's instruction and the AI
    assistant's solution in turn, each pasted verbatim as the other conversation's user turn."""
    roles = {"assistant_role": rng.choice(t.ASSISTANT_ROLES), "user_role": rng.choice(t.USER_ROLES)}
    specify = t.CAMEL_TASK_SPECIFY.format(task=rng.choice(t.CAMEL_TASKS), words=rng.choice((30, 50, 80)), **roles)
    record = client.request(rng, ts, chat_body(model, [user(specify)], **options), rng.randint(30, 110))
    yield record
    task = stand_in(rng, record["usage"]["completion_tokens"])
    ts = record["ts"] + record["latency_ms"] / 1000 + step_gap
    user_side = [system_message(t.CAMEL_USER.format(task=task, **roles)), user(t.CAMEL_KICKOFF)]
    assistant_side = [system_message(t.CAMEL_ASSISTANT.format(task=task, **roles))]
    for _ in range(turns):
        record = client.request(rng, ts, chat_body(model, list(user_side), **options), rng.randint(25, 120))
        yield record
        instruction = "Instruction: " + stand_in(rng, record["usage"]["completion_tokens"])
        user_side.append(assistant(instruction))
        assistant_side.append(user(instruction))
        ts = record["ts"] + record["latency_ms"] / 1000 + step_gap
        record = client.request(rng, ts, chat_body(model, list(assistant_side), **options),
                                int(rng.triangular(150, 1500, 500)))
        yield record
        solution = "Solution: " + stand_in(rng, record["usage"]["completion_tokens"]) + " Next request."
        assistant_side.append(assistant(solution))
        user_side.append(user(solution))
        ts = record["ts"] + record["latency_ms"] / 1000 + step_gap


def _ultrachat_session(rng: random.Random, client: Client, ts: float, model: str, options: dict, turns: int,
                       step_gap: float) -> Iterator[dict]:
    """One UltraChat-style dialogue: a user-simulator request writes each next question from
    the transcript so far, and the assistant conversation answers it."""
    task = prompts.harvest_task(rng)[0]
    dialogue: list[dict] = []
    question = task
    for _ in range(turns):
        dialogue.append(user(question))
        record = client.request(rng, ts, chat_body(model, list(dialogue), **options), int(rng.triangular(150, 1500, 500)))
        yield record
        dialogue.append(assistant(stand_in(rng, record["usage"]["completion_tokens"])))
        ts = record["ts"] + record["latency_ms"] / 1000 + step_gap
        transcript = "\n".join(f"{m['role'].title()}: {m['content'][:400]}" for m in dialogue)
        record = client.request(rng, ts, chat_body(model, [user(t.USER_SIMULATOR.format(task=task, dialogue=transcript))],
                                                    **options), rng.randint(20, 90))
        yield record
        question = stand_in(rng, record["usage"]["completion_tokens"])
        ts = record["ts"] + record["latency_ms"] / 1000 + step_gap


# --- grading and reward-model data -----------------------------------------------------------


def reward_grading(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                   ) -> Iterator[dict]:
    """Grading and reward-model data: answers rated against a rubric (UltraFeedback's 4 per prompt) or compared pairwise."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    style = rng.choice(("ultrafeedback", "pairwise", "single"))
    aspects = rng.sample(tuple(t.ULTRAFEEDBACK_ASPECTS), rng.randint(1, 4))
    options = {**cap_options(rng, (None, 256, 512, 1024, 2048, 4096)), "temperature": rng.choice((None, 0.0, 0.7, 1.0))}
    system_prompt = rng.choice((None, None, "You are a meticulous annotator. Follow the rubric exactly."))
    both_orders = rng.random() < 0.5

    def framed(text: str) -> list[dict]:
        return [system_message(system_prompt), user(text)] if system_prompt else [user(text)]

    def plan() -> Iterator[tuple[dict, int]]:
        while True:
            instruction = prompts.harvest_task(rng)[0]
            answers = [stand_in(rng, rng.randint(80, 500)) for _ in range(4 if style == "ultrafeedback" else 2)]
            if style == "ultrafeedback":
                slots = "\n".join(f"<text {i}> [Text {i}]" for i in range(1, 5))
                outputs = "\n".join(f"#### Output for Text {i}\nRating: [Rating]\nRationale: [Rationale]"
                                    for i in range(1, 5))
                texts = "\n".join(f"<text {i}> {answer}" for i, answer in enumerate(answers, 1))
                for aspect in aspects:
                    text = t.ULTRAFEEDBACK.format(aspect_title=aspect.replace("_", " ").title(),
                                                  rubric=t.ULTRAFEEDBACK_ASPECTS[aspect], slots=slots,
                                                  outputs=outputs, instruction=instruction, texts=texts)
                    yield chat_body(model, framed(text), **options), int(rng.triangular(150, 900, 400))
            elif style == "pairwise":
                orders = ((0, 1), (1, 0)) if both_orders else ((0, 1),)
                for a, b in orders:
                    text = t.PAIRWISE_JUDGE.format(instruction=instruction, a=answers[a], b=answers[b])
                    yield chat_body(model, framed(text), **options), int(rng.triangular(80, 600, 250))
            else:
                text = t.SINGLE_GRADE_DE.format(instruction=instruction, a=answers[0])
                yield chat_body(model, framed(text), **options), int(rng.triangular(80, 600, 250))

    yield from _sent(rng, client, arrivals(rng, start_ts, duration_s, params), plan())


# --- reasoning traces --------------------------------------------------------------------------


def _reasoning_task(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(prompts.reasoning_questions())[0]
    if roll < 0.6:
        language = rng.choice(tuple(words.REASONING_TASKS))
        return rng.choice(words.REASONING_TASKS[language]).format(
            a=rng.randint(2, 9), b=rng.randint(2, 30), c=rng.randint(2, 12), n=rng.randint(20, 2000))
    return prompts.harvest_task(rng)[0]


def reasoning_trace_distillation(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                                 ) -> Iterator[dict]:
    """Reasoning traces asked for in the system prompt (Bespoke-Stratos, R1-style tags) or taken from a reasoning model."""
    client = script_client(rng, key)
    through_model = rng.random() < 0.4
    model = rng.choice(REASONING_MODELS if through_model else CHAT_MODELS)
    system_prompt = None if through_model and rng.random() < 0.6 else rng.choice(t.REASONING_SYSTEM_PROMPTS)
    options = cap_options(rng, (None, 4096, 8192, 16384, 32768))
    if through_model and "max_tokens" in options:  # reasoning models take only max_completion_tokens
        options = {"max_completion_tokens": options["max_tokens"]}
    if through_model:
        options["reasoning_effort"] = rng.choice((None, "low", "medium", "high", "high"))
    else:
        options["temperature"] = rng.choice((None, 0.6, 0.7, 1.0))
    share = rng.uniform(0.6, 0.9) if through_model else 0.0
    for ts in arrivals(rng, start_ts, duration_s, params):
        task = _reasoning_task(rng)
        messages = [system_message(system_prompt), user(task)] if system_prompt else [user(task)]
        body = chat_body(model, messages, **options)
        yield client.request(rng, ts, body, int(rng.triangular(800, 9000, 2500)), reasoning_share=share)


# --- soft labels over long answers ---------------------------------------------------------------


def sequence_logprob_harvester(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                               ) -> Iterator[dict]:
    """Soft labels over whole answers: long generations with the teacher's per-token log-probabilities."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    options = {**cap_options(rng, (None, 256, 512, 1024, 2048, 4096)), "logprobs": True,
               "top_logprobs": rng.choice((None, 1, 2, 5, 10, 20)), "temperature": rng.choice((None, 0.0, 0.7, 1.0))}
    system_prompt = rng.choice((None, None, "You are a helpful assistant.", "Answer thoroughly and accurately."))
    wrapper = rng.choice(prompts.HARVEST_WRAPPERS)
    for ts in arrivals(rng, start_ts, duration_s, params):
        text = prompts.harvest_prompt(rng, wrapper)
        messages = [system_message(system_prompt), user(text)] if system_prompt else [user(text)]
        yield client.request(rng, ts, chat_body(model, messages, **options), int(rng.triangular(150, 2500, 600)))


# --- code capability harvest -------------------------------------------------------------------


def code_harvest(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                 ) -> Iterator[dict]:
    """Code capability harvest: ever-new programming problems and solutions (OSS-Instruct, task templates)."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    oss_share = rng.choice((0.0, 0.5, 1.0))
    templates = rng.sample(t.CODE_TASKS, rng.randint(1, 3))
    system_prompt = rng.choice(t.CODE_SYSTEM_PROMPTS)
    options = {**cap_options(rng), "temperature": rng.choice((None, 0.0, 0.2, 0.7, 1.0))}
    for ts in arrivals(rng, start_ts, duration_s, params):
        if rng.random() < oss_share:
            text = t.OSS_INSTRUCT.format(snippet=prompts.code_context(rng, rng.randint(200, 1200)))
        else:
            text = rng.choice(templates).format(language=rng.choice(t.CODE_LANGUAGES), goal=rng.choice(t.CODE_GOALS),
                                                snippet=prompts.code_context(rng, rng.randint(200, 800)))
        messages = [system_message(system_prompt), user(text)] if system_prompt else [user(text)]
        yield client.request(rng, ts, chat_body(model, messages, **options), int(rng.triangular(300, 3000, 900)))
