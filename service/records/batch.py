"""Many JSON records in one pipelined round trip: the read every index (flags, clusters,
labels, reviews) does after it has listed its members."""

from __future__ import annotations

import json


async def get_json_many(client, names: list[str]) -> list:
    """Each name's JSON value, or None where it has expired (same order as `names`)."""
    if not names:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        raws = await pipe.execute()
    return [json.loads(raw) if raw else None for raw in raws]


def text_of(value) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)
