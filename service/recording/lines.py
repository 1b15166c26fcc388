"""One finished request -> its line in a traffic file, in the recording's body mode.

`full` keeps the body as the client sent it; `features` keeps the parameters and, in place
of the text, the text features detection derives from it (by detection's own function),
so `distillguard score` and `train` see a features-only recording as they see a full one;
`none` keeps no body. Keys are key_ids; header values only where configured.
"""

from __future__ import annotations

import json
from functools import lru_cache
from ipaddress import ip_address
from typing import NamedTuple

from detectors.features import RequestFeatures, request_features
from traffic.format import TEXT_FEATURES

UNKNOWN_ADDRESS = "0.0.0.0"  # no client address (a unix socket): the format requires one
LABEL_CHARS = 128
# Request parameters a `features` recording keeps: what detection reads besides the text.
PARAMETERS = frozenset({
    "model", "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_p", "n", "logprobs",
    "top_logprobs", "stream", "reasoning_effort", "seed", "presence_penalty", "frequency_penalty", "best_of", "echo",
    "parallel_tool_calls", "service_tier", "store", "encoding_format", "dimensions", "tool_choice",
})


class Finished(NamedTuple):
    """What a line needs of one finished request, kept from `listen` to the writer.
    Ordered by (ts, seq): the heap of waiting requests sorts on those two alone."""

    ts: float
    seq: int
    key_id: str
    ip: str | None
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    request: dict | None
    strip_usage: bool
    status: int
    latency_ms: float
    usage: tuple[int, int] | None
    size: int
    features: RequestFeatures | None = None  # detection's, when its listener ran first


class HeaderNames(NamedTuple):
    """Header names whose values are kept: exact names and prefixes (`x-stainless-*`)."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, patterns: list[str]) -> HeaderNames:
        return cls(frozenset(p for p in patterns if not p.endswith("*")),
                   tuple(p[:-1] for p in patterns if p.endswith("*")))

    def keeps(self, name: str) -> bool:
        return name in self.exact or name.startswith(self.prefixes)


def traffic_record(finished: Finished, bodies: str, kept_headers: HeaderNames) -> dict:
    """The line of one finished request. Header names are all kept, in the order sent
    (detection hashes that order), values only for `kept_headers`: never a credential."""
    record = {
        "ts": round(finished.ts, 6), "key_id": finished.key_id, "ip": _address(finished.ip),
        "method": finished.method, "path": finished.path,
    }
    headers = {}
    for name, value in finished.headers:
        text = name.decode("latin-1").lower()
        headers[text] = value.decode("latin-1") if kept_headers.keeps(text) else ""
    if headers:
        record["headers"] = headers
    request = finished.request
    if request is not None:
        record["body"] = as_sent(request, finished.strip_usage) if bodies == "full" else parameters_of(request)
    if 100 <= finished.status <= 599:
        record["status"] = finished.status
    record["latency_ms"] = round(finished.latency_ms, 3)
    usage = None
    if finished.usage is not None:
        usage = record["usage"] = {"prompt_tokens": finished.usage[0], "completion_tokens": finished.usage[1]}
    if bodies == "features" and request is not None:
        record["features"] = (text_features(request, finished.path, usage) if finished.features is None
                              else {name: getattr(finished.features, name) for name in TEXT_FEATURES})
    return record


def as_sent(request: dict, strip_usage: bool) -> dict:
    """The body the client sent: without the usage option the gateway added to a stream."""
    if not strip_usage:
        return request
    request = dict(request)
    options = {k: v for k, v in request.pop("stream_options", {}).items() if k != "include_usage"}
    if options:
        request["stream_options"] = options
    return request


def parameters_of(request: dict) -> dict:
    """A body with its text gone: scalar parameters, the kinds of tools and formats, no
    messages, prompts, instructions or schemas."""
    kept = {}
    for name, value in request.items():
        if name in PARAMETERS:
            if isinstance(value, str):
                kept[name] = value[:LABEL_CHARS]
            elif value is None or isinstance(value, bool | int | float):
                kept[name] = value
        elif name in ("tools", "functions") and isinstance(value, list):
            kept[name] = [{"type": _kind(tool) or "function"} for tool in value]
        elif name == "response_format":
            kept[name] = {"type": _kind(value)} if isinstance(value, dict) else _label(value)
        elif name == "text" and isinstance(value, dict):
            kept[name] = {"format": {"type": _kind(value.get("format"))}}
        elif name == "reasoning" and isinstance(value, dict):
            kept[name] = {"effort": _label(value.get("effort"))}
        elif name in ("include", "modalities") and isinstance(value, list):
            kept[name] = [item[:LABEL_CHARS] for item in value if isinstance(item, str)]
        elif name == "stream_options" and isinstance(value, dict):
            kept[name] = {k: v for k, v in value.items() if isinstance(v, bool)}
    return kept


def _label(value: object) -> str | None:
    return value[:LABEL_CHARS] if isinstance(value, str) else None


def _kind(value: object) -> str | None:
    return _label(value.get("type")) if isinstance(value, dict) else None


def text_features(request: dict, path: str, usage: dict | None) -> dict:
    """What detection derives from the prompt text, computed by detection's own function."""
    features = request_features(
        ts=0.0, key_id="", path=path, body=request, headers=None, client_ip=None, status=0,
        latency_ms=0.0, usage=usage, salt=b"",
    )
    return {name: getattr(features, name) for name in TEXT_FEATURES}


@lru_cache(maxsize=16384)
def _address(ip: str | None) -> str:
    if not ip:
        return UNKNOWN_ADDRESS
    try:
        ip_address(ip)
    except ValueError:
        return UNKNOWN_ADDRESS
    return ip


def encode_line(record: dict) -> bytes:
    """One compact JSON line, UTF-8 text as is (as `traffic.write_record` writes it); text
    that is not valid Unicode (a lone surrogate in a prompt) is written escaped instead."""
    try:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()
