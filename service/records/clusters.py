"""The linkage clusters of the last pass, as the scorer's pass (service/scoring/linkage_pass.py)
wrote them: the reads behind the admin API, the console and a cluster action."""

from __future__ import annotations

import json

from ..store import CLUSTER_INDEX, PASS_LOG, cluster_key, key_cluster_key
from .batch import get_json_many, text_of


def compact_json(value) -> str:
    """Compact JSON; numpy scalars (in cluster properties) as plain numbers."""
    return json.dumps(value, separators=(",", ":"), default=lambda item: item.item())


async def read_clusters(client, limit: int, flagged_only: bool = False) -> list[dict]:
    """The last pass's clusters, flagged first, then the largest."""
    cluster_ids = [text_of(c) for c in await client.zrevrange(CLUSTER_INDEX, 0, -1)]
    clusters = [cluster for cluster in await get_json_many(client, [cluster_key(c) for c in cluster_ids]) if cluster]
    if flagged_only:
        clusters = [cluster for cluster in clusters if cluster["flagged"]]
    clusters.sort(key=lambda cluster: (not cluster["flagged"], -cluster["size"], -cluster["score"]))
    return clusters[:limit]


async def read_cluster(client, cluster_id: str) -> dict | None:
    raw = await client.get(cluster_key(cluster_id))
    return json.loads(raw) if raw else None


async def key_cluster(client, key_id: str) -> str | None:
    raw = await client.get(key_cluster_key(key_id))
    return text_of(raw) if raw else None


async def read_passes(client, limit: int) -> list[dict]:
    """The most recent passes' records, newest first."""
    return [json.loads(raw) for raw in await client.lrange(PASS_LOG, 0, limit - 1)]
