"""The flags the scorer keeps for review: one JSON record per key, and an index of flagged
keys by when each was first flagged (newest first in the admin API).

A record is rewritten on every change of the key's action, so it always shows the current
action with the first flag's time and request count; a key whose ladder falls back to
`none` keeps its record with status `cleared`. The index is bounded by `flags_kept`.
"""

from __future__ import annotations

import json
import time

from detectors.ladder import Change

from .store import FLAG_INDEX, flag_key

FLAG_TTL_SECONDS = 90 * 86400


def flag_record(change: Change, now: float | None = None) -> dict:
    return {
        **change.flag(),
        "updated_at": time.time() if now is None else now,
        "status": "cleared" if change.action == "none" else "open",
    }


async def write_flag(client, change: Change, flags_kept: int) -> dict:
    """Store the key's flag and index it; returns the record written."""
    record = flag_record(change)
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(flag_key(change.key_id), json.dumps(record, separators=(",", ":")), ex=FLAG_TTL_SECONDS)
        pipe.zadd(FLAG_INDEX, {change.key_id: change.first_flagged_at})
        pipe.zremrangebyrank(FLAG_INDEX, 0, -flags_kept - 1)
        await pipe.execute()
    return record


async def read_flag(client, key_id: str) -> dict | None:
    raw = await client.get(flag_key(key_id))
    return json.loads(raw) if raw else None


async def read_flags(client, limit: int) -> list[dict]:
    """The newest `limit` flags by first flag time; index entries whose record expired are skipped."""
    key_ids = [k.decode() if isinstance(k, bytes) else k for k in await client.zrevrange(FLAG_INDEX, 0, limit - 1)]
    if not key_ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key_id in key_ids:
            pipe.get(flag_key(key_id))
        raws = await pipe.execute()
    return [json.loads(raw) for raw in raws if raw]
