"""The audit trail: who decided what about which key, when and why.

Every sign-in, reviewer action, reveal and automatic decision is one entry of one Redis
stream, so the trail is ordered by time and its entry ids are timestamps. It is trimmed by
age only (`XADD ... MINID`), never by count: a burst of automatic decisions can never push
a reviewer's verdict out before its retention ends. Each target (a key_id or a cluster id)
also keeps a short index of its entry ids in its own slot, so a key's history is read
without scanning the whole stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO

from .. import metrics
from ..store import AUDIT_STREAM, audit_target_key

log = logging.getLogger("distillguard.audit")

# Entry ids a target's index keeps; older history is still in the stream and the export.
TARGET_INDEX_KEPT = 1000
# Entries scanned at most when filtering by actor (the page stays bounded on a long trail).
SCAN_LIMIT = 20_000
EXPORT_BATCH = 1000


async def append_audit(client, *, actor: str, action: str, target: str | None = None, reason: str = "",
                       details: dict | None = None, retention_seconds: float | None = None) -> str:
    """Append one entry and return its stream id. With `retention_seconds`, entries older than
    that are trimmed exactly: the trail is low-volume, so exact trimming costs little and
    keeps the retention promise to the second (an approximate `~` trim keeps whole old nodes)."""
    now = time.time()
    fields = {
        "ts": repr(now), "actor": actor, "action": action, "target": target or "", "reason": reason or "",
        "details": json.dumps(details or {}, sort_keys=True, default=str),
    }
    options = {}
    if retention_seconds is not None:
        options["minid"] = str(int((now - retention_seconds) * 1000))
        options["approximate"] = False
    entry_id = _text(await client.xadd(AUDIT_STREAM, fields, **options))
    if target:
        index = audit_target_key(target)
        pipe = client.pipeline(transaction=False)
        pipe.lpush(index, entry_id)
        pipe.ltrim(index, 0, TARGET_INDEX_KEPT - 1)
        if retention_seconds is not None:
            pipe.expire(index, max(1, int(retention_seconds)))
        await pipe.execute()
    return entry_id


async def audit_quietly(client, source: str, **entry) -> str | None:
    """`append_audit` for callers whose own work must not fail with it (the scorer): a failure
    is a log line and `distillguard_audit_errors_total`, never an exception."""
    try:
        return await append_audit(client, **entry)
    except Exception as exc:  # noqa: BLE001 - any failure of the trail must leave the caller's work alone
        metrics.AUDIT_ERRORS.labels(source).inc()
        log.warning("audit entry %s on %s not written: %s", entry.get("action"), entry.get("target") or "-", exc)
        return None


async def read_audit(client, *, since: float | None = None, until: float | None = None, limit: int = 200,
                     target: str | None = None, actor: str | None = None, before: str | None = None) -> list[dict]:
    """Entries newest first, at most `limit`, between `since` and `until` (Unix seconds).
    `before` (an entry id) pages on past the last entry of a previous page."""
    high = f"({before}" if before else (_ms_id(until, last=True) if until is not None else "+")
    low = _ms_id(since) if since is not None else "-"
    if target:
        entries = await _read_target(client, target, low, high, limit)
        entries = [entry for entry in entries if actor is None or entry["actor"] == actor]
    else:
        entries = await _scan(client, low, high, limit, actor)
    return entries[:limit]


async def _scan(client, low: str, high: str, limit: int, actor: str | None) -> list[dict]:
    entries: list[dict] = []
    scanned = 0
    while len(entries) < limit and scanned < SCAN_LIMIT:
        batch = await client.xrevrange(AUDIT_STREAM, max=high, min=low, count=max(limit, 200))
        if not batch:
            break
        scanned += len(batch)
        for entry_id, fields in batch:
            entry = _entry(entry_id, fields)
            if actor is None or entry["actor"] == actor:
                entries.append(entry)
        high = f"({_text(batch[-1][0])}"
    return entries


async def _read_target(client, target: str, low: str, high: str, limit: int) -> list[dict]:
    """A target's entries through its index; ids the stream has trimmed are skipped."""
    ids = [_text(entry_id) for entry_id in await client.lrange(audit_target_key(target), 0, -1)]
    ids = [entry_id for entry_id in ids if _in_range(entry_id, low, high)]
    pipe = client.pipeline(transaction=False)
    for entry_id in ids[:limit]:
        pipe.xrange(AUDIT_STREAM, min=entry_id, max=entry_id, count=1)
    entries = [_entry(*found[0]) for found in await pipe.execute() if found] if ids else []
    return [entry for entry in entries if entry["target"] == target]


async def iter_audit(client, *, since: float | None = None, until: float | None = None,
                     batch: int = EXPORT_BATCH) -> AsyncIterator[dict]:
    """Every entry in the range, oldest first, read in batches (for export)."""
    low = _ms_id(since) if since is not None else "-"
    high = _ms_id(until, last=True) if until is not None else "+"
    while True:
        entries = await client.xrange(AUDIT_STREAM, min=low, max=high, count=batch)
        for entry_id, fields in entries:
            yield _entry(entry_id, fields)
        if len(entries) < batch:
            return
        low = f"({_text(entries[-1][0])}"


async def export_jsonl(client, out: IO[str], *, since: float | None = None, until: float | None = None) -> int:
    """Writes the range as JSON Lines, oldest first; returns how many entries."""
    written = 0
    async for entry in iter_audit(client, since=since, until=until):
        out.write(json.dumps(entry, sort_keys=True) + "\n")
        written += 1
    return written


async def export_command(settings, out: IO[str], *, since: str | None, until: str | None) -> int:
    """`distillguard audit export`: the trail as JSON Lines to `out`."""
    from ..store import connect

    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 5.0))
    try:
        return await export_jsonl(store.client, out, since=start, until=end)
    finally:
        await store.close()


def parse_time(value: str, *, now: float | None = None) -> float:
    """Unix seconds from an ISO 8601 time (`2026-11-01T00:00:00Z`) or a duration ago (`7d`)."""
    from ..config import parse_duration

    try:
        return (now if now is not None else time.time()) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use e.g. 2026-11-01T00:00:00Z or 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _entry(entry_id, fields: dict) -> dict:
    fields = {_text(name): _text(value) for name, value in fields.items()}
    try:
        details = json.loads(fields.get("details") or "{}")
    except ValueError:
        details = {}
    return {
        "id": _text(entry_id), "ts": float(fields.get("ts") or 0), "actor": fields.get("actor", ""),
        "action": fields.get("action", ""), "target": fields.get("target") or None,
        "reason": fields.get("reason", ""), "details": details,
    }


def _ms_id(seconds: float, *, last: bool = False) -> str:
    ms = int(seconds * 1000)
    return f"{ms}-{(1 << 64) - 1}" if last else f"{ms}-0"


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _in_range(entry_id: str, low: str, high: str) -> bool:
    value = _id_tuple(entry_id)
    if low != "-" and value < _id_tuple(low):
        return False
    if high == "+":
        return True
    if high.startswith("("):
        return value < _id_tuple(high[1:])
    return value <= _id_tuple(high)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
