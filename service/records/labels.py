"""Reviewer verdicts kept as labels: the ground truth the next model trains on.

One record per key (`dg:{<key_id>}:label`, the key's latest verdict) and one index of
labelled keys by when they were labelled. Labels outlive flags (400 days against 90): a
verdict is worth keeping for the next training run long after the traffic that earned it.
`confirmed` keys calibrate the forest's threshold, `dismissed` keys join its honest data
(service/review/label_training.py).
"""

from __future__ import annotations

import json
import sys
from typing import IO

from ..store import LABEL_INDEX, label_key
from .batch import get_json_many, text_of

LABEL_TTL_SECONDS = 400 * 86400
LABELS = ("confirmed", "dismissed")
READ_BATCH = 500


async def write_label(client, key_id: str, label: str, *, action: str, reviewer: str, reason: str,
                      ts: float) -> dict:
    """Store the key's verdict (replacing an earlier one) and index it."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    record = {"key_id": key_id, "label": label, "action": action, "reviewer": reviewer, "reason": reason, "ts": ts}
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(label_key(key_id), json.dumps(record, separators=(",", ":")), ex=LABEL_TTL_SECONDS)
        pipe.zadd(LABEL_INDEX, {key_id: ts})
        pipe.zremrangebyscore(LABEL_INDEX, "-inf", ts - LABEL_TTL_SECONDS)
        await pipe.execute()
    return record


async def read_label(client, key_id: str) -> dict | None:
    raw = await client.get(label_key(key_id))
    return json.loads(raw) if raw else None


async def read_labels(client, limit: int | None = None) -> list[dict]:
    """Every label (or the newest `limit`), newest first; read in batches so a long history
    never becomes one huge reply."""
    stop = -1 if limit is None else limit - 1
    key_ids = [text_of(key_id) for key_id in await client.zrevrange(LABEL_INDEX, 0, stop)]
    labels: list[dict] = []
    for start in range(0, len(key_ids), READ_BATCH):
        batch = await get_json_many(client, [label_key(key_id) for key_id in key_ids[start:start + READ_BATCH]])
        labels.extend(label for label in batch if label)
    return labels


def write_jsonl(labels: list[dict], out: IO[str]) -> int:
    for label in labels:
        out.write(json.dumps(label, sort_keys=True) + "\n")
    return len(labels)


def read_labels_file(path: str) -> dict[str, dict]:
    """A `labels export` file as key_id -> label record (the last line of a key wins)."""
    labels: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key_id, label = record["key_id"], record["label"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a label line (JSON with key_id and label)") from None
            if label not in LABELS:
                raise ValueError(f"{path}:{number}: label {label!r} is not one of {LABELS}")
            labels[key_id] = record
    return labels


def export_command(settings, *, out: str | None) -> int:
    """`distillguard labels export`: every label as JSON Lines to `out` (or stdout), oldest
    first like the audit export."""
    import asyncio

    labels = asyncio.run(_read_all(settings))
    labels.reverse()
    if out in (None, "-"):
        return write_jsonl(labels, sys.stdout)
    with open(out, "w", encoding="utf-8") as handle:
        return write_jsonl(labels, handle)


async def _read_all(settings) -> list[dict]:
    from ..store import connect

    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 5.0))
    try:
        return await read_labels(store.client)
    finally:
        await store.close()
