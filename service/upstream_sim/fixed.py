"""The fixed answer: `default_completion_tokens` words from a small vocabulary, the benchmark
and test fast path (cheap to build, one token per SSE chunk, word counts equal token counts)."""

from __future__ import annotations

import random
import time
import uuid
import zlib

from .render import sse_events
from .tokens import text_of

WORDS = (
    "the", "river", "runs", "north", "past", "old", "stone", "bridges", "while", "quiet", "towns", "wake", "and",
    "merchants", "open", "their", "doors", "to", "travellers", "who", "carry", "maps", "letters", "bread", "and",
    "stories", "from", "distant", "hills", "where", "shepherds", "watch", "the", "weather", "turn", "and", "bells",
    "ring", "across", "green", "valleys", "at", "noon",
)


def inputs(value: object) -> list:
    """`prompt` / `input` as a list: a string, a token array, or a list of either."""
    return value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]


def word_count(item: object) -> int:
    return len(item) if isinstance(item, list) else len(str(item or "").split())


class FixedCompletion:
    """One request's deterministic answer, rendered whole or as server-sent events."""

    def __init__(self, kind: str, request: dict, body: bytes, seed: int, length: int, limit) -> None:
        self.kind, self.request, self.length = kind, request, length
        self.n = max(int(request.get("n") or 1), 1)
        self.finish = "length" if limit and length >= limit else "stop"
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = request.get("model", "sim")
        want = request.get("logprobs") if kind == "chat" else None
        self.top = int(request.get("top_logprobs") or 0) if want else -1
        rng = random.Random(seed ^ zlib.crc32(body))
        self.tokens = [[(" " if i else "") + rng.choice(WORDS) for i in range(length)] for _ in range(self.n)]
        self.logprobs = [[self._logprob(t, rng) for t in choice] for choice in self.tokens] if want else None
        if kind == "chat":
            messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
            prompt = sum(word_count(text_of(m.get("content"))) + 3 for m in messages)
        else:
            prompt = sum(word_count(item) for item in inputs(request.get("prompt", "")))
        total = length * self.n
        self.usage = {"prompt_tokens": prompt, "completion_tokens": total, "total_tokens": prompt + total}

    def _logprob(self, token: str, rng: random.Random) -> dict:
        """The chosen token ranks first; alternatives trail it, as a real top-k list would."""
        value = -round(rng.random() * 1.5, 4)
        top = [{"token": token, "logprob": value, "bytes": list(token.encode())}][:self.top]
        for rank in range(1, self.top):
            other = " " + rng.choice(WORDS)
            top.append({"token": other, "logprob": round(value - rank - rng.random(), 4),
                        "bytes": list(other.encode())})
        return {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": top}

    def envelope(self, choices: list, chunk: bool) -> dict:
        if self.kind == "text":
            object_ = "text_completion"
        else:
            object_ = "chat.completion.chunk" if chunk else "chat.completion"
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model,
                "system_fingerprint": "fp_mock", "choices": choices}

    def whole(self) -> dict:
        choices = []
        for index, tokens in enumerate(self.tokens):
            text = "".join(tokens)
            if self.kind == "chat":
                logprobs = {"content": self.logprobs[index], "refusal": None} if self.logprobs else None
                message = {"role": "assistant", "content": text, "refusal": None}
                choice = {"message": message, "logprobs": logprobs}
            else:
                choice = {"text": text, "logprobs": None}
            choices.append({"index": index, **choice, "finish_reason": self.finish})
        return {**self.envelope(choices, chunk=False), "usage": self.usage}

    def events(self):
        """Yields (token step, SSE bytes); the sender spaces steps in time."""
        chunks = ((step, self._chunk_choice(index, step)) for step in range(self.length) for index in range(self.n))
        return sse_events(self, chunks, [self.finish] * self.n)

    def _chunk_choice(self, index: int, step: int) -> dict:
        token = self.tokens[index][step]
        if self.kind == "text":
            return {"index": index, "text": token, "logprobs": None, "finish_reason": None}
        delta = {"role": "assistant", "content": token} if step == 0 else {"content": token}
        logprobs = {"content": [self.logprobs[index][step]], "refusal": None} if self.logprobs else None
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
