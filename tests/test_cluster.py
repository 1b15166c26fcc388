"""The same limits against a real three-master Redis Cluster: each key's state in its own
slot (the `{key_id}` hash tag), keys spread over the masters, counting still exact."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import httpx
import redis

from tests.conftest import base_config
from tests.test_limits import CHAT, burst, key_id, statuses


def cluster_config(upstream) -> dict:
    # A cold start opens a connection per concurrent call on each master; give it room.
    config = base_config(upstream.base_url, redis_timeout="2s")
    config["limits"] = {
        "tiers": {"throttled": {"concurrency": 1}, "default": {"requests": {"limit": 20, "window": "1m"}, "tokens": {"limit": 100000, "window": "1m"},
                              "concurrency": 50}},
        "per_ip": {"limit": 1000, "window": "1m"},
    }
    return config


def test_exact_counting_for_keys_spread_over_three_masters(gateway_factory, upstream, redis_cluster):
    gateway = gateway_factory(cluster_config(upstream), redis_url=redis_cluster.url)
    raws = [f"sk-cluster-{i}" for i in range(6)]

    async def all_keys():
        return await asyncio.gather(*(burst(gateway.base_url, raw, 30) for raw in raws))

    for responses in asyncio.run(all_keys()):
        assert statuses(responses) == {200: 20, 429: 10}
    cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    owners = {cluster.get_node_from_key(f"dg:{{{key_id(raw)}}}:req").port for raw in raws}
    assert len(owners) >= 2, "the keys all landed on one master; the test proves nothing"
    for raw in raws:
        assert cluster.zcard(f"dg:{{{key_id(raw)}}}:req") == 20
    cluster.close()


def test_ip_limit_in_another_slot_still_spends_nothing_when_refused(gateway_factory, upstream, redis_cluster):
    config = cluster_config(upstream)
    config["key_secret"] = "another-secret-so-this-test-has-its-own-ip-log"
    config["limits"]["per_ip"] = {"limit": 3, "window": "1m"}
    gateway = gateway_factory(config, redis_url=redis_cluster.url)
    raws = [f"sk-cluster-ip-{i}" for i in range(5)]
    responses = [
        httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": raw}, timeout=10)
        for raw in raws
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    ids = [hmac.new(config["key_secret"].encode(), raw.encode(), hashlib.sha256).hexdigest()[:16] for raw in raws]
    assert [cluster.zcard(f"dg:{{{kid}}}:req") for kid in ids] == [1, 1, 1, 0, 0]
    cluster.close()
