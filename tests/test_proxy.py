"""The gateway as a reverse proxy, driven by the real `openai` client over loopback HTTP."""

from __future__ import annotations

import asyncio
import socket

import httpx
import openai
import pytest

from tests.conftest import base_config
from tests.support.processes import free_port, wait_until

MESSAGES = [{"role": "user", "content": "Name three rivers."}]


@pytest.fixture(scope="module")
def gateway(upstream, redis_server):
    from tests.support.processes import start_gateway

    gw = start_gateway(base_config(upstream.base_url), redis_url=redis_server.url)
    yield gw
    gw.stop()


def client_for(gateway, key: str = "sk-proxy-test", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=15, **kwargs)


def test_openai_client_gets_a_completion_through_the_gateway(gateway):
    completion = client_for(gateway).chat.completions.create(model="sim", messages=MESSAGES, max_tokens=12)
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_async_openai_client_streams_and_the_added_usage_chunk_is_stripped(gateway, upstream):
    async def run():
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="sk-async", max_retries=0, timeout=15)
        stream = await client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=6, stream=True)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert all(chunk.choices for chunk in chunks), "the usage-only chunk the gateway asked for leaked"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert '"include_usage": true' in upstream.stats()["last_body"].replace('":true', '": true')


def test_a_client_that_asks_for_usage_still_gets_it_in_the_stream(gateway):
    stream = client_for(gateway).chat.completions.create(
        model="sim", messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_stream_chunks_reach_the_client_before_the_upstream_finishes(gateway, upstream):
    completed_before = upstream.stats()["streams_completed"]
    headers = {"x-mock-tokens-per-second": "5", "x-mock-completion-tokens": "10"}
    stream = client_for(gateway, default_headers=headers).chat.completions.create(
        model="sim", messages=MESSAGES, stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta is not None
    assert upstream.stats()["streams_completed"] == completed_before, "upstream had already finished"
    rest = list(stream)
    assert len(rest) >= 9


def test_a_client_disconnect_cancels_the_upstream_request(gateway, upstream):
    cancelled_before = upstream.stats()["streams_cancelled"]
    headers = {"x-api-key": "sk-disconnect", "x-mock-tokens-per-second": "4", "x-mock-completion-tokens": "40"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{gateway.base_url}/chat/completions", headers=headers,
                           json={"model": "sim", "messages": MESSAGES, "stream": True}) as response:
            next(response.iter_lines())
    wait_until(lambda: upstream.stats()["streams_cancelled"] > cancelled_before, timeout=5, what="upstream cancelled")


def test_path_prefix_query_and_method_are_forwarded_intact(gateway_factory, upstream):
    prefixed = upstream.base_url.replace("/v1", "/tenant-a/v1")
    gw = gateway_factory(base_config(prefixed))
    response = httpx.get(f"{gw.base_url}/models?limit=3&after=a%20b", headers={"x-api-key": "sk-q"}, timeout=10)
    assert response.status_code == 200
    assert upstream.stats()["last_path"] == "/tenant-a/v1/models?limit=3&after=a%20b"


def test_hop_by_hop_headers_are_dropped_and_others_kept(gateway, upstream):
    headers = {
        "x-api-key": "sk-hop",
        "Connection": "keep-alive",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "X-Request-Tag": "kept",
    }
    httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "sim", "messages": MESSAGES},
               headers=headers, timeout=10)
    seen = upstream.stats()["last_headers"]
    assert seen["x-request-tag"] == "kept"
    assert "te" not in seen and "proxy-authorization" not in seen
    assert seen["x-api-key"] == "sk-hop"


def test_upstream_status_headers_and_body_are_returned(gateway):
    response = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "sim", "messages": MESSAGES},
                          headers={"x-api-key": "sk-500", "x-mock-status": "500"}, timeout=10)
    assert response.status_code == 500
    assert "error" in response.json()
    assert "x-ratelimit-limit-requests" in response.headers


def test_the_gateway_can_swap_in_the_real_upstream_key(gateway_factory, upstream):
    config = base_config(upstream.base_url)
    config["upstream"]["api_key"] = "sk-provider-secret"
    gw = gateway_factory(config)
    completion = client_for(gw, key="sk-customer").chat.completions.create(model="sim", messages=MESSAGES)
    assert completion.choices
    seen = upstream.stats()["last_headers"]
    assert seen["authorization"] == "Bearer sk-provider-secret"
    assert "sk-customer" not in str(seen)


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "api-key"])
def test_each_key_header_is_accepted(gateway, header):
    value = "Bearer sk-header" if header == "authorization" else "sk-header"
    response = httpx.get(f"{gateway.base_url}/models", headers={header: value}, timeout=10)
    assert response.status_code == 200


def test_missing_key_is_401_in_openai_shape(gateway):
    response = httpx.get(f"{gateway.base_url}/models", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError):
        client_for(gateway, default_headers={"Authorization": "Basic not-a-bearer"}).models.list()


def test_unreachable_upstream_is_502(gateway_factory):
    closed_port = free_port()
    gw = gateway_factory(base_config(f"http://127.0.0.1:{closed_port}/v1"))
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(gw).chat.completions.create(model="sim", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"


def test_slow_upstream_is_504(gateway_factory, upstream):
    config = base_config(upstream.base_url)
    config["upstream"]["timeout"] = "1s"
    gw = gateway_factory(config)
    client = client_for(gw, default_headers={"x-mock-latency-ms": "3000"})
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"


def test_a_body_over_the_maximum_is_413_and_never_forwarded(gateway_factory, upstream):
    config = base_config(upstream.base_url, max_body_bytes=4096)
    gw = gateway_factory(config)
    before = upstream.stats()["requests"]
    big = {"model": "sim", "messages": [{"role": "user", "content": "x" * 10000}]}
    response = httpx.post(f"{gw.base_url}/chat/completions", json=big, headers={"x-api-key": "sk-big"}, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.stats()["requests"] == before


def test_chunked_body_over_the_maximum_is_413(gateway_factory, upstream):
    gw = gateway_factory(base_config(upstream.base_url, max_body_bytes=4096))

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = httpx.post(f"{gw.base_url}/chat/completions", content=chunks(),
                          headers={"x-api-key": "sk-chunked", "content-type": "application/json"}, timeout=10)
    assert response.status_code == 413


def test_oversized_headers_are_400(gateway):
    response = httpx.get(f"{gateway.base_url}/models", headers={"x-api-key": "sk-h", "x-padding": "p" * 20000},
                         timeout=10)
    assert response.status_code == 400


def test_malformed_header_line_is_400(gateway):
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nbroken header line\r\n\r\n")
        reply = sock.recv(1024)
    assert reply.startswith(b"HTTP/1.1 400")


def test_malformed_json_is_refused_with_400_and_not_forwarded(gateway, upstream):
    before = upstream.stats()["requests"]
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=b'{"model": "sim", "messages": [',
                          headers={"x-api-key": "sk-badjson", "content-type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert upstream.stats()["requests"] == before


def test_routes_outside_v1_are_404_in_openai_shape(gateway):
    response = httpx.get(f"{gateway.url}/chat/completions", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_raw_keys_never_reach_logs_or_metrics(gateway):
    raw = "sk-secret-raw-key-1234567890"
    client_for(gateway, key=raw).chat.completions.create(model="sim", messages=MESSAGES)
    httpx.get(f"{gateway.base_url}/models", headers={"x-api-key": raw + "-2"}, timeout=10)
    assert raw not in gateway.metrics()
    assert raw not in gateway.log()


def test_health_and_readiness(gateway):
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).json()["status"] == "ok"
    ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": True, "upstream": True}
