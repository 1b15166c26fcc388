"""One finished request -> its features: the single implementation the gateway, the scorer
and every offline command share, so a model trained offline sees what the live path sees.

Prompt text is never kept, only hashes and fingerprints of it; the client IP and user agent
are kept as hashes keyed by a deployment salt.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

from .request_shape import (
    asks_for_judgement,
    asks_for_rewrite,
    last_assistant_text,
    segments,
    tool_results,
    toolset_hash,
)
from .text import (
    asks_for_new_tasks,
    asks_for_reasoning,
    duplicate_hash,
    fingerprint_window,
    hamming,
    short_hash,
    template_fingerprint,
)

__all__ = ["RequestFeatures", "request_features", "to_fields", "from_fields", "hamming"]

TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
SYSTEM_ROLES = frozenset({"system", "developer"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_LABEL_CHARS = 128
MAX_COUNT = 2**31 - 1
UNKNOWN_COUNT = -1  # a count no line carried (completion tokens without `usage`)


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """What one finished request leaves behind for the detectors; no prompt text.

    Absent parameters read -1.0 (temperature, top_p), 0 (max_tokens, top_logprobs), 1 (n)
    or "" (strings); `completion_tokens` reads -1 when no `usage` said it (unknown, never 0). `template_fp` is a 64-bit SimHash of the last user text with its
    fillers masked (compare with `hamming`); `template_head` a 32-bit id of its first four
    masked words; `ip_prefix` a salted hash of the client's /24 or /64; `header_order` a
    salted hash of the request's header names in the order sent, which tells the HTTP client
    library apart whatever user agent it claims.
    """

    ts: float
    key_id: str
    path: str
    prompt_chars: int
    prompt_tokens: int
    completion_tokens: int
    message_count: int
    system_hash: str
    user_hash: str
    template_fp: int
    template_head: int
    model: str
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    logprobs: bool
    top_logprobs: int
    stream: bool
    has_tools: bool
    response_format: str
    reasoning_marker: bool
    reasoning_effort: str
    ip_prefix: str
    ua_hash: str
    status: int
    latency_ms: float
    header_order: str = ""
    task_generation_marker: bool = False
    previous_user_hash: str = ""
    # The request's shape (detectors/request_shape.py): the newest user turn's length and
    # line segments, tool results fed back, the tool set offered, the assistant turn resent,
    # and whether it asks for a judgement or for an instruction to be rewritten.
    user_chars: int = 0
    segments: str = ""
    tool_results: int = 0
    toolset: str = ""
    assistant_hash: str = ""
    judgement_marker: bool = False
    rewrite_marker: bool = False


@dataclass(slots=True)
class _Prompt:
    """The text a request sends, by role, as the chat, completions, responses and
    embeddings APIs each spell it."""

    system: list[str]
    user: list[str]
    chars: int = 0
    count: int = 0
    token_ids: int = 0


def _part_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def _add_messages(prompt: _Prompt, messages: list) -> None:
    for message in messages:
        prompt.count += 1
        if not isinstance(message, dict):
            if isinstance(message, str):
                prompt.user.append(message)
                prompt.chars += len(message)
            continue
        text = _part_text(message.get("content"))
        prompt.chars += len(text)
        role = message.get("role", "user")
        if role in SYSTEM_ROLES:
            prompt.system.append(text)
        elif role == "user":
            prompt.user.append(text)


def _add_inputs(prompt: _Prompt, value: object) -> None:
    """A `prompt` or `input`: a string, a list of strings, or token ids (flat or nested)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return
    if value and all(isinstance(item, int) for item in value):
        prompt.count += 1
        prompt.token_ids += len(value)
        return
    for item in value:
        prompt.count += 1
        if isinstance(item, str):
            prompt.user.append(item)
            prompt.chars += len(item)
        elif isinstance(item, list):
            prompt.token_ids += len(item)


def _prompt(body: Mapping) -> _Prompt:
    prompt = _Prompt(system=[], user=[])
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        prompt.system.append(instructions)
        prompt.chars += len(instructions)
    messages = body.get("messages")
    if isinstance(messages, list):
        _add_messages(prompt, messages)
        return prompt
    source = body.get("prompt", body.get("input"))
    if isinstance(source, list) and any(isinstance(item, dict) for item in source):
        _add_messages(prompt, source)
    else:
        _add_inputs(prompt, source)
    return prompt


def last_user_text(body: Mapping) -> str:
    """The newest user turn of a request, as the features read it (the review console's sample)."""
    prompt = _prompt(body if isinstance(body, Mapping) else {})
    return prompt.user[-1] if prompt.user else ""


def _count(value: object, default: int) -> int:
    """A count from the client or upstream, clamped to 0..2**31-1 so a hostile value cannot
    break the arithmetic downstream (log1p of a negative, float of a 400-digit int)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return min(max(int(value), 0), MAX_COUNT)


def _float(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def _label(value: object) -> str:
    """A client-chosen name (model, effort) made safe to store: bounded and valid UTF-8."""
    if not isinstance(value, str):
        return ""
    value = value[:MAX_LABEL_CHARS]
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _first(body: Mapping, *names: str) -> object:
    for name in names:
        value = body.get(name)
        if value is not None:
            return value
    return None


def _logprobs(body: Mapping) -> tuple[bool, int]:
    """Chat asks with `logprobs: true` + `top_logprobs`; completions with `logprobs: <int>`;
    responses with `include` + `top_logprobs`."""
    value = body.get("logprobs")
    top = _count(body.get("top_logprobs"), 0)
    if isinstance(value, bool):
        return value, top
    if isinstance(value, int) and value > 0:
        return True, _count(value, 0)
    include = body.get("include")
    if isinstance(include, list) and LOGPROBS_INCLUDE in include:
        return True, top
    return False, top


def _response_format(body: Mapping) -> str:
    spec = body.get("response_format")
    if spec is None and isinstance(body.get("text"), Mapping):
        spec = body["text"].get("format")
    kind = spec.get("type") if isinstance(spec, Mapping) else spec
    return kind if kind in RESPONSE_FORMATS else ""


def _reasoning_effort(body: Mapping) -> str:
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if effort is None and isinstance(reasoning, Mapping):
        effort = reasoning.get("effort")
    return _label(effort)


def _keyed(text: str, salt: bytes) -> str:
    """12 hex of a salted hash: joins requests from one client without storing who it is."""
    key = salt if len(salt) <= 64 else hashlib.sha256(salt).digest()
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6, key=key).hexdigest()


def ip_prefix(client_ip: str, salt: bytes) -> str:
    """Salted hash of the client's /24 (IPv4) or /64 (IPv6): the unit one host or one small
    network rotates addresses within. Text that is no address is hashed as it is."""
    return _prefix_hash(client_ip[:64], salt)


@lru_cache(maxsize=16384)
def _prefix_hash(client_ip: str, salt: bytes) -> str:
    """Cached: a gateway sees few distinct clients, and parsing an address costs more than
    the rest of the client features together."""
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return _keyed("?" + client_ip, salt)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return _keyed("4:" + address.packed[:3].hex(), salt)
    return _keyed("6:" + address.packed[:8].hex(), salt)


MAX_HEADER_NAMES = 40


def header_order(headers: Mapping[str, str] | None, salt: bytes) -> str:
    """Salted hash of the header names in the order the client sent them (lower case, the
    first 40): each HTTP library sends its own set in its own order, and a script that
    rotates user agents rarely rewrites that. Empty when no headers are known."""
    if not headers:
        return ""
    names = [name.lower() for name, _ in zip(headers, range(MAX_HEADER_NAMES))]
    return _order_hash("\n".join(names), salt)


@lru_cache(maxsize=4096)
def _order_hash(names: str, salt: bytes) -> str:
    """Cached: a gateway sees a handful of client libraries, each with one order."""
    return _keyed(names, salt)


def _usage_tokens(usage: object, name: str, alias: str, unknown: int = 0) -> int:
    if isinstance(usage, Mapping):
        value = usage.get(name, usage.get(alias))
    else:
        value = getattr(usage, name, None)
    return _count(value, unknown)


def request_features(
    *,
    ts: float,
    key_id: str,
    path: str,
    body: dict | None,
    headers: Mapping[str, str] | None,
    client_ip: str | None,
    status: int,
    latency_ms: float,
    usage: Mapping | None,
    salt: bytes,
) -> RequestFeatures:
    """Features of one finished request; never raises on a malformed body.

    `usage` is the upstream's (prompt/completion or input/output tokens); without it the
    prompt is estimated at four characters a token. The template fingerprint covers the
    first 2,000 and last 500 bytes of the last user text, so its cost is bounded.
    """
    body = body if isinstance(body, Mapping) else {}
    prompt = _prompt(body)
    user_text = prompt.user[-1] if prompt.user else ""
    # The user turn before the newest: a chat client resends it as history, so the window can
    # tell a conversation that continues from a made-up one (windows.py: standalone_share).
    previous_user_text = prompt.user[-2] if len(prompt.user) >= 2 else ""
    template_fp, template_head = template_fingerprint(fingerprint_window(user_text)) if user_text else (0, 0)
    system_text = "\n".join(prompt.system)
    # What this request asks: the system prompt and the newest user turn. Earlier turns were
    # asked (and counted) before, and re-reading them would make one "step by step" in a
    # long chat count again on every later turn.
    lowered = [system_text.lower(), user_text.lower()]
    embeddings = path.rstrip("/").endswith("/embeddings")
    reasoning_marker = not embeddings and any(map(asks_for_reasoning, lowered))
    task_generation_marker = not embeddings and any(map(asks_for_new_tasks, lowered))
    logprobs, top_logprobs = _logprobs(body)
    history = body.get("messages")
    if not isinstance(history, list):
        history = body.get("input") if isinstance(body.get("input"), list) else None
    assistant_text = last_assistant_text(history)
    prompt_tokens = _usage_tokens(usage, "prompt_tokens", "input_tokens")
    if prompt_tokens == 0:
        prompt_tokens = -(-prompt.chars // 4) + prompt.token_ids
    user_agent = headers.get("user-agent") if headers else None
    return RequestFeatures(
        ts=float(ts),
        key_id=key_id,
        path=path,
        prompt_chars=prompt.chars,
        prompt_tokens=prompt_tokens,
        completion_tokens=_usage_tokens(usage, "completion_tokens", "output_tokens", UNKNOWN_COUNT),
        message_count=prompt.count,
        system_hash=short_hash(system_text) if prompt.system else "",
        user_hash=duplicate_hash(lowered[-1]) if prompt.user else "",
        template_fp=template_fp,
        template_head=template_head,
        model=_label(body.get("model")),
        max_tokens=_count(_first(body, "max_tokens", "max_completion_tokens", "max_output_tokens"), 0),
        temperature=_float(body.get("temperature"), -1.0),
        top_p=_float(body.get("top_p"), -1.0),
        n=_count(body.get("n"), 1),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        stream=body.get("stream") is True,
        has_tools=bool(body.get("tools") or body.get("functions")),
        response_format=_response_format(body),
        reasoning_marker=reasoning_marker,
        reasoning_effort=_reasoning_effort(body),
        ip_prefix=ip_prefix(client_ip, salt) if client_ip else "",
        ua_hash=_keyed(user_agent, salt) if user_agent else "",
        status=int(status),
        latency_ms=float(latency_ms),
        header_order=header_order(headers, salt),
        task_generation_marker=task_generation_marker,
        previous_user_hash=duplicate_hash(previous_user_text.lower()) if previous_user_text else "",
        user_chars=len(user_text),
        segments=segments(user_text, lowered[-1]),
        tool_results=tool_results(history),
        toolset=toolset_hash(body),
        assistant_hash=duplicate_hash(assistant_text.lower()) if assistant_text else "",
        judgement_marker=not embeddings and any(map(asks_for_judgement, lowered)),
        rewrite_marker=not embeddings and any(map(asks_for_rewrite, lowered)),
    )


# Stream entries: every field under its own name, in one fixed order, so Redis stores the
# names once per stream node (entries with the master entry's fields repeat only values).
_FIELDS = tuple((f.name, f.type) for f in fields(RequestFeatures))
_HEX_FIELDS = frozenset({"template_fp", "template_head"})


def _to_text(name: str, kind: str, value: object) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if name in _HEX_FIELDS:
        return format(value, "x")
    if kind == "float":
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _from_text(name: str, kind: str, text: str) -> object:
    if kind == "bool":
        return text == "1"
    if name in _HEX_FIELDS:
        return int(text, 16)
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    return text


_DEFAULTS = {"temperature": "-1", "top_p": "-1", "n": "1"}


def to_fields(features: RequestFeatures) -> dict[str, str]:
    """A stream entry's fields; `from_fields` gives back an equal RequestFeatures."""
    return {name: _to_text(name, kind, getattr(features, name)) for name, kind in _FIELDS}


def from_fields(entry: Mapping[bytes | str, bytes | str]) -> RequestFeatures:
    """Reads a stream entry back; fields missing from older entries take their defaults.
    Raises ValueError on a value that is not what its field holds."""
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode("utf-8", "surrogatepass") if isinstance(v, bytes) else v)
        for k, v in entry.items()
    }
    values = {}
    for name, kind in _FIELDS:
        raw = text.get(name)
        if raw is None:
            raw = _DEFAULTS.get(name, "" if kind == "str" else "0")
        values[name] = _from_text(name, kind, raw)
    return RequestFeatures(**values)
