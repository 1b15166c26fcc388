"""The scorer: consumer groups over the event shards, each event counted exactly once in its
key's window (crashes and takeovers included), the same decisions from two scorers as from
one, and harvesters flagged, throttled and blocked through a real gateway."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import redis

from detectors.pipeline import KeyState
from service.events import shard_of
from service.store import EVENT_GROUP, SCORER_REGISTRY, event_stream, flag_key, key_state_key, shard_lease_key
from tests.conftest import base_config
from tests.support.processes import free_port, start_redis, wait_until
from tests.support.traffic import chat_request, event_fields, harvest_request, key_id, send

STREAMS = 4
ADMIN_TOKEN = "admin-token-for-tests"


def config(upstream_url: str = "http://127.0.0.1:9/v1", **detection) -> dict:
    return base_config(upstream_url, admin_token=ADMIN_TOKEN,
                       detection={"streams": STREAMS, "scorer_lease": "1s", **detection})


def write_events(client: redis.Redis, traffic: dict[str, tuple], per_key: int, start: float = 1.7e9) -> None:
    """`per_key` events for each raw key, interleaved as live traffic would be."""
    pipe = client.pipeline(transaction=False)
    for i in range(per_key):
        for n, (raw, (make, completion_tokens)) in enumerate(traffic.items()):
            fields = event_fields(raw, make(i), start + i * 3.0 + n * 0.01, completion_tokens)
            pipe.xadd(event_stream(shard_of(key_id(raw), STREAMS)), fields)
    pipe.execute()


def groups(client) -> list[dict]:
    found = []
    for shard in range(STREAMS):
        try:
            found += [g for g in client.xinfo_groups(event_stream(shard)) if g["name"] == EVENT_GROUP.encode()]
        except redis.ResponseError:
            pass
    return found


def drained(client) -> bool:
    """Every shard's group exists and has nothing undelivered or unacknowledged."""
    found = groups(client)
    return len(found) == STREAMS and all(g["lag"] == 0 and g["pending"] == 0 for g in found)


def requests_seen(client, raw: str) -> int:
    blob = client.hget(key_state_key(key_id(raw)), "state")
    return KeyState.from_bytes(blob).window.requests_seen if blob else 0


def admin(gateway, path: str) -> dict:
    response = httpx.get(f"{gateway.url}/admin/api{path}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def outcome(client, raws: list[str]) -> dict:
    """Flags and decisions, less the wall-clock times at which they were written."""
    result = {}
    for raw in raws:
        flag = client.get(flag_key(key_id(raw)))
        decision = {k.decode(): v.decode() for k, v in client.hgetall(f"dg:{{{key_id(raw)}}}:decision").items()}
        result[raw] = {
            "flag": {k: v for k, v in json.loads(flag).items() if k != "updated_at"} if flag else None,
            "decision": {k: v for k, v in decision.items() if k not in ("set_at", "expires_at")},
        }
    return result


def test_every_event_counts_once_when_a_scorer_is_killed_mid_run_and_another_takes_over(own_redis, scorer_factory):
    client = redis.Redis.from_url(own_redis.url)
    traffic = {f"sk-crash-{i}": (harvest_request if i % 2 else chat_request, 40) for i in range(8)}
    per_key = 500
    write_events(client, traffic, per_key)
    for shard in range(STREAMS):  # a scorer that read entries and died before acknowledging them
        client.xgroup_create(event_stream(shard), EVENT_GROUP, id="0", mkstream=True)
        client.xreadgroup(EVENT_GROUP, "ghost", {event_stream(shard): ">"}, count=40)
    first = scorer_factory(config(), own_redis.url, name="scorer-a")
    wait_until(lambda: sum(g["entries-read"] or 0 for g in groups(client)) >= 1500, interval=0.005,
               what="first scorer under way")
    first.kill()
    assert sum(g["lag"] + g["pending"] for g in groups(client)) > 0, "the first scorer finished before the kill"
    scorer_factory(config(), own_redis.url, name="scorer-b")
    wait_until(lambda: drained(client), timeout=30, what="all events consumed")
    assert {raw: requests_seen(client, raw) for raw in traffic} == {raw: per_key for raw in traffic}
    assert all(client.xpending(event_stream(s), EVENT_GROUP)["pending"] == 0 for s in range(STREAMS))
    client.close()


def test_two_scorers_reach_the_same_flags_and_decisions_as_one(own_redis, scorer_factory):
    traffic = {f"sk-harvest-{i}": (harvest_request, 1) for i in range(4)}
    traffic |= {f"sk-chat-{i}": (chat_request, 150) for i in range(4)}
    cfg = config(ladder={"block_after": 6})
    other = start_redis()
    try:
        alone, shared = redis.Redis.from_url(own_redis.url), redis.Redis.from_url(other.url)
        scorer_factory(cfg, own_redis.url, name="solo")
        write_events(alone, traffic, 120)
        pair = [scorer_factory(cfg, other.url, name=name) for name in ("pair-a", "pair-b")]
        holders = lambda: {shared.get(shard_lease_key(s)) for s in range(STREAMS)}  # noqa: E731
        wait_until(lambda: holders() == {b"pair-a", b"pair-b"}, what="the pair splitting the shards")
        write_events(shared, traffic, 120)
        for client in (alone, shared):
            wait_until(lambda: drained(client), timeout=30, what="all events consumed")
        assert shared.zcard(SCORER_REGISTRY) == 2 and all(p.proc.poll() is None for p in pair)
        one, two = outcome(alone, list(traffic)), outcome(shared, list(traffic))
        assert one == two
        assert {raw for raw, o in one.items() if o["flag"]} == {raw for raw in traffic if "harvest" in raw}
        assert {o["decision"].get("action") for raw, o in one.items() if "harvest" in raw} == {"block"}
        assert all(requests_seen(shared, raw) == 120 for raw in traffic)
    finally:
        other.stop()


def test_a_logprob_harvester_is_flagged_and_throttled_but_an_ordinary_chat_user_is_not(
    gateway_factory, scorer_factory, upstream, own_redis
):
    cfg = config(upstream.base_url)
    gateway = gateway_factory(cfg, redis_url=own_redis.url)
    metrics_port = free_port()
    scorer_factory(cfg, own_redis.url, name="scorer", metrics_port=metrics_port)
    statuses = asyncio.run(send(gateway.base_url, "sk-harvester", [harvest_request(i) for i in range(60)]))
    assert set(statuses) <= {200, 429}  # a 429 once the ladder throttles it mid-run
    asyncio.run(send(gateway.base_url, "sk-chatter", [chat_request(i) for i in range(60)]))
    chatter = key_id("sk-chatter")
    for key in (key_id("sk-harvester"), chatter):  # refused requests are scored too
        wait_until(lambda: (admin(gateway, f"/keys/{key}")["window"] or {}).get("requests_seen") == 60,
                   what="every request scored")
    flags = admin(gateway, "/flags")["flags"]
    assert [flag["key_id"] for flag in flags] == [key_id("sk-harvester")]
    (flag,) = flags
    assert flag["detector"] == "rules" and flag["action"] in ("flag", "throttle")
    assert [reason["name"] for reason in flag["reasons"]] == ["synthetic_task_generation"]
    assert 30 <= flag["requests_before_flag"] <= 60 and flag["first_flagged_at"] <= time.time()
    harvester = admin(gateway, f"/keys/{key_id('sk-harvester')}")
    assert harvester["decision"]["action"] == "throttle" and harvester["decision"]["set_by"] == "scorer:rules"
    assert harvester["window"]["features"]["logprobs_share"] == 1.0
    assert len(harvester["recent_events"]) == min(50, harvester["window"]["requests_seen"])
    assert harvester["last_verdicts"][0]["flagged"]
    throttled = httpx.post(f"{gateway.base_url}/chat/completions", json=harvest_request(0),
                           headers={"x-api-key": "sk-harvester"}, timeout=10)
    assert throttled.headers["x-ratelimit-limit-requests"] == "2"
    chat = admin(gateway, f"/keys/{chatter}")
    assert chat["flag"] is None and chat["decision"]["action"] == "allow"
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    counted = re.search(r'distillguard_events_consumed_total\{outcome="counted"\} ([0-9.]+)', scraped)
    assert counted and float(counted.group(1)) in (120.0, 121.0)  # 121 once the probe above is scored too
    assert 'distillguard_actions_total{action="throttle",detector="rules"} 1.0' in scraped


def test_a_block_from_the_ladder_is_enforced_by_the_gateway(gateway_factory, scorer_factory, upstream, own_redis):
    cfg = config(upstream.base_url, ladder={"throttle_after": 0, "block_after": 2, "action_ttl": "10m"})
    gateway = gateway_factory(cfg, redis_url=own_redis.url)
    scorer_factory(cfg, own_redis.url, name="scorer")
    asyncio.run(send(gateway.base_url, "sk-blocked", [harvest_request(i) for i in range(40)]))

    def refused() -> httpx.Response | None:
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=harvest_request(99),
                              headers={"x-api-key": "sk-blocked"}, timeout=10)
        return response if response.status_code == 403 else None

    response = wait_until(refused, interval=0.2, what="the key blocked")
    assert response.json()["error"]["code"] == "suspected_distillation"
    decision = admin(gateway, f"/keys/{key_id('sk-blocked')}")["decision"]
    assert decision["action"] == "block" and decision["note"] == "synthetic_task_generation"
    assert 500 < decision["expires_at"] - time.time() <= 600


def test_a_decision_set_by_a_person_is_left_alone(gateway_factory, scorer_factory, upstream, own_redis):
    cfg = config(upstream.base_url, ladder={"throttle_after": 1})
    gateway = gateway_factory(cfg, redis_url=own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    client.hset(f"dg:{{{key_id('sk-reviewed')}}}:decision", mapping={"action": "throttle", "tier": "default",
                                                                     "set_by": "cli:alice"})
    scorer_factory(cfg, own_redis.url, name="scorer")
    asyncio.run(send(gateway.base_url, "sk-reviewed", [harvest_request(i) for i in range(40)]))
    reviewed = f"/keys/{key_id('sk-reviewed')}"
    wait_until(lambda: (admin(gateway, reviewed)["window"] or {}).get("requests_seen") == 40, what="all counted")
    shown = admin(gateway, reviewed)
    assert shown["flag"]["action"] == "throttle"
    assert shown["decision"]["set_by"] == "cli:alice" and shown["decision"]["tier"] == "default"


def test_the_scorer_works_on_a_redis_cluster(gateway_factory, scorer_factory, upstream, redis_cluster):
    cfg = config(upstream.base_url)
    cfg["key_secret"] = "cluster-detection-secret"
    cfg["redis_timeout"] = "2s"
    gateway = gateway_factory(cfg, redis_url=redis_cluster.url)
    scorer_factory(cfg, redis_cluster.url, name="cluster-scorer")
    raws = [f"sk-cluster-detect-{i}" for i in range(6)]

    async def traffic():
        await asyncio.gather(*(send(gateway.base_url, raw, [harvest_request(i) for i in range(40)]) for raw in raws))

    asyncio.run(traffic())
    ids = {key_id(raw, cfg["key_secret"]) for raw in raws}
    cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    assert len({cluster.get_node_from_key(event_stream(s)).port for s in range(STREAMS)}) >= 2
    wait_until(lambda: {f["key_id"] for f in admin(gateway, "/flags?limit=1000")["flags"]} >= ids,
               timeout=30, what="every harvester flagged")
    for key in ids:
        wait_until(lambda: admin(gateway, f"/keys/{key}")["window"]["requests_seen"] == 40, what="all counted")
    cluster.close()


def test_the_embedded_gateway_flags_a_harvester_end_to_end_without_redis(gateway_factory, upstream):
    gateway = gateway_factory(config(upstream.base_url))
    asyncio.run(send(gateway.base_url, "sk-embedded-harvester", [harvest_request(i) for i in range(40)]))
    asyncio.run(send(gateway.base_url, "sk-embedded-chatter", [chat_request(i) for i in range(40)]))
    flags = wait_until(lambda: admin(gateway, "/flags")["flags"], what="a flag")
    assert [(flag["key_id"], flag["reasons"][0]["name"]) for flag in flags] == [
        (key_id("sk-embedded-harvester"), "synthetic_task_generation")
    ]
    chatter = f"/keys/{key_id('sk-embedded-chatter')}"
    wait_until(lambda: (admin(gateway, chatter)["window"] or {}).get("requests_seen") == 40, what="chat scored")
    assert admin(gateway, chatter)["flag"] is None


def test_an_unreadable_entry_is_dropped_rather_than_retried_forever(own_redis, scorer_factory):
    client = redis.Redis.from_url(own_redis.url)
    raw = "sk-after-garbage"
    stream = event_stream(shard_of(key_id(raw), STREAMS))
    client.xadd(stream, {"key_id": key_id(raw), "ts": "yesterday", "status": "???"})
    write_events(client, {raw: (chat_request, 50)}, 12)
    scorer_factory(config(), own_redis.url, name="scorer")
    wait_until(lambda: drained(client), timeout=20, what="all entries acknowledged")
    assert requests_seen(client, raw) == 12
    client.close()
