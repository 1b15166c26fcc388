"""Production API customers and reasoning-model users replayed from real traces.

Each key takes one real ServeGen customer's daily rhythm, day-to-day swings and
burstiness (traffic/traces.py), its prompt and answer lengths from the Azure and
Mooncake traces or its own ServeGen length table, and its text from real human prompts.
Same shape as honest.py: `(rng, key, start_ts, duration_s, params)` -> records in ts order.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from . import prompts, traces
from . import vocabulary as words
from .conversation import chat, visible_tokens
from .honest import OFFSETS
from .prompts import assistant_reply
from .records import (
    APP_AGENTS,
    CHAT_MODELS,
    DESKTOP_AGENTS,
    REASONING_MODELS,
    Client,
    assistant,
    chat_body,
    documentation_ip,
    system,
    user,
)
from .timing import human_gap, interleave_sessions

# What an API customer's app does, the trace its lengths come from, and how common it is.
APP_KINDS = {"chat": (traces.AZURE_CONV, 0.67), "code": (traces.AZURE_CODE, 0.25),
             "document": (traces.MOONCAKE, 0.08)}
CHARS_PER_TOKEN = 4
THREADS_KEPT = 200


def _date(ts: float) -> str:
    return time.strftime("%A %d %B %Y", time.gmtime(ts))


@dataclass
class _Thread:
    """One end user's conversation in an app: what the app resends, and when its user can
    have read the last answer."""

    messages: list[dict]
    ready_ts: float
    end_user: str
    turns: int = 1


@dataclass
class _App:
    """What stays fixed for one customer's app: the product it is and how it calls the API."""

    kind: str
    system_prompt: str
    model: str
    temperature: float | None
    max_tokens: int | None
    stream_share: float
    follow_up_share: float
    end_user_ids: bool
    threads: list[_Thread] = field(default_factory=list)


def _app(rng: random.Random, kind: str) -> _App:
    if kind == "code":
        return _App(kind, words.CODE_COMPLETION_SYSTEM_PROMPT, rng.choice(CHAT_MODELS), rng.choice((0.0, 0.1, 0.2)),
                    rng.choice((64, 128, 256, 512)), 1.0, 0.0, False)
    prompt = words.DOCUMENT_SYSTEM_PROMPT if kind == "document" else rng.choice(words.APP_SYSTEM_PROMPTS)
    follow_ups = rng.uniform(0.3, 0.7) if kind == "document" else rng.uniform(0.0, 0.5)
    return _App(kind, prompt, rng.choice(CHAT_MODELS), rng.choice((None, 0.0, 0.2, 0.3, 0.5, 0.7, 1.0)),
                rng.choice((None, 256, 512, 1024, 2048, 4096)), rng.choice((0.0, 0.5, 1.0)), follow_ups,
                rng.random() < 0.3)


def _first_turn(rng: random.Random, app: _App, shelf: prompts.DocumentShelf, ts: float, target: int) -> list[dict]:
    """A new conversation's messages, filled up to `target` prompt tokens the way this kind of
    app fills them: earlier turns of the chat, the user's document, or the editor's code."""
    head = [system(app.system_prompt.format(date=_date(ts)))]
    if app.kind == "code":
        budget = target * CHARS_PER_TOKEN - len(head[0]["content"])
        return [*head, user(prompts.code_context(rng, max(200, budget)))]
    if app.kind == "document":
        ask = rng.choice(words.DOCUMENT_ASKS).format(language=rng.choice(words.LANGUAGES))
        budget = target * CHARS_PER_TOKEN - len(head[0]["content"]) - len(ask)
        return [*head, user(f"{shelf.text(rng, max(400, budget))}\n\n{ask}")]
    history: list[dict] = []
    question = rng.choice(prompts.human_prompts())
    budget = target * CHARS_PER_TOKEN - len(head[0]["content"]) - len(question)
    while budget > 400:  # the chat had been going on: earlier questions and answers
        earlier = rng.choice(prompts.human_prompts())
        reply = assistant_reply(rng, min(800, max(20, (budget - len(earlier)) // CHARS_PER_TOKEN)))
        history += [user(earlier), assistant(reply)]
        budget -= len(earlier) + len(reply)
    return [*head, *history, user(question)]


def _follow_up(rng: random.Random, app: _App) -> str:
    if app.kind == "document":
        return rng.choice(words.DOCUMENT_FOLLOW_UPS + words.DOCUMENT_ASKS).format(language=rng.choice(words.LANGUAGES))
    return rng.choice(words.CASUAL_FOLLOW_UPS) if rng.random() < 0.5 else rng.choice(prompts.human_prompts())


def _ready_thread(rng: random.Random, app: _App, ts: float) -> _Thread | None:
    """An earlier conversation whose user has read the answer and asks again, if any."""
    if not app.threads or rng.random() >= app.follow_up_share:
        return None
    for _ in range(3):
        thread = rng.choice(app.threads)
        if thread.ready_ts <= ts and thread.turns < 12:
            return thread
    return None


def api_customer(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A production app's key replayed from a real API customer: its rhythm, bursts, lengths and real prompts."""
    profile = traces.client_profile(rng, traces.LANGUAGE, params["volume_scale"], params["max_requests_per_day"])
    offset = rng.choice(OFFSETS)
    kind = rng.choices(list(APP_KINDS), weights=[weight for _, weight in APP_KINDS.values()])[0]
    app, shelf = _app(rng, kind), prompts.DocumentShelf(rng)
    client = Client(key, documentation_ip(rng, v6_share=0.1), rng.choice(APP_AGENTS), rng.uniform(50, 120))
    for ts in profile.arrivals(rng, start_ts, start_ts + duration_s, offset):
        target, completion = traces.token_lengths(rng, APP_KINDS[kind][0])
        thread = _ready_thread(rng, app, ts)
        if thread is not None:
            messages = [*thread.messages, user(_follow_up(rng, app))]
        else:
            messages = _first_turn(rng, app, shelf, ts, min(target, params["max_prompt_tokens"]))
        end_user = thread.end_user if thread is not None else f"u-{rng.getrandbits(40):010x}"
        body = chat_body(app.model, messages, max_tokens=app.max_tokens, temperature=app.temperature,
                         stream=rng.random() < app.stream_share or None, user=end_user if app.end_user_ids else None)
        record = client.request(rng, ts, body, completion)
        yield record
        if app.kind == "code":
            continue
        answered = [*messages, assistant(assistant_reply(rng, min(800, visible_tokens(record["usage"]))))]
        ready = ts + record["latency_ms"] / 1000 + human_gap(rng, 40.0, 1.0)
        if thread is None:
            app.threads.append(_Thread(answered, ready, end_user))
            del app.threads[:-THREADS_KEPT]
        else:
            thread.messages, thread.ready_ts, thread.turns = answered, ready, thread.turns + 1


def reasoning_app_user(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A person solving hard maths and coding problems with a reasoning model, now and then saying 'step by step'."""
    profile = traces.client_profile(rng, traces.REASON, params["volume_scale"], params["max_requests_per_day"],
                                    with_lengths=True)
    offset = rng.choice(OFFSETS)
    client = Client(key, documentation_ip(rng, v6_share=0.3), rng.choice(DESKTOP_AGENTS + APP_AGENTS),
                    rng.uniform(30, 80))
    model = rng.choice(REASONING_MODELS)
    cue_share, cue = rng.betavariate(0.6, 1.4), rng.choice(words.USER_REASONING_CUES)
    max_completion = rng.choice((None, None, 8192, 16384, 32768))
    effort = rng.choice((None, "medium", "high")) if model.startswith("o") else None
    stream = rng.random() < 0.7 or None
    think_median = rng.uniform(60, 300)

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages, max_completion_tokens=max_completion, reasoning_effort=effort,
                         stream=stream)

    def turns(question: tuple[str, ...]) -> Iterator[str]:
        first = question[0]
        if rng.random() < cue_share:
            first = f"{first}\n\n{cue}" if rng.random() < 0.8 else f"{cue}\n\n{first}"
        yield first
        count = min(6, 1 + int(rng.expovariate(1 / 0.8)))
        yield from question[1:count]
        for _ in range(count - len(question)):
            yield rng.choice(words.REASONING_FOLLOW_UPS).format(n=rng.randint(2, 500))

    def session(ts: float) -> Iterator[dict]:
        return chat(rng, client, ts, turns(rng.choice(prompts.reasoning_questions())), body_of,
                    lambda: profile.draw_completion(rng), think_median,
                    reasoning_of=lambda: profile.draw_reasoning_share(rng))

    starts = profile.arrivals(rng, start_ts, start_ts + duration_s, offset, per_arrival=1.4)
    end = start_ts + duration_s
    for record in interleave_sessions(session(ts) for ts in starts):
        if record["ts"] >= end:
            return
        yield record
