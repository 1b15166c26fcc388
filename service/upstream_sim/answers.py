"""One choice's answer to a request: text, JSON, tool calls or DSPy fields, with reasoning
for reasoning models, sized by a draw from real traces and capped by `max_tokens`."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from . import fields, lengths, tokens, tools
from .schema_instances import SchemaInstances
from .writer import Writer, cut

REASONING_MODEL = re.compile(r"reason|^o\d|^gpt-5|r1\b|think", re.IGNORECASE)


@dataclass
class Answer:
    """What one choice says; `content` is None when the model only calls tools."""

    content: list[str] | None
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    finish: str = "stop"

    @property
    def completion_tokens(self) -> int:
        called = sum(tokens.count(c["function"]["name"]) + tokens.count(c["function"]["arguments"])
                     for c in self.tool_calls)
        return len(self.content or ()) + len(self.reasoning) + called


@dataclass(frozen=True)
class Prompt:
    """The parts of a request an answer depends on."""

    last_user: str
    system: str
    everything: str
    cap: int | None

    @classmethod
    def of(cls, request: dict, kind: str) -> Prompt:
        cap = request.get("max_completion_tokens") or request.get("max_tokens")
        if kind != "chat":
            prompt = request.get("prompt", "")
            text = prompt if isinstance(prompt, str) else " ".join(p for p in prompt if isinstance(p, str))
            return cls(text, "", text, cap)
        messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
        texts = [(m.get("role"), tokens.text_of(m.get("content"))) for m in messages]
        users = [t for role, t in texts if role == "user"]
        system = "\n".join(t for role, t in texts if role in ("system", "developer"))
        return cls(users[-1] if users else (texts[-1][1] if texts else ""), system,
                   "\n".join(t for _, t in texts), cap)


def is_reasoning(request: dict) -> bool:
    return bool(request.get("reasoning_effort")) or bool(REASONING_MODEL.search(str(request.get("model", ""))))


def answer(request: dict, prompt: Prompt, rng: random.Random, forced_length: int | None) -> Answer:
    """The answer of one choice; `forced_length` (a test header) fixes the text's length."""
    writer = Writer(prompt.last_user or prompt.everything, rng)
    thinking: list[str] = []
    if is_reasoning(request):
        size = lengths.reasoning_tokens(rng, str(request.get("reasoning_effort") or "medium"))
        thinking = tokens.pieces(writer.thinking(size))[:size]
    calls, forced = tools.chosen(request, rng, prompt.last_user)
    if calls:
        query = " ".join(writer.topics[:4])
        made = [tools.call(function, writer, rng, query) for function in calls]
        return _capped(Answer(None, thinking, made, "stop" if forced else "tool_calls"), prompt.cap)
    structured = _structured(request, prompt, writer, rng)
    if structured is not None:
        return _capped(Answer(tokens.pieces(structured), thinking), prompt.cap)
    kind = lengths.kind_of(prompt.everything[-4000:], prompt.cap)
    length = forced_length if forced_length is not None else lengths.answer_tokens(rng, kind)
    budget = length if prompt.cap is None else min(length, max(prompt.cap - len(thinking), 0))
    finish = "length" if prompt.cap is not None and length + len(thinking) >= prompt.cap else "stop"
    if kind == lengths.SHORT:
        text = f"{writer.label(prompt.everything)}. {writer.answer(budget, kind)}"
    else:
        text = writer.answer(budget, kind)
    content = cut(text, budget, finish == "stop")
    stopped = _at_stop_sequence(content, request.get("stop"))
    return Answer(stopped or content, thinking[:prompt.cap], finish="stop" if stopped else finish)


def _at_stop_sequence(content: list[str], stop: object) -> list[str] | None:
    """The content up to the first stop sequence in it (which is left out), or None."""
    sequences = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str) and s]
    text = "".join(content)
    ends = [text.find(s) for s in sequences if s and s in text]
    return tokens.pieces(text[:min(ends)]) if ends else None


def _structured(request: dict, prompt: Prompt, writer: Writer, rng: random.Random) -> str | None:
    """JSON or DSPy fields when the request or its prompt asks for them; None for free text."""
    response_format = request.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object", "properties": {}}
        return json.dumps(SchemaInstances(schema, writer, rng).instance())
    if kind == "json_object":
        schema = fields.object_schema(prompt.everything[-20000:], prompt.system)
        return json.dumps(SchemaInstances(schema, writer, rng).instance())
    markers = fields.marker_fields(prompt.last_user, prompt.system)
    if markers:
        values = {name: SchemaInstances(schema, writer, rng).instance(schema, name) for name, schema in markers.items()}
        return fields.render_markers(values)
    if "json" in prompt.everything.lower():
        pasted = fields.prompt_schema(prompt.everything[-20000:])
        if pasted:
            return json.dumps(SchemaInstances(pasted, writer, rng).instance())
    return None


def _capped(result: Answer, cap: int | None) -> Answer:
    """Thinking is spent first; whatever follows is cut at the cap, as a real model's is."""
    if cap is None or result.completion_tokens <= cap:
        return result
    result.reasoning = result.reasoning[:cap]
    left = cap - len(result.reasoning)
    if result.tool_calls:
        for tool_call in result.tool_calls:
            function = tool_call["function"]
            function["arguments"] = "".join(tokens.pieces(function["arguments"])[:max(left, 0)])
            left -= tokens.count(function["arguments"])
    else:
        result.content = (result.content or [])[:left]
    result.finish = "length"
    return result
