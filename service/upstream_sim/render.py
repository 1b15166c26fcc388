"""Answers rendered as OpenAI sends them: a whole `chat.completion` / `text_completion`, or
server-sent chunks (role first, reasoning, content or tool-call argument deltas, the finish
chunk, the usage chunk when `stream_options.include_usage` asks for it, then [DONE])."""

from __future__ import annotations

import json
import random
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator

from . import logprobs, tokens
from .answers import Answer, Prompt, answer


class ModelCompletion:
    """One request's deterministic answers (seed + request body), n choices of them."""

    def __init__(self, kind: str, request: dict, body: bytes, seed: int, forced_length: int | None) -> None:
        self.kind, self.request = kind, request
        self.n = max(int(request.get("n") or 1), 1)
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = request.get("model", "sim")
        rng = random.Random(seed ^ zlib.crc32(body))
        prompt = Prompt.of(request, kind)
        self.answers = [answer(request, prompt, rng, forced_length) for _ in range(self.n)]
        if kind == "text":
            for result in self.answers:  # a continuation goes on after the prompt's last word
                if result.content and not result.content[0][:1].isspace():
                    result.content[0] = " " + result.content[0]
        if kind == "chat":
            self.top = int(request.get("top_logprobs") or 0) if request.get("logprobs") else -1
            prompt_tokens = tokens.chat_prompt_tokens(request)
        else:
            self.top = int(request["logprobs"]) if request.get("logprobs") is not None else -1
            prompt_tokens = tokens.count(prompt.everything)
        self.echo = prompt.everything if kind == "text" and request.get("echo") else ""
        self.logprobs = [self._logprobs(a, rng) for a in self.answers] if self.top >= 0 else None
        self.length = max(a.completion_tokens for a in self.answers)
        completion = sum(a.completion_tokens for a in self.answers)
        self.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}
        reasoning = sum(len(a.reasoning) for a in self.answers)
        if kind == "chat":
            self.usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}

    def _logprobs(self, result: Answer, rng: random.Random) -> object:
        pieces = result.content or []
        if self.kind == "text":
            echoed = tokens.pieces(self.echo)
            return logprobs.legacy(echoed + pieces, self.top, rng)
        return [logprobs.chat_entry(piece, self.top, rng) for piece in pieces]

    def envelope(self, choices: list, chunk: bool) -> dict:
        object_ = "text_completion" if self.kind == "text" else "chat.completion.chunk" if chunk else "chat.completion"
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model,
                "system_fingerprint": "fp_sim", "choices": choices}

    def whole(self) -> dict:
        choices = []
        for index, result in enumerate(self.answers):
            content = None if result.content is None else "".join(result.content)
            if self.kind == "text":
                lp = self.logprobs[index] if self.logprobs else None
                choice = {"text": self.echo + (content or ""), "logprobs": lp}
            else:
                message = {"role": "assistant", "content": content, "refusal": None}
                if result.reasoning:
                    message["reasoning_content"] = "".join(result.reasoning)
                if result.tool_calls:
                    message["tool_calls"] = result.tool_calls
                lp = {"content": self.logprobs[index], "refusal": None} if self.logprobs else None
                choice = {"message": message, "logprobs": lp}
            choices.append({"index": index, **choice, "finish_reason": result.finish})
        return {**self.envelope(choices, chunk=False), "usage": self.usage}

    def events(self):
        """Yields (token step, SSE bytes); the sender spaces steps in time."""
        streams = [list(self._deltas(index, result)) for index, result in enumerate(self.answers)]
        chunks = ((step, stream[step]) for step in range(max(len(s) for s in streams))
                  for stream in streams if step < len(stream))
        return sse_events(self, chunks, [result.finish for result in self.answers])

    def _deltas(self, index: int, result: Answer):
        """The choice's chunks, one token each (a tool call's name comes whole, as OpenAI sends it)."""
        base = {"index": index, "logprobs": None, "finish_reason": None}
        if self.kind == "text":
            lp = self.logprobs[index] if self.logprobs else None
            pieces = tokens.pieces(self.echo) + (result.content or [])
            for position, piece in enumerate(pieces):
                one = {key: value[position:position + 1] for key, value in lp.items()} if lp else None
                yield {**base, "text": piece, "logprobs": one}
            return
        yield {**base, "delta": {"role": "assistant", "content": "" if result.content is not None else None,
                                 "refusal": None}}
        for piece in result.reasoning:
            yield {**base, "delta": {"reasoning_content": piece}}
        for position, piece in enumerate(result.content or []):
            lp = {"content": [self.logprobs[index][position]], "refusal": None} if self.logprobs else None
            yield {**base, "delta": {"content": piece}, "logprobs": lp}
        for number, tool_call in enumerate(result.tool_calls):
            function = tool_call["function"]
            yield {**base, "delta": {"tool_calls": [{"index": number, "id": tool_call["id"], "type": "function",
                                                     "function": {"name": function["name"], "arguments": ""}}]}}
            for piece in tokens.pieces(function["arguments"]):
                yield {**base, "delta": {"tool_calls": [{"index": number, "function": {"arguments": piece}}]}}


def sse_events(completion, chunks: Iterable[tuple[int, dict]], finishes: list[str]) -> Iterator[tuple[int, bytes]]:
    """(token step, SSE bytes) of a streamed completion, either answer mode's: each chunk's
    choice, each choice's finish, the usage chunk when `stream_options` asks, and [DONE]."""
    with_usage = bool((completion.request.get("stream_options") or {}).get("include_usage"))
    extra = {"usage": None} if with_usage else {}
    step = 0
    for step, choice in chunks:
        yield step, _sse({**completion.envelope([choice], chunk=True), **extra})
    for index, finish in enumerate(finishes):
        last = {"index": index, "finish_reason": finish, "logprobs": None}
        last.update({"delta": {}} if completion.kind == "chat" else {"text": ""})
        yield step, _sse({**completion.envelope([last], chunk=True), **extra})
    if with_usage:
        yield step, _sse({**completion.envelope([], chunk=True), "usage": completion.usage})
    yield step, b"data: [DONE]\n\n"


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
