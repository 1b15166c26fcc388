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


def chat(
    rng: random.Random,
    client: Client,
    start_ts: float,
    turns: Iterable[str],
    body_of: Callable[[list[dict]], dict],
    completion_of: Callable[[], int],
    think_median_s: float,
    system_prompt: str | None = None,
) -> Iterator[dict]:
    """The records of one chat: each turn is sent after the previous answer arrived and
    the person read it and typed the next (a log-normal pause around `think_median_s`)."""
    conversation = Conversation(system_prompt)
    ts = start_ts
    for text in turns:
        record = client.request(rng, ts, body_of(conversation.ask(text)), completion_of())
        yield record
        conversation.hear(rng, record["usage"]["completion_tokens"])
        ts += record["latency_ms"] / 1000.0 + human_gap(rng, think_median_s, 0.8)
