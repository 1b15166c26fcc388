"""The flags the scorer keeps for review: one JSON record per key, and an index of flagged
keys by when each was first flagged (newest first in the admin API).

A record is rewritten on every change of the key's action or activity, so it always shows
the current action with the first flag's time and request count. The ladder keeps a
flagged key at `flag` until a reviewer acts (`activity` says "harvest seen, now quiet" once
its evidence fades); only with `ladder.sticky: false` can it fall back to `none`, and the
record then stays with status `cleared`. The index is bounded by `flags_kept`.
"""

from __future__ import annotations

import json
import re
import time

from detectors.ladder import Change

from ..store import FLAG_INDEX, flag_key
from .batch import get_json_many, text_of

FLAG_TTL_SECONDS = 90 * 86400
# Older linkage verdicts name their cluster only in their reasons' text.
CLUSTER_ID = re.compile(r"\blk-[0-9a-f]{10}\b")


def flag_record(change: Change, now: float | None = None) -> dict:
    return {
        **change.flag(),
        "cluster_id": cluster_of(change),
        "updated_at": time.time() if now is None else now,
        "status": "cleared" if change.action == "none" else "open",
    }


def cluster_of(change: Change) -> str | None:
    """The cluster a linkage flag was raised for; None for the per-key detectors. Verdicts
    published before reasons carried `cluster_id` name it only in their text."""
    if change.detector != "linkage":
        return None
    for reason in change.reasons:
        if reason.get("cluster_id"):
            return reason["cluster_id"]
    for reason in change.reasons:
        found = CLUSTER_ID.search(reason.get("detail", ""))
        if found:
            return found.group()
    return None


async def write_flag(client, change: Change, flags_kept: int) -> bool:
    """Store the key's flag and index it; True when the key had no flag record yet (its first
    flag: a key's request count cannot tell, since a linkage pass may step a silent key)."""
    record = flag_record(change)
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(flag_key(change.key_id), json.dumps(record, separators=(",", ":")), ex=FLAG_TTL_SECONDS, get=True)
        pipe.zadd(FLAG_INDEX, {change.key_id: change.first_flagged_at})
        pipe.zremrangebyrank(FLAG_INDEX, 0, -flags_kept - 1)
        previous, _, _ = await pipe.execute()
    return previous is None


async def read_flag(client, key_id: str) -> dict | None:
    raw = await client.get(flag_key(key_id))
    return json.loads(raw) if raw else None


async def read_flags(client, limit: int) -> list[dict]:
    """The newest `limit` flags by first flag time; index entries whose record expired are skipped."""
    key_ids = [text_of(key_id) for key_id in await client.zrevrange(FLAG_INDEX, 0, limit - 1)]
    return [flag for flag in await get_json_many(client, [flag_key(key_id) for key_id in key_ids]) if flag]
