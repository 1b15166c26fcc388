"""Multi-turn chats: each turn resends the whole history, so honest conversations grow
in message count and prompt length the way real chat clients' requests do."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

from .prompts import assistant_reply
from .records import Client, assistant, system, user
from .timing import human_gap

MAX_REPLY_TOKENS_KEPT = 800


class Conversation:
    """The messages a chat client keeps and resends."""

    def __init__(self, system_prompt: str | None = None) -> None:
        self.messages: list[dict] = [system(system_prompt)] if system_prompt else []

    def ask(self, text: str) -> list[dict]:
        """Adds the user's turn; returns a copy of the history to send."""
        self.messages.append(user(text))
        return list(self.messages)

    def hear(self, rng: random.Random, completion_tokens: int) -> None:
        """Adds the model's answer (stand-in text of the answered length, capped)."""
        self.messages.append(assistant(assistant_reply(rng, min(completion_tokens, MAX_REPLY_TOKENS_KEPT))))


def visible_tokens(usage: dict) -> int:
    """The answer a client keeps in its history: reasoning tokens are not sent back."""
    return usage["completion_tokens"] - usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0)


def chat(
    rng: random.Random,
    client: Client,
    start_ts: float,
    turns: Iterable[str],
    body_of: Callable[[list[dict]], dict],
    completion_of: Callable[[], int],
    think_median_s: float,
    system_prompt: str | None = None,
    reasoning_of: Callable[[], float] | None = None,
) -> Iterator[dict]:
    """The records of one chat: each turn is sent after the previous answer arrived and
    the person read it and typed the next (a log-normal pause around `think_median_s`).
    `reasoning_of` gives the share of each answer a reasoning model spends thinking."""
    conversation = Conversation(system_prompt)
    ts = start_ts
    for text in turns:
        share = reasoning_of() if reasoning_of else 0.0
        record = client.request(rng, ts, body_of(conversation.ask(text)), completion_of(), reasoning_share=share)
        yield record
        conversation.hear(rng, visible_tokens(record["usage"]))
        ts += record["latency_ms"] / 1000.0 + human_gap(rng, think_median_s, 0.8)
