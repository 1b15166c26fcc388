"""An instance of a JSON schema, as a model in structured-output mode would write it:
types, required and optional properties, enums, const, arrays within their item bounds,
nested objects, `$defs`/`$ref` as pydantic emits them, anyOf/oneOf/allOf, number bounds and
common string formats. Regex `pattern`s are not generated (the value may not match one)."""

from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timedelta

from .writer import Writer

MAX_DEPTH = 6
OPTIONAL_SHARE = 0.6
_PROSE = ("description", "summary", "explanation", "reasoning", "rationale", "answer", "content", "text",
          "response", "justification", "feedback", "analysis", "critique", "thought", "message", "body")
_QUERY = ("query", "question", "search", "q", "keywords", "topic", "prompt", "input")


class SchemaInstances:
    """Generates instances of one root schema (the document `$ref`s point into)."""

    def __init__(self, root: dict, writer: Writer, rng: random.Random, query: str = "") -> None:
        self.root, self.writer, self.rng, self.query = root, writer, rng, query

    def instance(self, schema: object = None, name: str = "", depth: int = 0) -> object:
        schema = self.root if schema is None else schema
        if schema is True or not isinstance(schema, dict):
            return self._string({}, name)
        if "$ref" in schema:
            return self.instance(self._resolve(schema["$ref"]), name, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
                merged = _merge(merged, part)
            return self.instance(merged, name, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return self.instance(self._option(schema[union], depth), name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            choices = [k for k in kind if k != "null"] or ["null"]
            kind = self.rng.choice(choices)
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        return getattr(self, f"_{kind}", self._string)(schema, name, depth)

    def _resolve(self, ref: str) -> dict:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, not {ref!r}")
        node: object = self.root
        for part in filter(None, ref[1:].split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _option(self, options: list, depth: int) -> object:
        """A union member: a real value most of the time, `null` when one is allowed now and then,
        and always `null` once nesting is deep (a recursive model must end somewhere)."""
        nulls = [o for o in options if isinstance(o, dict) and o.get("type") == "null"]
        others = [o for o in options if o not in nulls]
        if nulls and (not others or depth >= MAX_DEPTH or self.rng.random() < 0.15):
            return nulls[0]
        return self.rng.choice(others)

    def _object(self, schema: dict, name: str, depth: int = 0) -> dict:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        result = {}
        for key, sub in properties.items():
            if key in required or (depth < MAX_DEPTH and self.rng.random() < OPTIONAL_SHARE):
                result[key] = self.instance(sub, key, depth + 1)
        extra = schema.get("additionalProperties")
        wanted = schema.get("minProperties", 0)
        if not properties and isinstance(extra, dict) and depth < MAX_DEPTH:
            wanted = max(wanted, self.rng.randint(1, 3))
        while len(result) < wanted and depth < MAX_DEPTH + 2:
            key = self.writer.topic().replace(" ", "_")
            if key in result:
                key = f"{key}_{len(result)}"
            result[key] = self.instance(extra if isinstance(extra, dict) else {"type": "string"}, key, depth + 1)
        return result

    def _array(self, schema: dict, name: str, depth: int = 0) -> list:
        prefix = schema.get("prefixItems") or []
        low = max(schema.get("minItems", 0), len(prefix))
        high = schema.get("maxItems", low + 3)
        if depth >= MAX_DEPTH:
            high = low
        count = self.rng.randint(min(max(low, 1), high), max(min(high, low + 3), min(max(low, 1), high)))
        items = [self.instance(sub, name, depth + 1) for sub in prefix]
        item_schema = schema.get("items", {})
        attempts = 0
        while len(items) < count and item_schema is not False and attempts < count * 5:
            attempts += 1
            value = self.instance(item_schema, name, depth + 1)
            if schema.get("uniqueItems") and value in items:
                continue
            items.append(value)
        return items

    def _string(self, schema: dict, name: str = "", depth: int = 0) -> str:
        fmt, key = schema.get("format"), name.lower()
        if fmt in ("date-time", "date", "time"):
            moment = datetime(2024, 1, 1, 9, 0) + timedelta(minutes=self.rng.randrange(525600))
            value = {"date-time": moment.isoformat() + "Z", "date": moment.date().isoformat(),
                     "time": moment.time().isoformat()}[fmt]
        elif fmt == "email" or "email" in key:
            value = f"{self.writer.name().split()[0].lower()}@example.com"
        elif fmt in ("uri", "url", "iri") or key in ("url", "link", "website", "homepage"):
            value = f"https://example.com/{self.writer.topic().replace(' ', '-')}"
        elif fmt == "uuid":
            value = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        elif fmt == "ipv4":
            value = f"192.0.2.{self.rng.randint(1, 254)}"
        elif key in ("name", "full_name", "author", "person", "username") or key.endswith("_name"):
            value = self.writer.name()
        elif key in _QUERY and self.query:
            value = self.query
        elif any(word in key for word in _PROSE):
            value = self.writer.sentence()
        elif key in ("title", "heading", "headline"):
            value = self.writer.phrase(3).title()
        else:
            value = self.writer.phrase(self.rng.randint(1, 3))
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        while len(value) < low:
            value += " " + self.writer.topic()
        return value[:high] if high is not None else value

    def _integer(self, schema: dict, name: str = "", depth: int = 0) -> int:
        low, high = _bounds(schema, 1, name)
        low, high = math.ceil(low), math.floor(high)
        value = self.rng.randint(low, max(low, high))
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = math.ceil(value / step) * step
            value = value - step if value > high else value
        return value

    def _number(self, schema: dict, name: str = "", depth: int = 0) -> float:
        low, high = _bounds(schema, 0.01, name)
        return round(low + (high - low) * self.rng.random(), 2) if high > low else low

    def _boolean(self, schema: dict, name: str = "", depth: int = 0) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict, name: str = "", depth: int = 0) -> None:
        return None


def _bounds(schema: dict, step: float, name: str) -> tuple[float, float]:
    """[low, high] from minimum/maximum and their exclusive forms; scores default to [0, 1]."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = max(low if low is not None else -math.inf, schema["exclusiveMinimum"] + step)
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = min(high if high is not None else math.inf, schema["exclusiveMaximum"] - step)
    if low is None and high is None:
        unit = step < 1 and any(w in name.lower() for w in ("score", "confidence", "probability"))
        return (0.0, 1.0) if unit else (1, 100)
    return (high - 100 if low is None else low), (low + 100 if high is None else high)


def _merge(base: dict, part: dict) -> dict:
    merged = {**base, **{k: v for k, v in part.items() if k not in ("properties", "required")}}
    merged["properties"] = {**base.get("properties", {}), **part.get("properties", {})}
    merged["required"] = sorted(set(base.get("required", ())) | set(part.get("required", ())))
    if not merged["properties"]:
        merged.pop("properties")
        merged.pop("required")
    return merged
