"""Randomised families: each key re-draws how it sends, in wide ranges, on top of what its
family does, so that detection is measured on the practice and not on one setting of it.

`draw(rng, label, pinned)` picks one key's `Variation`: its answer cap (none, `max_tokens`
256-4096 or `max_completion_tokens`), answer lengths, temperature (or none), `n`,
streaming, tools offered, logprobs, where a fixed instruction sits (system or user
message), a language its answers are asked in, a frame around its tasks, and its pace
(steady, bursty, human-like, diurnal, or as the family sends, faster or slower).
`vary(records, ...)` applies it to the key's records. A family pins what defines it (an
intent classifier's 1-5 token cap, a greedy harvester's temperature 0): `Scenario.pinned`.

Every change is a function of the message text alone, so a conversation's earlier turns
are changed exactly as they were when first sent and conversations still continue.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from .records import prompt_tokens
from .timing import diurnal_factor, next_opening
from .tools import tool_set

KNOBS = frozenset({"cap", "lengths", "temperature", "n", "stream", "tools", "logprobs", "placement", "language",
                   "frame", "pace"})
HONEST_PINNED = frozenset({"frame"})  # nobody wraps their own chat turns in a harvesting frame
CAPS = (256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
TEMPERATURES = (None, 0.0, 0.2, 0.5, 0.7, 0.8, 1.0, 1.2)
PACES = ("as_sent", "as_sent", "steady", "bursty", "human", "diurnal")
LANGUAGE_ASKS = (
    "Responde en español.", "Antworte auf Deutsch.", "Réponds en français.", "请用中文回答。", "日本語で答えてください。",
    "Responda em português.", "Ответь на русском языке.", "Rispondi in italiano.",
)
FRAMES = (
    ("Task: ", ""), ("### Instruction:\n", "\n\n### Response:"), ("Q: ", "\nA:"), ("", "\n\nAnswer in detail."),
    ("Please complete the following.\n\n", ""), ("<task>", "</task>"), ("Input: ", "\nOutput:"),
)
CAP_NAMES = ("max_tokens", "max_tokens", "max_completion_tokens")
CAP_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class Variation:
    """One key's draw; a field left None (or "as_sent") keeps what the family sends."""

    cap: tuple[str, int | None] | None = None  # (field, value); value None: no cap at all
    length_scale: float = 1.0
    temperature: tuple[float | None] | None = None  # (value,); value None: not sent
    n: tuple[int | None] | None = None
    stream: tuple[bool] | None = None
    tools: list[dict] | None = None
    logprobs: tuple[int | None] | None = None  # (top_logprobs,): logprobs asked, with this many alternatives
    placement: str = "as_sent"  # or "system" (a leading paragraph becomes the system message) or "user"
    language: str | None = None
    frame: tuple[str, str] | None = None
    pace: str = "as_sent"
    rate_scale: float = 1.0
    utc_offset_h: int = 0


def draw(rng: random.Random, label: str, pinned: frozenset[str] = frozenset()) -> Variation:
    """One key's variation; `pinned` knobs (and HONEST_PINNED for honest keys) keep the family's own."""
    held = pinned | (HONEST_PINNED if label == "benign" else frozenset())
    free = KNOBS - held

    def pick(knob: str, value):
        return value if knob in free else None

    cap_value = None if rng.random() < 0.25 else rng.choice(CAPS)
    return Variation(
        cap=pick("cap", (rng.choice(CAP_NAMES), cap_value)),
        length_scale=math.exp(rng.uniform(math.log(0.3), math.log(3.0))) if "lengths" in free else 1.0,
        temperature=pick("temperature", (rng.choice(TEMPERATURES),)),
        n=pick("n", (rng.choice((None,) * 8 + (2, 3, 4)),)),
        stream=pick("stream", (rng.random() < 0.4,)),
        tools=tool_set(rng, rng.randint(1, 6)) if "tools" in free and rng.random() < 0.2 else None,
        logprobs=pick("logprobs", (rng.choice((None, 1, 5)),)) if rng.random() < 0.15 else None,
        placement=rng.choice(("as_sent", "system", "user")) if "placement" in free else "as_sent",
        language=rng.choice(LANGUAGE_ASKS) if "language" in free and rng.random() < 0.3 else None,
        frame=rng.choice(FRAMES) if "frame" in free and rng.random() < 0.5 else None,
        pace=rng.choice(PACES) if "pace" in free else "as_sent",
        rate_scale=math.exp(rng.uniform(math.log(0.25), math.log(2.0))) if "pace" in free else 1.0,
        utc_offset_h=rng.choice((-8, -5, -3, 0, 1, 2, 3, 5, 8, 9)),
    )


def vary(records: Iterator[dict], variation: Variation, rng: random.Random, start_ts: float, end_ts: float
         ) -> Iterator[dict]:
    """The key's records as its variation sends them, in ts order, ending at `end_ts`."""
    clock = _Clock(variation, rng, start_ts)
    for record in records:
        ts = clock.next(record["ts"])
        if ts >= end_ts:
            return
        yield _varied(record, variation, rng, ts)


class _Clock:
    """New send times from the family's own: its gaps stretched, evened, bunched or shaped
    by the day, and the whole key sped up or slowed down by `rate_scale`."""

    def __init__(self, variation: Variation, rng: random.Random, start_ts: float) -> None:
        self.variation, self.rng = variation, rng
        self.previous_in: float | None = None
        self.now = start_ts
        self.mean_gap: float | None = None

    def next(self, ts_in: float) -> float:
        v = self.variation
        if self.previous_in is None:
            self.previous_in = ts_in
            self.now += (ts_in - self.now) / v.rate_scale
            return self.now
        gap = max(0.0, ts_in - self.previous_in) / v.rate_scale
        self.previous_in = ts_in
        self.mean_gap = gap if self.mean_gap is None else 0.95 * self.mean_gap + 0.05 * gap
        if v.pace == "steady":
            gap = self.mean_gap * (1 + self.rng.gauss(0, 0.05))
        elif v.pace == "bursty":
            gap = gap * 0.05 if self.rng.random() < 0.85 else gap * (1 - 0.85 * 0.05) / 0.15
        elif v.pace == "human":
            gap *= math.exp(self.rng.gauss(0, 1.0) - 0.5)
        elif v.pace == "diurnal":
            gap *= 0.575 / diurnal_factor(self.now, v.utc_offset_h)
        self.now += max(0.0, gap)
        if v.pace == "human":
            self.now = next_opening(self.now, v.utc_offset_h, 7.5, 23.0)
        return self.now


def _varied(record: dict, variation: Variation, rng: random.Random, ts: float) -> dict:
    body = dict(record["body"])
    old_n, old_completion = body.get("n", 1), record["usage"]["completion_tokens"]
    if variation.cap is not None:
        for name in CAP_FIELDS:
            body.pop(name, None)
        field, value = variation.cap
        if value is not None:
            body[field] = value
    _set(body, "temperature", variation.temperature)
    _set(body, "n", variation.n)
    if variation.stream is not None:
        body.pop("stream_options", None)
        body.pop("stream", None)
        if variation.stream[0]:
            body["stream"], body["stream_options"] = True, {"include_usage": True}
    if variation.tools is not None and "tools" not in body:
        body["tools"] = variation.tools
    if variation.logprobs is not None:
        body["logprobs"] = True
        _set(body, "top_logprobs", variation.logprobs)
    body["messages"] = _messages(body["messages"], variation)
    usage = dict(record["usage"])
    per_choice = max(1, round(old_completion / old_n * variation.length_scale))
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    per_choice = min(per_choice, limit) if limit else per_choice
    usage["completion_tokens"] = per_choice * body.get("n", 1)
    details = usage.get("completion_tokens_details")
    if details:
        share = details["reasoning_tokens"] / old_completion if old_completion else 0.0
        usage["completion_tokens_details"] = {"reasoning_tokens": round(usage["completion_tokens"] * share)}
    usage["prompt_tokens"] = prompt_tokens(body["messages"])
    latency = record["latency_ms"] * (usage["completion_tokens"] / old_completion if old_completion else 1.0)
    return {**record, "ts": round(ts, 3), "body": body, "usage": usage, "latency_ms": round(max(50.0, latency), 1)}


def _set(body: dict, name: str, choice: tuple | None) -> None:
    if choice is None:
        return
    body.pop(name, None)
    if choice[0] is not None:
        body[name] = choice[0]


def _messages(messages: list[dict], variation: Variation) -> list[dict]:
    """Where the instruction sits, then each user turn's frame and language ask."""
    messages = list(messages)
    if variation.placement == "user" and len(messages) > 1 and messages[0].get("role") == "system" \
            and messages[1].get("role") == "user" and isinstance(messages[1].get("content"), str):
        messages[1:2] = [{**messages[1], "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}]
        messages = messages[1:]
    elif variation.placement == "system" and messages and messages[0].get("role") == "user":
        head, _, rest = (messages[0].get("content") or "").partition("\n\n")
        if head and rest:
            messages[0:1] = [{"role": "system", "content": head}, {**messages[0], "content": rest}]
    if variation.frame is None and variation.language is None:
        return messages
    prefix, suffix = variation.frame or ("", "")
    ask = f"\n\n{variation.language}" if variation.language else ""
    return [{**m, "content": f"{prefix}{m['content']}{suffix}{ask}"}
            if m.get("role") == "user" and isinstance(m.get("content"), str) else m for m in messages]
