"""Honest customers, including the heavy and the machine-like ones a detector must not
flag: developers, a support bot, a RAG service, batch jobs, benchmark runs, an office
behind one NAT address, and ordinary individuals.

Same shape as attacks.py: `(rng, key, start_ts, duration_s, params)` -> records in ts
order, every key drawing its own habits from `rng`. Content is real human prompts from
traffic/data wherever a person would type it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator, Mapping

from . import prompts, traces
from . import vocabulary as words
from .conversation import chat
from .records import APP_AGENTS, CHAT_MODELS, DESKTOP_AGENTS, Client, chat_body, documentation_ip, user
from .timing import DAY_S, human_gap, interleave_sessions, next_local_time, next_opening, regular_arrivals

OFFSETS = (-8, -5, -3, 0, 1, 2, 3, 5, 8, 9)


SUPPORT_TURNS_MEAN = 1.77  # min(6, 1 + int(Exp(mean 1.2))): a support chat's mean number of requests


def _chat_answer(rng: random.Random) -> int:
    """A chat model's answer length: Mooncake's trace of Kimi's consumer chat service."""
    return traces.completion_tokens(rng, traces.MOONCAKE)


def _app_profile(rng: random.Random, params: Mapping, pinned_per_day: str, per_arrival: float) -> traces.ClientProfile:
    """A steady real customer's rhythm and burstiness for an app key; its volume comes from
    the trace (scaled) unless `params[pinned_per_day]` pins the arrivals a day."""
    profile = traces.client_profile(rng, traces.LANGUAGE, params["volume_scale"], params["max_requests_per_day"],
                                    steady=True)
    if params.get(pinned_per_day):
        profile = dataclasses.replace(profile, rate_per_s=rng.uniform(*params[pinned_per_day]) * per_arrival / DAY_S)
    return profile


def _turns(rng: random.Random, first: str, follow_ups: tuple[str, ...], count: int) -> Iterator[str]:
    yield first
    for _ in range(count - 1):
        yield rng.choice(follow_ups).format(n=rng.randint(2, 400), device=rng.choice(words.DEVICES))


def heavy_developer(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A developer coding with the model all day: bursts of growing debugging chats in working hours."""
    client = Client(key, documentation_ip(rng), rng.choice(APP_AGENTS), rng.uniform(40, 90))
    offset, first_h, last_h = rng.choice(OFFSETS), rng.uniform(8, 10.5), rng.uniform(17, 20)
    model = rng.choice(CHAT_MODELS)
    stream_share = rng.choice((0.0, 0.5, 0.9))
    system_prompt = rng.choice((None, None, "You are a helpful coding assistant. Prefer concise, working code."))

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages, max_tokens=rng.choice((None, 1024, 2048, 4096, 8192)),
                         temperature=rng.choice((None, 0.2, 0.7)), stream=rng.random() < stream_share or None)

    end, ts = start_ts + duration_s, start_ts
    while True:
        opened = next_opening(ts, offset, first_h, last_h, weekdays_only=True)
        ts = opened if opened == ts else opened + rng.uniform(0, 2700)
        if ts >= end:
            return
        session_end = ts + rng.uniform(20, 120) * 60
        while ts < min(session_end, end):
            first = rng.choice(prompts.coding_prompts())
            turn_count = min(12, 1 + int(rng.expovariate(1 / 3)))
            last = None
            for last in chat(rng, client, ts, _turns(rng, first, words.DEV_FOLLOW_UPS, turn_count), body_of,
                             lambda: _chat_answer(rng), rng.uniform(40, 180), system_prompt):
                yield last
            ts = last["ts"] + human_gap(rng, 240, 1.0)
        ts += rng.uniform(15, 120) * 60


def support_chatbot(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A company's support bot: one key and backend for many end users' short chats, in a real customer's rhythm."""
    client = Client(key, documentation_ip(rng, v6_share=0.0), rng.choice(APP_AGENTS), rng.uniform(60, 110))
    offset = rng.choice(OFFSETS)
    profile = _app_profile(rng, params, "chats_per_day", SUPPORT_TURNS_MEAN)
    model, max_tokens = rng.choice(("gpt-4o-mini", "gpt-4.1-mini")), rng.choice((300, 400, 512))

    def conversation(ts: float) -> Iterator[dict]:
        end_user = hashlib.sha256(f"{key}:{rng.random()}".encode()).hexdigest()[:12]
        first = rng.choice(words.SUPPORT_QUESTIONS).format(n=rng.randint(10000, 99999), p=rng.randint(1, 99),
                                                           device=rng.choice(words.DEVICES))
        turns = _turns(rng, first, words.SUPPORT_FOLLOW_UPS, min(6, 1 + int(rng.expovariate(1 / 1.2))))
        return chat(rng, client, ts, turns,
                    lambda messages: chat_body(model, messages, max_tokens=max_tokens, temperature=0.3,
                                               stream=True, user=f"enduser-{end_user}"),
                    lambda: traces.completion_tokens(rng, traces.AZURE_CONV), 25.0, words.SUPPORT_SYSTEM_PROMPT)

    end = start_ts + duration_s
    starts = profile.arrivals(rng, start_ts, end, offset, per_arrival=SUPPORT_TURNS_MEAN)
    for record in interleave_sessions(conversation(ts) for ts in starts):
        if record["ts"] >= end:
            return
        yield record


def rag_service(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """An internal knowledge-base assistant: one fixed template with long retrieved context, short answers."""
    client = Client(key, documentation_ip(rng, v6_share=0.0), rng.choice(APP_AGENTS), rng.uniform(60, 110))
    offset = rng.choice(OFFSETS)
    profile = _app_profile(rng, params, "queries_per_day", 1.0)
    model, chunks = rng.choice(("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o")), rng.randint(3, 8)
    knowledge_base = prompts.DocumentShelf(rng)
    for ts in profile.arrivals(rng, start_ts, start_ts + duration_s, offset):
        context = "\n\n".join(
            f"[{rng.choice(words.DOCUMENT_TITLES)}]\n{knowledge_base.text(rng, rng.randint(400, 900))}"
            for _ in range(chunks)
        )
        text = f"Answer the question using the context:\n{context}\nQuestion: {rng.choice(words.RAG_QUESTIONS)}"
        body = chat_body(model, [user(text)], max_tokens=400, temperature=0.0)
        yield client.request(rng, ts, body, traces.completion_tokens(rng, traces.AZURE_CONV))


def batch_document_job(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A nightly job translating or summarising documents chunk by chunk: clock-regular, one template."""
    client = Client(key, documentation_ip(rng, v6_share=0.0), rng.choice(APP_AGENTS), rng.uniform(60, 110))
    offset, start_hour = rng.choice(OFFSETS), rng.uniform(0, 4)
    task = rng.choice(words.BATCH_TASKS)
    ratio = (0.9, 1.15) if task.startswith("Translate") else (0.15, 0.5)
    model, gap = rng.choice(CHAT_MODELS), rng.uniform(*params["gap_s"])
    end, library = start_ts + duration_s, prompts.DocumentShelf(rng)
    run_start = next_local_time(start_ts, offset, start_hour) if rng.random() < 0.5 else start_ts
    while run_start < end:
        chunks = rng.randint(*params["chunks_per_run"])
        title, language = rng.choice(words.DOCUMENT_TITLES), rng.choice(words.LANGUAGES)
        last_ts = run_start
        for _, last_ts in zip(range(chunks), regular_arrivals(rng, run_start, end, gap, 0.03), strict=False):
            chunk = library.text(rng, rng.randint(1500, 4000))
            text = task.format(title=title, language=language, chunk=chunk)
            body = chat_body(model, [user(text)], max_tokens=4096, temperature=0.0)
            yield client.request(rng, last_ts, body, int(len(text) / 4 * rng.uniform(*ratio)))
        run_start = next_local_time(last_ts + 60, offset, start_hour)


def benchmark_run(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A team evaluating the model once on a public benchmark (MT-Bench, Vicuna, Arena-Hard) at temperature 0."""
    client = Client(key, documentation_ip(rng), rng.choice(APP_AGENTS), rng.uniform(40, 90))
    name = rng.choice(("mt_bench", "vicuna_bench", "arena_hard"))
    questions = prompts.benchmark(name)
    if name == "arena_hard":
        questions = questions[: rng.randint(80, len(questions))]
    model, max_tokens, workers = rng.choice(CHAT_MODELS), rng.choice((1024, 2048, 4096)), rng.choice((1, 4, 8, 16))
    began = start_ts + rng.uniform(0, duration_s * 0.5)

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages, max_tokens=max_tokens, temperature=0.0)

    starts = regular_arrivals(rng, began, float("inf"), rng.uniform(8, 30) / workers, 0.4)
    sessions = (chat(rng, client, ts, turns, body_of, lambda: _chat_answer(rng), 0.05)
                for ts, turns in zip(starts, questions, strict=False))
    end = start_ts + duration_s
    for record in interleave_sessions(sessions):
        if record["ts"] >= end:
            return
        yield record


def office_nat_office(rng: random.Random, params: Mapping) -> dict:
    """What an office's users share: the NAT address, the time zone and the company's client."""
    return {"ip": documentation_ip(rng, v6_share=0.0), "offset": rng.choice(OFFSETS),
            "user_agent": rng.choice(DESKTOP_AGENTS)}


def office_nat(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """Colleagues behind one office NAT address, each with their own key, chatting casually in working hours."""
    office = params["group"]
    client = Client(key, office["ip"], office["user_agent"], rng.uniform(40, 90))
    yield from _person(rng, client, start_ts, duration_s, office["offset"], (8.5, 18.0), True,
                       rng.uniform(*params["chats_per_day"]))


def casual_user(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """An individual asking a few diverse questions a day from home, in waking hours."""
    client = Client(key, documentation_ip(rng, v6_share=0.3), rng.choice(DESKTOP_AGENTS), rng.uniform(40, 90))
    hours = (rng.uniform(7, 10), rng.uniform(21, 24))
    yield from _person(rng, client, start_ts, duration_s, rng.choice(OFFSETS), hours, False,
                       rng.uniform(*params["chats_per_day"]))


def _person(rng: random.Random, client: Client, start_ts: float, duration_s: float, offset: int,
            hours: tuple[float, float], weekdays_only: bool, chats_per_day: float) -> Iterator[dict]:
    """One person's day: chats of one to three turns with real prompts, at random moments in their hours."""
    model = rng.choice(("gpt-4o-mini", "gpt-4o"))
    stream = rng.random() < 0.6 or None
    mean_gap = (hours[1] - hours[0]) * 3600 / chats_per_day

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages, temperature=rng.choice((None, 0.7, 1.0)), stream=stream)

    end, open_s = start_ts + duration_s, (hours[1] - hours[0]) * 3600
    ts = start_ts + rng.expovariate(1 / mean_gap)
    while True:
        opened = next_opening(ts, offset, *hours, weekdays_only)
        ts = opened if opened == ts else opened + rng.uniform(0, min(mean_gap, open_s))
        if ts >= end:
            return
        turns = _turns(rng, rng.choice(prompts.human_prompts()), words.CASUAL_FOLLOW_UPS, rng.choice((1, 1, 1, 2, 3)))
        last = None
        for last in chat(rng, client, ts, turns, body_of, lambda: _chat_answer(rng), 45.0):
            yield last
        ts = last["ts"] + rng.expovariate(1 / mean_gap)
