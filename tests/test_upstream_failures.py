"""Every way an upstream can fail, against a real gateway process and a real misbehaving
upstream on loopback: the client always gets a well-formed answer (OpenAI error JSON, or a
stream that ends with an error event), the key's concurrency lease is released, and its
token reservation is settled."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import httpx
import openai
import pytest
import redis

from service.app import create_app
from service.config import load_settings
from service.usage import estimate_prompt_tokens
from tests.conftest import TEST_SECRET, base_config
from tests.support.broken_upstream import start_broken_upstream
from tests.support.processes import free_port, start_gateway, wait_until

MAX_TOKENS = 500
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": MAX_TOKENS}


def failing_config(base_url: str) -> dict:
    """One request at a time per key, a token window to read, and leases far longer than the
    test, so only settlement can free them."""
    config = base_config(base_url)
    config["upstream"]["timeout"] = "1s"
    config["limits"] = {
        "tiers": {"default": {"tokens": {"limit": 100000, "window": "1h"}, "concurrency": 1}, "throttled": {}},
        "lease_seconds": "5m",
    }
    config["detection"] = {"enabled": False}
    return config


@pytest.fixture(scope="module")
def broken():
    upstream = start_broken_upstream()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def gateway(broken, redis_server):
    gw = start_gateway(failing_config(broken.base_url), redis_url=redis_server.url)
    yield gw
    gw.stop()


def key_id(raw: str) -> str:
    return hmac.new(TEST_SECRET.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def post(gateway, raw: str, mode: str, body: dict = CHAT) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json=body,
                      headers={"x-api-key": raw, "x-break": mode}, timeout=15)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "upstream_error" and error["message"] and "param" in error


def assert_settled_and_free(gateway, redis_server, raw: str, tokens: int) -> None:
    """The lease is gone, the token window holds `tokens` (not the reservation), and the
    key's next request (concurrency 1) is admitted."""
    store = redis.Redis.from_url(redis_server.url)
    names = f"dg:{{{key_id(raw)}}}"
    wait_until(lambda: store.zcard(f"{names}:lease") == 0, timeout=5, what="lease released")
    wait_until(lambda: int(store.hget(f"{names}:tokamt", "__sum") or -1) == tokens, timeout=5,
               what=f"tokens settled to {tokens} (now {store.hget(f'{names}:tokamt', '__sum')})")
    assert tokens < MAX_TOKENS
    following = post(gateway, raw, "ok")
    assert following.status_code == 200, following.text
    assert following.json()["usage"]["total_tokens"] == 12
    assert "Traceback" not in gateway.log()


async def test_refused_connection_is_502_unreachable_and_frees_the_key(redis_server):
    settings = load_settings(**failing_config(f"http://127.0.0.1:{free_port()}/v1"), redis_url=redis_server.url)
    app = create_app(settings)  # in-process: no upstream to start, and one gateway process fewer
    await app.state.start()
    raw = "sk-refused"
    store = redis.Redis.from_url(redis_server.url)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
            for _ in range(2):  # the second is admitted (not 429 concurrency): the first freed its slot
                response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": raw})
                assert_openai_error(response, 502, "upstream_unreachable")
                # Settlement runs off the request path, in this event loop: yield to it while waiting.
                for _ in range(100):
                    if store.zcard(f"dg:{{{key_id(raw)}}}:lease") == 0:
                        break
                    await asyncio.sleep(0.05)
                assert store.zcard(f"dg:{{{key_id(raw)}}}:lease") == 0
                assert store.hget(f"dg:{{{key_id(raw)}}}:tokamt", "__sum") == b"0"
    finally:
        await app.state.stop()


def test_reset_before_headers_is_502_unreachable(gateway, redis_server):
    assert_openai_error(post(gateway, "sk-reset-head", "reset-before-headers"), 502, "upstream_unreachable")
    assert_settled_and_free(gateway, redis_server, "sk-reset-head", 0)


@pytest.mark.parametrize("mode", ["reset-mid-body", "close-mid-body"])
def test_a_body_cut_short_is_502_bad_response(gateway, redis_server, mode):
    raw = f"sk-{mode}"
    assert_openai_error(post(gateway, raw, mode), 502, "upstream_bad_response")
    assert_settled_and_free(gateway, redis_server, raw, 0)


def test_a_stalled_body_is_504_timeout(gateway, redis_server):
    assert_openai_error(post(gateway, "sk-stall-body", "stall-body"), 504, "upstream_timeout")
    assert_settled_and_free(gateway, redis_server, "sk-stall-body", 0)


def test_invalid_json_from_the_upstream_is_502_bad_response(gateway, redis_server):
    assert_openai_error(post(gateway, "sk-invalid-json", "invalid-json"), 502, "upstream_bad_response")
    assert_settled_and_free(gateway, redis_server, "sk-invalid-json", 0)
    assert 'distillguard_upstream_errors_total{kind="broken_response"}' in gateway.metrics()


def test_gzip_that_does_not_decode_is_502_bad_response(gateway, redis_server):
    assert_openai_error(post(gateway, "sk-bad-gzip", "bad-gzip"), 502, "upstream_bad_response")
    assert_settled_and_free(gateway, redis_server, "sk-bad-gzip", 0)


@pytest.mark.parametrize(
    ("mode", "code"), [("reset-mid-stream", "upstream_bad_response"), ("stall-stream", "upstream_timeout")]
)
def test_a_stream_that_breaks_ends_with_an_error_event(gateway, broken, redis_server, mode, code):
    raw = f"sk-{mode}"
    client = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0, timeout=15,
                           default_headers={"x-break": mode})
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="sim", messages=CHAT["messages"], stream=True,
                                                    max_tokens=MAX_TOKENS):
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hi", "Hi"]  # what arrived before the break was relayed
    assert caught.value.body["code"] == code and caught.value.body["type"] == "upstream_error"
    forwarded = next(r for r in reversed(broken.received) if r.header("authorization") == f"Bearer {raw}")
    assert_settled_and_free(gateway, redis_server, raw, estimate_prompt_tokens(forwarded.body) + 2)


def test_a_broken_stream_read_raw_ends_after_one_error_event(gateway):
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json={**CHAT, "stream": True},
                      headers={"x-api-key": "sk-raw-stream", "x-break": "reset-mid-stream"}, timeout=15) as response:
        assert response.status_code == 200
        body = response.read()
    events = [event for event in body.split(b"\n\n") if event]
    assert len(events) == 3
    assert events[-1].startswith(b'data: {"error": {')
    assert b"upstream_bad_response" in events[-1]
