"""Output formats that prompts, not API parameters, ask for: DSPy's `[[ ## field ## ]]`
markers with typed fields, JSON keys quoted in a prompt, a JSON Schema pasted into a prompt
(ragas and similar libraries). Each is read into a JSON schema the answer then follows."""

from __future__ import annotations

import json
import re

_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_DECLARED = re.compile(r"^\s*\d+\. `(\w+)` \((.+?)\)(?::|$)", re.MULTILINE)
_QUOTED_KEY = re.compile(r'"(\w{1,40})"\s*:')
_LITERAL = re.compile(r"""['"]([^'"]*)['"]""")
DONE = "completed"
_SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def declared_types(text: str) -> dict[str, dict]:
    """DSPy's field list (`1. `answer` (int): ...`) as a schema per field."""
    return {name: type_schema(kind) for name, kind in _DECLARED.findall(text)}


def type_schema(kind: str) -> dict:
    """A Python type as DSPy prints it (str, int, list[str], Literal['a', 'b'], ...) as a schema."""
    kind = kind.strip()
    if kind.startswith("Literal["):
        return {"enum": _LITERAL.findall(kind) or ["yes"]}
    if kind.startswith(("list[", "List[")):
        return {"type": "array", "items": type_schema(kind[5:-1]), "minItems": 1, "maxItems": 4}
    if kind.startswith(("dict[", "Dict[")):
        return {"type": "object", "additionalProperties": {"type": "string"}}
    return {"type": _SCALARS.get(kind, "string")}


def marker_fields(last_user: str, system: str) -> dict[str, dict] | None:
    """The output fields a DSPy ChatAdapter prompt asks for, in order, or None."""
    if f"[[ ## {DONE} ## ]]" not in last_user:
        return None
    asked = last_user[last_user.rfind("Respond with"):] if "Respond with" in last_user else last_user
    names = [n for n in dict.fromkeys(_MARKER.findall(asked)) if n != DONE]
    types = declared_types(system)
    return {name: types.get(name, {"type": "string"}) for name in names}


def prompt_schema(text: str) -> dict | None:
    """A JSON Schema object pasted into the prompt (one with `properties`), or None."""
    decoder = json.JSONDecoder()
    for count, match in enumerate(re.finditer(r"\{\s*\"", text)):
        if count >= 40:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("properties"), dict):
            return value
    return None


def object_schema(text: str, system: str) -> dict:
    """What a `json_object` answer should hold: the pasted schema, DSPy's typed fields, the
    keys the prompt quotes, or an `answer`."""
    pasted = prompt_schema(text)
    if pasted:
        return pasted
    typed = declared_types(system)
    keys = list(dict.fromkeys(_QUOTED_KEY.findall(text)))[:12] or list(typed) or ["answer"]
    properties = {key: typed.get(key, {"type": "string"}) for key in keys}
    return {"type": "object", "properties": properties, "required": keys}


def render_markers(values: dict[str, object]) -> str:
    parts = [f"[[ ## {name} ## ]]\n{_plain(value)}" for name, value in values.items()]
    return "\n\n".join([*parts, f"[[ ## {DONE} ## ]]"])


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
