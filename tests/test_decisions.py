"""Per-key decisions set from the CLI and enforced by the gateway in the admission round trip."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import base_config
from tests.support.processes import _cli, wait_until
from tests.test_limits import key_id

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def keys_cli(redis_url: str, *args: str) -> dict:
    result = subprocess.run(_cli("keys", "--redis-url", redis_url, *args), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def post(gateway, raw: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": raw}, timeout=10)


def test_a_blocked_key_gets_403_with_its_reason_and_never_reaches_the_upstream(gateway_factory, upstream, redis_server):
    gateway = gateway_factory(base_config(upstream.base_url), redis_url=redis_server.url)
    raw = "sk-to-block"
    assert post(gateway, raw).status_code == 200
    shown = keys_cli(redis_server.url, "block", key_id(raw), "--reason", "distillation_harvest", "--ttl", "1h")
    assert shown["action"] == "block" and shown["expires_at"] > time.time() + 3500
    before = upstream.stats()["requests"]
    refused = post(gateway, raw)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "distillation_harvest"
    assert upstream.stats()["requests"] == before
    assert keys_cli(redis_server.url, "show", key_id(raw))["action"] == "block"
    keys_cli(redis_server.url, "allow", key_id(raw))
    assert post(gateway, raw).status_code == 200


def test_a_block_with_a_ttl_expires(gateway_factory, upstream, redis_server):
    gateway = gateway_factory(base_config(upstream.base_url), redis_url=redis_server.url)
    raw = "sk-short-block"
    # Long enough to outlast the command's own exit (it also writes the label, review, audit entry).
    shown = keys_cli(redis_server.url, "block", key_id(raw), "--reason", "review", "--ttl", "5s")
    assert shown["expires_at"] - shown["set_at"] == pytest.approx(5)
    assert post(gateway, raw).status_code == 403
    wait_until(lambda: post(gateway, raw).status_code == 200, timeout=20, interval=0.2, what="block expired")


def test_throttle_moves_a_key_to_a_stricter_tier(gateway_factory, upstream, redis_server):
    gateway = gateway_factory(base_config(upstream.base_url), redis_url=redis_server.url)
    raw = "sk-to-throttle"
    assert post(gateway, raw).headers["x-ratelimit-limit-requests"] == "100000"
    keys_cli(redis_server.url, "throttle", key_id(raw), "--tier", "throttled", "--reason", "suspicious")
    throttled = post(gateway, raw)
    assert throttled.headers["x-ratelimit-limit-requests"] == "2"
    # The throttled tier allows 2 per minute and the key already spent 2 in this window.
    assert post(gateway, raw).status_code == 429
    assert "distillguard_decisions_enforced_total{action=\"throttle\"}" in gateway.metrics()


def test_throttle_to_an_unknown_tier_is_refused(redis_server):
    result = subprocess.run(_cli("keys", "--redis-url", redis_server.url, "throttle", "0123456789abcdef",
                                 "--tier", "nope"), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "nope" in result.stderr
