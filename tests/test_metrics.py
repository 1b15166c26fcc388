"""`/metrics` after a known sequence of requests, aggregated over worker processes."""

from __future__ import annotations

import httpx

from tests.conftest import base_config
from tests.test_limits import CHAT, wait_for_workers


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_a_known_sequence_across_two_workers(gateway_factory, upstream, redis_server):
    config = base_config(upstream.base_url)
    config["limits"] = {"tiers": {"default": {"requests": {"limit": 5, "window": "1m"}}, "throttled": {}}}
    gateway = gateway_factory(config, workers=2, redis_url=redis_server.url)
    wait_for_workers(gateway, 2)
    usage_total = {"prompt": 0, "completion": 0}
    for _ in range(7):  # fresh connections, so both workers serve some
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT,
                              headers={"x-api-key": "sk-metrics", "connection": "close"}, timeout=10)
        if response.status_code == 200:
            usage_total["prompt"] += response.json()["usage"]["prompt_tokens"]
            usage_total["completion"] += response.json()["usage"]["completion_tokens"]
    httpx.get(f"{gateway.base_url}/models", timeout=10)  # no key: 401
    text = gateway.metrics()
    route = 'route="/v1/chat/completions"'
    assert value(text, f'distillguard_requests_total{{{route},status="200",tier="default"}}') == 5
    assert value(text, f'distillguard_requests_total{{{route},status="429",tier="default"}}') == 2
    assert value(text, 'distillguard_rejections_total{rule="requests"}') == 2
    assert value(text, 'distillguard_requests_total{route="/v1/models",status="401",tier=""}') == 1
    assert value(text, 'distillguard_tokens_total{direction="prompt"}') == usage_total["prompt"]
    assert value(text, 'distillguard_tokens_total{direction="completion"}') == usage_total["completion"]
    assert value(text, f"distillguard_gateway_latency_seconds_count{{{route}}}") == 5
    assert value(text, f"distillguard_upstream_latency_seconds_count{{{route}}}") == 5


def test_time_to_first_token_is_observed_for_streams(gateway_factory, upstream):
    gateway = gateway_factory(base_config(upstream.base_url))
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{gateway.base_url}/chat/completions", headers={"x-api-key": "sk-ttft"},
                           json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            list(response.iter_lines())
    text = gateway.metrics()
    assert value(text, 'distillguard_time_to_first_token_seconds_count{route="/v1/chat/completions"}') == 1
