"""The traffic file: JSON Lines, one finished request a line, in `ts` order.

The gateway's recorder writes it, the simulator writes it, and `train`, `score` and replay
read it, so one reader validates every line and names the file, line and field of the
first thing wrong. Reading streams line by line (plain or gzip), so a file of any size
costs the memory of one line. See docs/traffic-format.md.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import IO, NoReturn

__all__ = ["TrafficRecord", "TrafficFormatError", "TrafficWriter", "read_traffic", "write_record", "LABELS",
           "TEXT_FEATURES"]

LABELS = frozenset({"benign", "attack"})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FIELDS = frozenset({
    "ts", "key", "key_id", "ip", "method", "path", "headers", "body", "label", "scenario",
    "status", "latency_ms", "usage", "features", "family",
})
USAGE_COUNTS = ("prompt_tokens", "completion_tokens")
# What a recording keeps of the prompt when it drops the text (`recording.bodies: features`):
# the RequestFeatures fields detection derives from the text, by the kind of value each is.
TEXT_FEATURES = {
    "prompt_chars": "count", "prompt_tokens": "count", "message_count": "count", "system_hash": "hash",
    "user_hash": "hash", "template_fp": "u64", "template_head": "u32", "reasoning_marker": "bool",
    "task_generation_marker": "bool", "previous_user_hash": "hash", "user_chars": "count",
    "segments": "segments", "tool_results": "count", "toolset": "hash8", "assistant_hash": "hash",
    "judgement_marker": "bool", "rewrite_marker": "bool",
}
# Added after the first eight: a file without them still reads (as 0, False and "", the
# values RequestFeatures defaults to).
OPTIONAL_TEXT_FEATURES = frozenset({
    "task_generation_marker", "previous_user_hash", "user_chars", "segments", "tool_results", "toolset",
    "assistant_hash", "judgement_marker", "rewrite_marker",
})
_FEATURE_LIMITS = {"count": 2**31, "u64": 2**64, "u32": 2**32}
_FEATURE_KINDS = {
    "count": "an integer 0 to 2**31-1", "u64": "an integer 0 to 2**64-1", "u32": "an integer 0 to 2**32-1",
    "hash": "16 lowercase hex characters or \"\"", "hash8": "8 lowercase hex characters or \"\"",
    "bool": "true or false",
    "segments": "up to 8 comma-separated \"hex:chars\" pairs or \"\"",
}
# `segments` (detectors/request_shape.py): CRC-32 in hex (no padding) and a line length.
_SEGMENTS = re.compile(r"(?:[0-9a-f]{1,8}:[0-9]{1,10})(?:,[0-9a-f]{1,8}:[0-9]{1,10}){0,7}")
TS_TOLERANCE_S = 1.0
GZIP_MAGIC = b"\x1f\x8b"
_HEX = frozenset("0123456789abcdef")

KeyIdOf = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """One finished request as detectors see it: the raw key is already a key_id."""

    ts: float
    key_id: str
    ip: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: dict | None = None
    label: str | None = None
    scenario: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    usage: dict | None = None
    features: dict | None = None
    family: str | None = None

    def to_dict(self) -> dict:
        """The line this record is written as; absent optional fields are left out."""
        return {name: value for name, value in asdict(self).items() if value is not None and value != {}}


class TrafficFormatError(ValueError):
    """A line that is not a valid traffic record; says where and which field."""

    def __init__(self, source: str, line: int, field_name: str | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.field = field_name
        where = f"{source}:{line}"
        super().__init__(f"{where}: field '{field_name}': {problem}" if field_name else f"{where}: {problem}")


class _Invalid(Exception):
    """Raised by the field checks; `read_traffic` adds the file and line."""

    def __init__(self, field_name: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field_name
        self.problem = problem


def read_traffic(path_or_file: str | os.PathLike | IO, key_id_of: KeyIdOf | None = None) -> Iterator[TrafficRecord]:
    """Validated records of a traffic file, one at a time, in file order.

    `key_id_of(raw_key) -> key_id` turns a line's raw `key` into the key_id everything else
    uses (pass the gateway's hasher so simulated keys match live ones); without it a line
    with a raw key is an error. Raises `TrafficFormatError` at the first invalid line.
    """
    if isinstance(path_or_file, str | os.PathLike):
        source = os.fspath(path_or_file)
        with open(path_or_file, "rb") as raw:
            yield from _read_lines(_maybe_gunzip(raw), source, key_id_of)
    else:
        source = getattr(path_or_file, "name", None) or "<stream>"
        yield from _read_lines(_maybe_gunzip(path_or_file), str(source), key_id_of)


def _maybe_gunzip(handle: IO) -> IO:
    """Gzip is recognised by its magic bytes, not the file name (text handles are read as is)."""
    if isinstance(handle, io.TextIOBase):
        return handle
    if not hasattr(handle, "peek"):
        handle = io.BufferedReader(handle)
    if handle.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=handle, mode="rb"), buffer_size=1 << 16)
    return handle


def _read_lines(lines: IO, source: str, key_id_of: KeyIdOf | None) -> Iterator[TrafficRecord]:
    number = 0
    try:
        for number, record in _records(lines, source, key_id_of):  # noqa: B007 - the except below reads it
            yield record
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise TrafficFormatError(source, number + 1, None, f"unreadable gzip data ({error})") from None


def _records(lines: IO, source: str, key_id_of: KeyIdOf | None) -> Iterator[tuple[int, TrafficRecord]]:
    latest = -math.inf
    loads = json.loads
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except ValueError as error:
            raise TrafficFormatError(source, number, None, f"not valid JSON ({error})") from None
        try:
            record = _record(obj, key_id_of)
        except _Invalid as invalid:
            raise TrafficFormatError(source, number, invalid.field, invalid.problem) from None
        ts = record.ts
        if ts < latest - TS_TOLERANCE_S:
            problem = f"goes back {latest - ts:.3f} s (an earlier line has {latest}); lines must be in ts order"
            raise TrafficFormatError(source, number, "ts", problem)
        if ts > latest:
            latest = ts
        yield number, record


def _record(obj: object, key_id_of: KeyIdOf | None) -> TrafficRecord:
    """Checks a parsed line. The common, valid case is tested inline (this runs for every
    line of every file); any failure goes to the field's own check, which says why."""
    if type(obj) is not dict:
        raise _Invalid(None, f"must be a JSON object, not {type(obj).__name__}")
    if not obj.keys() <= FIELDS:
        raise _Invalid(sorted(obj.keys() - FIELDS)[0], "unknown field")
    get = obj.get
    ts = get("ts")
    if (type(ts) is not float and type(ts) is not int) or not 0 <= ts < math.inf:
        _ts(ts)
    key_id = get("key_id")
    if type(key_id) is not str or "key" in obj or not _is_key_id(key_id):
        key_id = _key_id(obj, key_id_of)
    ip = get("ip")
    if type(ip) is not str or not _is_ip(ip):
        _ip(ip)
    method = get("method")
    if type(method) is not str or method not in METHODS:
        _method(method)
    path = get("path")
    if type(path) is not str or not path.startswith("/"):
        _path(path)
    headers = get("headers")
    body = get("body")
    label = get("label")
    scenario = get("scenario")
    status = get("status")
    latency_ms = get("latency_ms")
    usage = get("usage")
    features = get("features")
    family = get("family")
    return TrafficRecord(
        float(ts), key_id, ip, method, path,
        {} if headers is None else _headers(headers),
        body if body is None or type(body) is dict else _refuse("body", "must be a JSON object or null"),
        label if label is None or (type(label) is str and label in LABELS)
        else _refuse("label", "must be 'benign', 'attack' or null"),
        scenario if scenario is None or type(scenario) is str else _refuse("scenario", "must be a string or null"),
        None if status is None else _status(status),
        None if latency_ms is None else _non_negative("latency_ms", latency_ms),
        None if usage is None else _usage(usage),
        None if features is None else _features(features),
        family if family is None or type(family) is str else _refuse("family", "must be a string or null"),
    )


def _ts(value: object) -> float:
    if value is None:
        raise _Invalid("ts", "missing")
    kind = type(value)
    if kind is not float and kind is not int:
        raise _Invalid("ts", "must be a number")
    if not 0 <= value < math.inf:
        raise _Invalid("ts", "must be a finite number of Unix seconds, not negative")
    return float(value)


def _key_id(obj: dict, key_id_of: KeyIdOf | None) -> str:
    raw, key_id = obj.get("key"), obj.get("key_id")
    if raw is not None and key_id is not None:
        raise _Invalid("key", "both 'key' and 'key_id' given; a line carries exactly one")
    if key_id is not None:
        if type(key_id) is not str or not _is_key_id(key_id):
            raise _Invalid("key_id", "must be 16 lowercase hex characters")
        return key_id
    if raw is None:
        raise _Invalid("key_id", "missing (give 'key_id', or a raw 'key')")
    if type(raw) is not str or not raw:
        raise _Invalid("key", "must be a non-empty string")
    if key_id_of is None:
        raise _Invalid("key", "raw key given but no key_id_of function to hash it")
    return key_id_of(raw)


def _ip(value: object) -> str:
    if value is None:
        raise _Invalid("ip", "missing")
    if type(value) is not str or not _is_ip(value):
        raise _Invalid("ip", "must be an IPv4 or IPv6 address")
    return value


@lru_cache(maxsize=65536)
def _is_key_id(text: str) -> bool:
    return len(text) == 16 and _HEX.issuperset(text)


@lru_cache(maxsize=65536)
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _method(value: object) -> str:
    if value is None:
        raise _Invalid("method", "missing")
    if type(value) is not str or value not in METHODS:
        raise _Invalid("method", f"must be one of {', '.join(sorted(METHODS))}")
    return value


def _path(value: object) -> str:
    if value is None:
        raise _Invalid("path", "missing")
    if type(value) is not str or not value.startswith("/"):
        raise _Invalid("path", "must be a string starting with '/'")
    return value


def _headers(value: object) -> dict:
    if type(value) is not dict:
        raise _Invalid("headers", "must be an object of header name -> string")
    for name, text in value.items():
        if type(text) is not str:
            raise _Invalid("headers", f"value of {name!r} must be a string")
    if any(name != name.lower() for name in value):
        return {name.lower(): text for name, text in value.items()}
    return value


def _refuse(name: str, problem: str) -> NoReturn:
    """A field's check failed: raised from inside `_record`'s expression."""
    raise _Invalid(name, problem)


def _status(value: object) -> int:
    if type(value) is not int or not 100 <= value <= 599:
        raise _Invalid("status", "must be an HTTP status code (integer 100-599)")
    return value


def _non_negative(name: str, value: object) -> float:
    kind = type(value)
    if (kind is not float and kind is not int) or not 0 <= value < math.inf:
        raise _Invalid(name, "must be a non-negative number")
    return float(value)


def _usage(value: object) -> dict:
    if type(value) is not dict:
        raise _Invalid("usage", "must be an object with prompt_tokens and completion_tokens")
    for name in USAGE_COUNTS:
        count = value.get(name)
        if type(count) is not int or count < 0:
            raise _Invalid("usage", f"'{name}' must be a non-negative integer")
    return value


def _features(value: object) -> dict:
    if type(value) is not dict:
        raise _Invalid("features", "must be an object of text features")
    missing = TEXT_FEATURES.keys() - value.keys() - OPTIONAL_TEXT_FEATURES
    if missing or not value.keys() <= TEXT_FEATURES.keys():
        unknown = sorted(value.keys() - TEXT_FEATURES.keys())
        problem = f"unknown feature {unknown[0]!r}" if unknown else f"missing {sorted(missing)[0]!r}"
        raise _Invalid("features", problem)
    for name, kind in TEXT_FEATURES.items():
        if name not in value:
            continue
        item = value[name]
        if kind == "bool":
            good = type(item) is bool
        elif kind == "hash":
            good = type(item) is str and (item == "" or _is_key_id(item))
        elif kind == "hash8":
            good = type(item) is str and (item == "" or (len(item) == 8 and _HEX.issuperset(item)))
        elif kind == "segments":
            good = type(item) is str and (item == "" or _SEGMENTS.fullmatch(item) is not None)
        else:
            good = type(item) is int and 0 <= item < _FEATURE_LIMITS[kind]
        if not good:
            raise _Invalid("features", f"{name!r} must be {_FEATURE_KINDS[kind]}")
    return value


def write_record(handle: IO[str], record: Mapping | TrafficRecord) -> None:
    """Appends one record as one compact JSON line (UTF-8 text kept as is, not escaped)."""
    if isinstance(record, TrafficRecord):
        record = record.to_dict()
    handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    handle.write("\n")


class TrafficWriter:
    """Writes a traffic file, gzip-compressed when the name ends in `.gz`.

    Gzip output carries no timestamp, so one seed always gives the same bytes.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.records_written = 0
        if self.path.endswith(".gz"):
            binary = gzip.GzipFile(self.path, mode="wb", compresslevel=6, mtime=0)
            self._handle: IO[str] = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
        else:
            self._handle = open(self.path, "w", encoding="utf-8", newline="\n")

    def write(self, record: Mapping | TrafficRecord) -> None:
        write_record(self._handle, record)
        self.records_written += 1

    def write_all(self, records) -> int:
        for record in records:
            self.write(record)
        return self.records_written

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TrafficWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
