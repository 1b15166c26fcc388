"""Linkage in the live scorer: a network of keys that each look clean is flagged through the
real gateway and scorer, one scorer at a time runs the clustering pass, a pass's verdicts
reach each member's ladder exactly once, and on a Redis Cluster every key's evidence sits
in its own slot, with expiry.

A test's traffic all falls into one half-hour, which gives no timing evidence (the detector
wants activity over several); the network is linked by its template family together with its
script's client and addresses, which the honest keys partly share (same SDK, one office).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from itertools import pairwise

import httpx
import openai
import pytest
import redis

from detectors.base import Reason, Verdict
from detectors.linkage import LinkageResult
from detectors.pipeline import KeyState
from service.config import ConfigError, Settings, load_settings
from service.events import shard_of
from service.scoring.linkage_pass import LinkagePass
from service.store import (
    PASS_LEASE,
    PASS_LOG,
    active_key,
    connect,
    event_stream,
    flag_key,
    key_state_key,
    link_shard,
    signature_key,
)
from tests.support.processes import free_port, wait_until
from tests.support.traffic import SUBJECTS, chat_request, event_fields, key_id
from tests.test_scorer import (
    STREAMS,
    admin,
    config,
    drained,
    requests_seen,
    write_events,
)
from traffic.prompts import human_prompts

NETWORK, HONEST, PER_KEY = 12, 16, 10
ANGLES = ("its history", "how it works", "the main open questions", "common mistakes", "a worked example",
          "its economic impact", "how experts disagree", "teaching it to beginners")


def network_request(k: int, i: int) -> dict:
    """One template family: a fixed study-guide wrapper around ever-new topics, asking for
    reasoning and a long sampled answer."""
    text = ("You are generating reference answers for a study guide. Read the task below, think step by step, "
            "then write a detailed, well-structured answer with headings, examples and a short summary.\n\n"
            f"Task: explain {SUBJECTS[(7 * k + i) % len(SUBJECTS)]}, focusing on {ANGLES[(k + 3 * i) % len(ANGLES)]}.")
    return {"model": "sim", "messages": [{"role": "user", "content": text}], "temperature": 1.0, "max_tokens": 2048}


def honest_request(n: int, i: int) -> dict:
    """A person's chat: questions people actually wrote, their app's own settings."""
    people = human_prompts()
    asked = [people[(37 * (n * PER_KEY + i) + turn) % len(people)] for turn in range(1 + 2 * (i % 4 == 3))]
    messages = []
    for text in asked[:-1]:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "Here is one way to see it."}]
    messages.append({"role": "user", "content": asked[-1]})
    return {"model": "sim", "messages": messages, "temperature": 0.5 + 0.05 * (n % 6), "max_tokens": 300 + 50 * (n % 5)}


async def send(base_url: str, raw: str, bodies: list[dict], address: str, completion_tokens: int) -> None:
    """One key's requests in order, through the official SDK, from `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport) as http:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=raw, http_client=http, max_retries=0)
        for body in bodies:
            await client.chat.completions.create(**body, extra_headers={"x-mock-completion-tokens": str(completion_tokens)})


async def send_traffic(base_url: str, network: list[str], honest: list[str]) -> None:
    """The network's script from a small pool of proxy addresses; the people from one office
    address, with the same SDK as the script: what honest keys share must not link them."""
    await asyncio.gather(
        *(send(base_url, raw, [network_request(k, i) for i in range(PER_KEY)], f"127.0.{200 + k % 3}.1", 600)
          for k, raw in enumerate(network)),
        *(send(base_url, raw, [honest_request(n, i) for i in range(PER_KEY)], "127.0.50.1", 120)
          for n, raw in enumerate(honest)),
    )


def passes(client) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(PASS_LOG, 0, -1)]


def test_a_network_of_keys_each_under_every_rule_is_flagged_by_linkage_and_honest_keys_are_not(
    gateway_factory, scorer_factory, upstream, own_redis
):
    cfg = config(upstream.base_url, linkage={"every_s": "1s"})
    gateway = gateway_factory(cfg, redis_url=own_redis.url)
    metrics_port = free_port()
    scorer_factory(cfg, own_redis.url, name="scorer", metrics_port=metrics_port)
    network = [f"sk-hydra-{k}" for k in range(NETWORK)]
    honest = [f"sk-person-{n}" for n in range(HONEST)]

    asyncio.run(send_traffic(gateway.base_url, network, honest))
    members = {key_id(raw) for raw in network}
    client = redis.Redis.from_url(own_redis.url)
    wait_until(lambda: drained(client), timeout=30, what="every request scored")
    counted_at = time.time()
    wait_until(lambda: any(p["started_at"] > counted_at and p["signatures"] == NETWORK + HONEST for p in passes(client)),
               timeout=20, what="a pass over every key")
    flags = wait_until(lambda: [f for f in admin(gateway, "/flags?limit=1000")["flags"] if f["key_id"] in members]
                       if len(admin(gateway, "/flags?limit=1000")["flags"]) >= NETWORK else None,
                       timeout=20, what="the network's keys flagged")

    assert {flag["key_id"] for flag in admin(gateway, "/flags?limit=1000")["flags"]} == members
    assert {flag["detector"] for flag in flags} == {"linkage"}
    assert all(requests_seen(client, raw) == PER_KEY for raw in network + honest)
    (cluster_id,) = {flag["cluster_id"] for flag in flags}
    assert all(flag["reasons"][0]["name"] == "linked_to_cluster" and cluster_id in flag["reasons"][0]["detail"]
               and flag["reasons"][0]["cluster_id"] == cluster_id for flag in flags)

    listed = admin(gateway, "/clusters")
    flagged = [cluster for cluster in listed["clusters"] if cluster["flagged"]]
    assert [cluster["cluster_id"] for cluster in flagged] == [cluster_id]
    cluster = admin(gateway, f"/clusters/{cluster_id}")
    assert set(cluster["members"]) == members and cluster["size"] == NETWORK
    assert cluster["requests_24h"] == NETWORK * PER_KEY
    assert cluster["evidence"]["template"] > 0 and cluster["reasons"][0]["name"] == "linked_keys"
    assert cluster["properties"]["harvest_shaped_share"] == 1.0
    assert listed["passes"][0]["keys"] == NETWORK + HONEST

    member = admin(gateway, f"/keys/{key_id(network[0])}")
    assert member["cluster_id"] == cluster_id and member["flag"]["cluster_id"] == cluster_id
    assert member["window"]["requests_seen"] == PER_KEY  # per key, nothing to see: only 10 requests
    person = admin(gateway, f"/keys/{key_id(honest[0])}")
    assert person["flag"] is None and person["cluster_id"] != cluster_id

    # The ladder goes on as for per-key detection: flagged in 3 passes in a row -> throttled.
    throttled = wait_until(lambda: admin(gateway, f"/keys/{key_id(network[0])}")["decision"]
                           if admin(gateway, f"/keys/{key_id(network[0])}")["decision"]["action"] == "throttle"
                           else None, timeout=20, what="the member throttled")
    assert throttled["set_by"] == "scorer:linkage" and throttled["tier"] == "throttled"
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert re.search(r"distillguard_linkage_passes_total [1-9]", scraped)
    assert "distillguard_linkage_clusters_flagged 1.0" in scraped
    assert f"distillguard_linkage_pass_keys {float(NETWORK + HONEST)}" in scraped
    assert 'distillguard_flags_total{detector="linkage"} 12.0' in scraped
    client.close()


def test_one_scorer_at_a_time_runs_the_pass_and_another_takes_over_when_it_dies(own_redis, scorer_factory):
    cfg = config(linkage={"every_s": "1s"})
    scorers = {name: scorer_factory(cfg, own_redis.url, name=name) for name in ("first", "second")}
    client = redis.Redis.from_url(own_redis.url)
    wait_until(lambda: len(passes(client)) >= 2, timeout=20, what="two passes")
    holder = client.get(PASS_LEASE).decode()
    scorers[holder].kill()
    survivor = ({"first", "second"} - {holder}).pop()
    wait_until(lambda: sum(p["scorer"] == survivor for p in passes(client)) >= 2, timeout=20,
               what="the survivor running passes")
    log = sorted(passes(client), key=lambda p: p["started_at"])
    slots = [p["slot"] for p in log]
    assert slots == sorted(set(slots)), "a slot's pass ran twice"
    assert all(later["started_at"] >= earlier["finished_at"] for earlier, later in pairwise(log)), \
        "two passes overlapped"
    assert {p["scorer"] for p in log} == {holder, survivor}
    assert log[-1]["scorer"] == survivor
    client.close()


def test_a_pass_verdict_reaches_its_key_once_however_often_it_is_published(own_redis, scorer_factory):
    client = redis.Redis.from_url(own_redis.url)
    raw, cluster_id = "sk-linked-once", "lk-0123456789"
    member = key_id(raw)
    reason = Reason("linked_to_cluster", "cluster_size", 6.0, None, f"member of cluster {cluster_id} (6 keys)")
    result = LinkageResult([], {member: Verdict("linkage", 0.9, True, (reason,))})
    settings = Settings(detection={"streams": STREAMS})

    async def publish(slots: list[int], name: str) -> list[int]:
        store = await connect(own_redis.url, timeout=2.0)
        try:
            return [await LinkagePass(store, settings, name).publish(result, time.time(), slot) for slot in slots]
        finally:
            await store.close()

    write_events(client, {raw: (chat_request, 50)}, 6)
    assert asyncio.run(publish([1000, 1000], "pass-a")) == [1, 0]
    assert asyncio.run(publish([1000, 2000], "pass-b")) == [0, 1]  # a second scorer's run of slot 1000 adds nothing
    write_events(client, {raw: (chat_request, 50)}, 6, start=1.7e9 + 100)
    scorer_factory(config(linkage={"enabled": False}), own_redis.url, name="scorer")  # throttle after 3 in a row
    wait_until(lambda: drained(client), timeout=20, what="every entry applied")
    state = KeyState.from_bytes(client.hget(key_state_key(member), "state"))
    assert state.window.requests_seen == 12  # no event lost beside the verdicts
    # Two verdicts (a third would have throttled it), applied in stream order: after the first
    # 6 events, before the key's own clean evaluation at its 10th request.
    assert (state.ladder.level, state.ladder.requests_before_flag, state.ladder.clean_streak) == (1, 6, 1)
    flag = json.loads(client.get(flag_key(member)))
    assert (flag["detector"], flag["action"], flag["cluster_id"]) == ("linkage", "flag", cluster_id)
    client.close()


def test_on_a_redis_cluster_each_keys_evidence_sits_in_its_own_slot_and_expires(scorer_factory, redis_cluster):
    network = [f"sk-cluster-hydra-{k}" for k in range(NETWORK)]
    honest = [f"sk-cluster-person-{n}" for n in range(HONEST)]
    cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    now = time.time()
    for i in range(PER_KEY):
        for k, raw in enumerate(network):
            fields = event_fields(raw, network_request(k, i), now - 60 + i + k * 0.01, completion_tokens=600)
            cluster.xadd(event_stream(shard_of(key_id(raw), STREAMS)), fields)
        for n, raw in enumerate(honest):
            fields = event_fields(raw, honest_request(n, i), now - 60 + i + n * 0.01, completion_tokens=120)
            cluster.xadd(event_stream(shard_of(key_id(raw), STREAMS)), fields)
    scorer_factory(config(linkage={"every_s": "1s"}), redis_cluster.url, name="cluster-linkage")
    members = [key_id(raw) for raw in network]
    wait_until(lambda: drained(cluster), timeout=30, what="every event counted")
    counted_at = time.time()
    wait_until(lambda: any(p["scorer"] == "cluster-linkage" and p["started_at"] > counted_at
                           and p["signatures"] >= NETWORK + HONEST for p in passes(cluster)),
               timeout=20, what="a pass over every key")
    wait_until(lambda: all(cluster.exists(flag_key(m)) for m in members), timeout=20, what="the network flagged")
    assert {json.loads(cluster.get(flag_key(m)))["detector"] for m in members} == {"linkage"}
    assert not any(cluster.exists(flag_key(key_id(raw))) for raw in honest)

    def slot_of(name: str) -> int:  # asked of the server, not computed here
        return cluster.execute_command("CLUSTER KEYSLOT", name)

    nodes = set()
    for member in members:
        assert slot_of(signature_key(member)) == slot_of(key_state_key(member))
        node = cluster.get_node_from_key(signature_key(member))
        with redis.Redis(host=node.host, port=node.port) as owner:  # stored on the master of that slot
            assert owner.exists(signature_key(member), key_state_key(member)) == 2
        nodes.add(node.port)
        assert 0 < cluster.ttl(signature_key(member)) <= 2 * 86400
        assert cluster.zscore(active_key(link_shard(member)), member) is not None
    assert len(nodes) >= 2, "every signature on one node"
    shards = {link_shard(m) for m in members}
    assert len({cluster.get_node_from_key(active_key(s)).port for s in shards}) >= 2
    assert all(0 < cluster.ttl(active_key(s)) <= 2 * 86400 for s in shards)
    cluster.close()


def test_linkage_settings_come_from_yaml_or_the_environment_and_bad_periods_are_refused(monkeypatch, tmp_path):
    for name in [name for name in os.environ if name.startswith("DISTILLGUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_DETECTION__LINKAGE__EVERY_S", "2m")
    linkage = load_settings(None).detection.linkage
    assert (linkage.enabled, linkage.every_s, linkage.window_s) == (True, 120.0, 86400.0)
    monkeypatch.delenv("DISTILLGUARD_DETECTION__LINKAGE__EVERY_S")
    path = tmp_path / "distillguard.yaml"
    path.write_text("detection:\n  linkage:\n    every_s: 2d\n")
    with pytest.raises(ConfigError, match=r"detection.linkage: every_s \(172800s\) must be shorter than window_s"):
        load_settings(path)
