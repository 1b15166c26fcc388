"""Rate limits against a real Redis: exact under concurrency and across workers and replicas,
sliding (no double limit across a window edge), tokens reserved then settled, leases that
expire, and refused requests that spend nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import threading
import time

import httpx
import redis

from tests.conftest import TEST_SECRET, base_config
from tests.support.processes import wait_until

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


def key_id(raw: str) -> str:
    return hmac.new(TEST_SECRET.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def tier_config(upstream, **tiers) -> dict:
    config = base_config(upstream.base_url)
    config["limits"] = {"tiers": {"default": {}, "throttled": {"concurrency": 1}, **tiers}, "lease_seconds": "2s"}
    config["limits"]["tiers"]["default"] = tiers.pop("default", {})
    return config


async def burst(url: str, key: str, count: int, body: dict = CHAT, headers: dict | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(f"{url}/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {key}", **(headers or {})})
                for _ in range(count)
            )
        )


def statuses(responses) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


def wait_for_workers(gateway, count: int) -> None:
    pids: set[int] = set()

    def seen_all() -> bool:
        with httpx.Client(timeout=2) as client:
            for _ in range(20):
                pids.add(client.get(f"{gateway.url}/healthz", headers={"connection": "close"}).json()["pid"])
        return len(pids) >= count

    wait_until(seen_all, timeout=20, what=f"{count} workers answering")


def test_200_concurrent_requests_against_50_per_minute_admit_exactly_50_with_two_workers(
    gateway_factory, upstream, redis_server
):
    config = tier_config(upstream, default={"requests": {"limit": 50, "window": "1m"}})
    gateway = gateway_factory(config, workers=2, redis_url=redis_server.url)
    wait_for_workers(gateway, 2)
    responses = asyncio.run(burst(gateway.base_url, "sk-exact-two-workers", 200))
    assert statuses(responses) == {200: 50, 429: 150}


def test_two_gateway_replicas_share_one_limit(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"requests": {"limit": 30, "window": "1m"}})
    first = gateway_factory(config, redis_url=redis_server.url)
    second = gateway_factory(config, redis_url=redis_server.url)

    async def both():
        a, b = await asyncio.gather(
            burst(first.base_url, "sk-replicas", 40), burst(second.base_url, "sk-replicas", 40)
        )
        return a + b

    assert statuses(asyncio.run(both())) == {200: 30, 429: 50}


def test_rejection_is_openai_429_with_retry_after_and_ratelimit_headers(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"requests": {"limit": 2, "window": "1m"}, "tokens": {"limit": 100000, "window": "1m"}})
    gateway = gateway_factory(config, redis_url=redis_server.url)
    responses = [
        httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": "sk-429"}, timeout=10)
        for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 429]
    first, refused = responses[0], responses[2]
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 100000
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_window_slides_so_no_double_limit_across_an_edge(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"requests": {"limit": 5, "window": "3s"}})
    gateway = gateway_factory(config, redis_url=redis_server.url)
    key = "sk-sliding"
    first = asyncio.run(burst(gateway.base_url, key, 5))
    started = time.monotonic()
    assert statuses(first) == {200: 5}
    time.sleep(1.5)  # a fixed 1s or 2s window would have rolled over by now
    assert statuses(asyncio.run(burst(gateway.base_url, key, 5))) == {429: 5}
    time.sleep(max(0.0, 3.3 - (time.monotonic() - started)))
    assert statuses(asyncio.run(burst(gateway.base_url, key, 5))) == {200: 5}


def test_parallel_requests_cannot_slip_past_the_token_limit(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"tokens": {"limit": 1000, "window": "1m"}})
    gateway = gateway_factory(config, redis_url=redis_server.url)
    body = {**CHAT, "max_tokens": 300}
    slow = {"x-mock-latency-ms": "500"}  # all ten are in flight together
    responses = asyncio.run(burst(gateway.base_url, "sk-token-race", 10, body=body, headers=slow))
    # Each reserves its prompt estimate plus 300, so only three fit in 1000 at once.
    assert statuses(responses) == {200: 3, 429: 7}
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 429} == {"tokens"}


def test_reservation_settles_to_the_upstreams_usage(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"tokens": {"limit": 5000, "window": "1m"}})
    gateway = gateway_factory(config, redis_url=redis_server.url)
    raw = "sk-settle"
    response = httpx.post(f"{gateway.base_url}/chat/completions", json={**CHAT, "max_tokens": 3000},
                          headers={"x-api-key": raw}, timeout=10)
    assert response.status_code == 200
    used = response.json()["usage"]["total_tokens"]
    assert int(response.headers["x-ratelimit-remaining-tokens"]) < 2000  # the reservation
    client = redis.Redis.from_url(redis_server.url)
    name = f"dg:{{{key_id(raw)}}}:tokamt"
    wait_until(lambda: int(client.hget(name, "__sum") or 0) == used, timeout=5, what="settled to usage")


def test_a_stream_cut_short_is_charged_for_what_was_sent(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"tokens": {"limit": 100000, "window": "1m"}})
    gateway = gateway_factory(config, redis_url=redis_server.url)
    raw = "sk-cut-stream"
    body = {**CHAT, "max_tokens": 2000, "stream": True}
    headers = {"Authorization": f"Bearer {raw}", "x-mock-tokens-per-second": "20", "x-mock-completion-tokens": "2000"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=headers) as response:
            chunks = 0
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunks += 1
                if chunks >= 5:
                    break
    store = redis.Redis.from_url(redis_server.url)
    name = f"dg:{{{key_id(raw)}}}:tokamt"
    reserved = 2000

    def charged() -> int:
        value = int(store.hget(name, "__sum") or 0)
        return value if value < reserved else 0

    charged_tokens = wait_until(charged, timeout=10, what="stream settled")
    assert 5 <= charged_tokens < 200


def test_a_refused_request_spends_no_other_rules_quota(gateway_factory, upstream, redis_server):
    config = tier_config(
        upstream, default={"requests": {"limit": 100, "window": "1m"}, "tokens": {"limit": 1000, "window": "1m"}}
    )
    gateway = gateway_factory(config, redis_url=redis_server.url)
    raw = "sk-spends-nothing"
    too_big = httpx.post(f"{gateway.base_url}/chat/completions", json={**CHAT, "max_tokens": 5000},
                         headers={"x-api-key": raw}, timeout=10)
    assert too_big.status_code == 429 and too_big.json()["error"]["type"] == "tokens"
    store = redis.Redis.from_url(redis_server.url)
    assert store.zcard(f"dg:{{{key_id(raw)}}}:req") == 0
    ok = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": raw}, timeout=10)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-remaining-requests"] == "99"


def test_concurrency_slot_is_released_after_an_upstream_timeout(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"concurrency": 1})
    config["upstream"]["timeout"] = "1s"
    gateway = gateway_factory(config, redis_url=redis_server.url)
    slow = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT,
                      headers={"x-api-key": "sk-timeout-slot", "x-mock-latency-ms": "3000"}, timeout=10)
    assert slow.status_code == 504
    assert slow.json()["error"]["code"] == "upstream_timeout"
    after = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT,
                       headers={"x-api-key": "sk-timeout-slot"}, timeout=10)
    assert after.status_code == 200


def test_a_crashed_gateways_concurrency_slot_expires_as_a_lease(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"concurrency": 1})
    crashing = gateway_factory(config, redis_url=redis_server.url)
    survivor = gateway_factory(config, redis_url=redis_server.url)
    raw = "sk-crashed-lease"
    slow_request = lambda: httpx.post(  # noqa: E731
        f"{crashing.base_url}/chat/completions", json=CHAT,
        headers={"x-api-key": raw, "x-mock-latency-ms": "8000"}, timeout=10,
    )
    threading.Thread(target=_ignore_errors, args=(slow_request,), daemon=True).start()
    store = redis.Redis.from_url(redis_server.url)
    leases = f"dg:{{{key_id(raw)}}}:lease"
    wait_until(lambda: store.zcard(leases) == 1, timeout=5, what="lease taken")
    os.killpg(crashing.proc.pid, signal.SIGKILL)
    crashing.proc.wait(5)
    blocked = httpx.post(f"{survivor.base_url}/chat/completions", json=CHAT, headers={"x-api-key": raw}, timeout=10)
    assert blocked.status_code == 429 and blocked.json()["error"]["type"] == "concurrency"
    freed = wait_until(
        lambda: httpx.post(f"{survivor.base_url}/chat/completions", json=CHAT, headers={"x-api-key": raw},
                           timeout=10).status_code == 200,
        timeout=6, interval=0.25, what="lease expired",
    )
    assert freed


def _ignore_errors(call):
    try:
        call()
    except httpx.HTTPError:
        pass


def test_per_key_override_and_per_ip_limit(gateway_factory, upstream, redis_server):
    config = tier_config(upstream, default={"requests": {"limit": 3, "window": "1m"}})
    config["limits"]["keys"] = {key_id("sk-vip"): {"requests": {"limit": 6, "window": "1m"}}}
    config["limits"]["per_ip"] = {"limit": 8, "window": "1m"}
    gateway = gateway_factory(config, redis_url=redis_server.url)
    vip = [httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": "sk-vip"}, timeout=10)
           for _ in range(7)]
    assert [r.status_code for r in vip] == [200] * 6 + [429]
    # Spraying keys from one address: the IP limit (8) stops it though each key is fresh.
    sprayed = [
        httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": f"sk-spray-{i}"}, timeout=10)
        for i in range(4)
    ]
    assert [r.status_code for r in sprayed] == [200, 200, 429, 429]
    assert sprayed[-1].json()["error"]["type"] == "ip"


def test_unknown_keys_are_rejected_when_the_registry_says_so(gateway_factory, upstream, redis_server):
    config = tier_config(upstream)
    config["limits"]["unknown_keys"] = "reject"
    config["limits"]["keys"] = {key_id("sk-known"): {"tier": "default"}}
    gateway = gateway_factory(config, redis_url=redis_server.url)
    known = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": "sk-known"}, timeout=10)
    unknown = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": "sk-stranger"}, timeout=10)
    assert known.status_code == 200
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"
