"""A tokenizer estimate shared by every answer and by `usage`: words and punctuation marks,
each with the whitespace before it, so the pieces join back into the exact text."""

from __future__ import annotations

import json
import re

_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
# OpenAI's chat accounting: a few tokens of framing per message, and three to prime the reply.
PER_MESSAGE, REPLY_PRIMING = 3, 3


def pieces(text: str) -> list[str]:
    """The token pieces of `text`; `"".join(pieces(text)) == text`."""
    return _PIECE.findall(text)


def count(text: str) -> int:
    return len(_PIECE.findall(text))


def text_of(content: object) -> str:
    """Message content as text, whether a string or a list of typed parts."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def chat_prompt_tokens(request: dict) -> int:
    """Prompt tokens of a chat request: every message's text, tool calls and tool schemas."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    total = REPLY_PRIMING
    for message in messages:
        total += PER_MESSAGE + count(text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += count(str(function.get("name", ""))) + count(str(function.get("arguments", "")))
    for extra in ("tools", "response_format"):
        if request.get(extra):
            total += count(_compact(request[extra]))
    return total


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
