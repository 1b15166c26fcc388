"""The gateway appends each finished request's features to a Redis Stream shard chosen by
its key_id, off the client's path: hashes only, never the raw key or the prompt text."""

from __future__ import annotations

import asyncio
import time

import httpx
import redis

from detectors.features import from_fields, to_fields
from service.events import shard_of
from service.store import event_stream
from tests.conftest import base_config
from tests.support.processes import wait_until
from tests.support.traffic import harvest_request, key_id, send

STREAMS = 4


def detection_config(upstream, **detection) -> dict:
    return base_config(upstream.base_url, detection={"streams": STREAMS, **detection})


def stream_entries(url: str) -> dict[int, list[dict]]:
    client = redis.Redis.from_url(url)
    try:
        return {
            shard: [fields for _, fields in client.xrange(event_stream(shard))]
            for shard in range(STREAMS)
        }
    finally:
        client.close()


def entries_of(entries: dict[int, list[dict]], raw_key: str) -> dict[int, list[dict]]:
    wanted = key_id(raw_key).encode()
    found = {shard: [f for f in fields if f[b"key_id"] == wanted] for shard, fields in entries.items()}
    return {shard: fields for shard, fields in found.items() if fields}


def test_finished_requests_reach_the_stream_as_features_without_the_raw_key_or_prompt(
    gateway_factory, upstream, own_redis
):
    gateway = gateway_factory(detection_config(upstream), redis_url=own_redis.url)
    raw_key = "sk-live-SECRETKEY-0123456789"
    prompt = "Tell me about the zebra-striped lighthouse of Quillport"
    body = {"model": "sim", "messages": [{"role": "user", "content": prompt}], "logprobs": True, "top_logprobs": 5}
    before = time.time()
    for _ in range(3):
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=body,
                              headers={"authorization": f"Bearer {raw_key}", "user-agent": "probe/2.0"}, timeout=10)
        assert response.status_code == 200
    wait_until(lambda: sum(map(len, entries_of(stream_entries(own_redis.url), raw_key).values())) == 3,
               what="three events")
    entries = stream_entries(own_redis.url)
    stored = b" ".join(value for fields in entries.values() for f in fields for value in [*f.keys(), *f.values()])
    for secret in (raw_key, "SECRETKEY", "zebra", "lighthouse", "Quillport", "probe/2.0"):
        assert secret.encode().lower() not in stored.lower()
    (fields,) = {shard: f[0] for shard, f in entries_of(entries, raw_key).items()}.values()
    features = from_fields(fields)
    assert set(fields) == {name.encode() for name in to_fields(features)}
    assert features.key_id == key_id(raw_key)
    assert features.logprobs and features.top_logprobs == 5 and features.status == 200
    assert features.completion_tokens > 0 and features.prompt_chars == len(prompt)
    assert before - 1 <= features.ts <= time.time()
    assert "distillguard_events_appended_total 3.0" in gateway.metrics()


def test_each_key_keeps_to_the_one_shard_its_key_id_picks(gateway_factory, upstream, own_redis):
    gateway = gateway_factory(detection_config(upstream), redis_url=own_redis.url)
    raw_keys = [f"sk-shard-{i}" for i in range(12)]

    async def traffic():
        await asyncio.gather(*(send(gateway.base_url, raw, [harvest_request(i) for i in range(5)]) for raw in raw_keys))

    asyncio.run(traffic())
    wait_until(lambda: sum(len(f) for f in stream_entries(own_redis.url).values()) == 60, what="60 events")
    entries = stream_entries(own_redis.url)
    for raw in raw_keys:
        shards = entries_of(entries, raw)
        assert list(shards) == [shard_of(key_id(raw), STREAMS)]
        assert len(shards[shard_of(key_id(raw), STREAMS)]) == 5
    assert len({shard_of(key_id(raw), STREAMS) for raw in raw_keys}) > 1


def test_a_redis_outage_holds_events_with_a_metric_and_never_fails_a_request(gateway_factory, upstream, own_redis):
    gateway = gateway_factory(detection_config(upstream), redis_url=own_redis.url)
    own_redis.stop()
    for i in range(3):
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=harvest_request(i),
                              headers={"x-api-key": "sk-outage"}, timeout=10)
        assert response.status_code == 200
    wait_until(lambda: "distillguard_events_spool_entries 3.0" in gateway.metrics(), what="three events held")
    wait_until(lambda: "appending detection events failed" in gateway.log(), what="the outage logged")
    own_redis.start()
    wait_until(lambda: sum(map(len, entries_of(stream_entries(own_redis.url), "sk-outage").values())) == 3,
               what="three events appended once Redis is back")
    assert "\ndistillguard_events_dropped_total{" not in gateway.metrics()


def test_refused_requests_are_events_too(gateway_factory, upstream, own_redis):
    config = detection_config(upstream)
    config["limits"] = {"tiers": {"default": {"requests": {"limit": 1, "window": "1m"}}, "throttled": {}}}
    gateway = gateway_factory(config, redis_url=own_redis.url)
    raw_key = "sk-pushing-against-limits"
    statuses = [
        httpx.post(f"{gateway.base_url}/chat/completions", json=harvest_request(i),
                   headers={"authorization": f"Bearer {raw_key}"}, timeout=10).status_code
        for i in range(3)
    ]
    assert statuses == [200, 429, 429]
    wait_until(lambda: sum(map(len, entries_of(stream_entries(own_redis.url), raw_key).values())) == 3,
               what="three events, refused ones included")
    (fields,) = entries_of(stream_entries(own_redis.url), raw_key).values()
    assert [from_fields(f).status for f in fields] == [200, 429, 429]
