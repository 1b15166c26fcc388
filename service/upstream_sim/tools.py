"""When and which tools a model calls: forced by `tool_choice`, or with `auto` on the first
assistant turn after a user message (most of the time), never once a tool result has come
back for that message, so agent loops end with a text answer."""

from __future__ import annotations

import json
import random
import re
import uuid

from .schema_instances import SchemaInstances
from .writer import Writer

AUTO_CALL_SHARE = 0.9
PARALLEL_SHARE = 0.25
_WORD = re.compile(r"[a-z]{3,}")


def functions(request: dict) -> list[dict]:
    """The offered functions (`tools` of type function; the legacy `functions` is not simulated)."""
    offered = [t.get("function") for t in request.get("tools") or [] if isinstance(t, dict)]
    return [f for f in offered if isinstance(f, dict) and f.get("name")]


def chosen(request: dict, rng: random.Random, last_user: str) -> tuple[list[dict], bool]:
    """(functions to call, forced by name); no functions means answer in text."""
    offered = functions(request)
    choice = request.get("tool_choice") or "auto"
    if not offered or choice == "none":
        return [], False
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        named = [f for f in offered if f["name"] == name]
        if not named:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
        return named, True
    if choice != "required" and (_answered(request) or rng.random() >= AUTO_CALL_SHARE):
        return [], False
    ranked = sorted(offered, key=lambda f: -_overlap(f, last_user))
    calls = [ranked[0] if _overlap(ranked[0], last_user) else rng.choice(offered)]
    parallel = request.get("parallel_tool_calls", True) is not False
    if parallel and len(offered) > 1 and rng.random() < PARALLEL_SHARE:
        calls.append(rng.choice([f for f in offered if f is not calls[0]]))
    return calls, False


def _answered(request: dict) -> bool:
    """True when a tool result follows the last user message."""
    for message in reversed(request.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("tool", "function"):
            return True
        if role == "user":
            return False
    return False


def _overlap(function: dict, text: str) -> int:
    mine = set(_WORD.findall(f"{function['name'].replace('_', ' ')} {function.get('description', '')}".lower()))
    return len(mine & set(_WORD.findall(text.lower())))


def call(function: dict, writer: Writer, rng: random.Random, query: str) -> dict:
    """One tool call whose arguments are an instance of the function's `parameters`."""
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    arguments = SchemaInstances(parameters, writer, rng, query).instance()
    return {"id": f"call_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}", "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(arguments)}}
