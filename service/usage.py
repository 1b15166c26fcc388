"""Token accounting: what a request may cost before it runs, and what it did cost after.

Before: a cheap over-estimate (prompt bytes / 4, plus `max_tokens` times `n`), reserved at
admission so parallel requests cannot slip past a token limit. After: the upstream's
`usage`, from the JSON body or the stream's usage chunk; a stream cut short is charged its
prompt estimate plus one token per content chunk already relayed.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass

COMPLETION_PATHS = ("/chat/completions", "/completions", "/responses")
STREAMABLE_PATHS = ("/chat/completions", "/completions")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_prompt_tokens(body: bytes) -> int:
    """Over-estimates a prompt's tokens from its request size: about four bytes per token."""
    return len(body) // 4 + 1


def reservation(path: str, body: bytes, request: dict | None, default_max_tokens: int) -> int:
    """Tokens to reserve at admission: the prompt estimate plus the most it may generate."""
    prompt = estimate_prompt_tokens(body) if body else 0
    if request is None or not path.endswith(COMPLETION_PATHS):
        return prompt
    max_out = (
        request.get("max_completion_tokens")
        or request.get("max_tokens")
        or request.get("max_output_tokens")
        or default_max_tokens
    )
    choices = request.get("n") or 1
    try:  # a negative or absurd ask must never lower the reservation nor break admission
        return prompt + max(int(max_out), 0) * max(int(choices), 1)
    except (TypeError, ValueError, OverflowError):
        return prompt + default_max_tokens


def usage_from_mapping(usage: object) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
    if not prompt and not completion and usage.get("total_tokens"):
        prompt = usage["total_tokens"]
    try:
        return Usage(int(prompt), int(completion))
    except (TypeError, ValueError, OverflowError):
        return None


class UnreadableBody(ValueError):
    """The upstream's JSON answer does not decode or parse: relaying it would hand the
    client a broken answer as if it were whole."""


def usage_from_body(body: bytes, content_encoding: str | None) -> Usage | None:
    """`usage` of a whole JSON response, decompressing gzip or deflate when needed; raises
    UnreadableBody when the body claims JSON and is not. Unknown encodings pass unread."""
    if not body:
        return None
    if content_encoding in ("gzip", "deflate"):
        body = _decompress(body, content_encoding)
    elif content_encoding not in (None, "", "identity"):
        return None
    try:
        answer = json.loads(body)
    except RecursionError:  # deep, but JSON: the client may parse it, the usage is not there
        return None
    except ValueError as exc:  # UnicodeDecodeError included
        raise UnreadableBody(f"not JSON: {type(exc).__name__}") from None
    return usage_from_mapping(answer.get("usage")) if isinstance(answer, dict) else None


def _decompress(body: bytes, content_encoding: str) -> bytes:
    try:
        if content_encoding == "gzip":
            return gzip.decompress(body)  # checks the trailer's CRC and size, takes several members
        try:
            return zlib.decompress(body)  # deflate as the RFC says: zlib-wrapped
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw, as some servers send it
    except (OSError, EOFError, zlib.error):
        raise UnreadableBody(f"{content_encoding} body does not decode") from None


class StreamAccountant:
    """Relays server-sent events whole, reads their usage, and drops the usage-only chunk
    that the gateway asked for on the client's behalf."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None
        self.content_events = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in `chunk` (plus what came before) that the client should get."""
        data = self._pending + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        self._pending = data[end + 2 :]
        return self._filter(data[: end + 2])

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._filter(rest) if rest else b""

    def _filter(self, events: bytes) -> bytes:
        if b'"usage"' not in events:
            self.content_events += events.count(b"data: {")
            return events
        kept = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            if self._is_usage_chunk(event):
                if self.strip_usage_chunk:
                    continue
            elif event.startswith(b"data: {"):
                self.content_events += 1
            kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else b""

    def _is_usage_chunk(self, event: bytes) -> bool:
        if not event.startswith(b"data: {") or b'"usage"' not in event:
            return False
        try:
            payload = json.loads(event[6:])
        except ValueError:
            return False
        usage = usage_from_mapping(payload.get("usage"))
        if usage is None:
            return False
        self.usage = usage
        return not payload.get("choices")
