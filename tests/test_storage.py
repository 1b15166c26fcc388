"""The same limits on every store the gateway can use: Redis over a unix socket and the
embedded in-process store (what `distillguard demo` and a bare `serve` run on)."""

from __future__ import annotations

import asyncio
import subprocess

import httpx

from tests.conftest import base_config
from tests.support.processes import _cli, free_port, start_redis, stop_process, wait_until
from tests.test_limits import burst, statuses


def limited_config(upstream, limit: int) -> dict:
    config = base_config(upstream.base_url)
    config["limits"] = {"tiers": {"default": {"requests": {"limit": limit, "window": "1m"}}, "throttled": {}}}
    return config


def test_limits_are_exact_over_a_unix_socket(gateway_factory, upstream, tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = start_redis(["--unixsocket", str(socket_path), "--unixsocketperm", "700"])
    try:
        gateway = gateway_factory(limited_config(upstream, 10), redis_url=f"unix://{socket_path}")
        assert statuses(asyncio.run(burst(gateway.base_url, "sk-unix", 30))) == {200: 10, 429: 20}
    finally:
        server.stop()


def test_limits_are_exact_on_the_embedded_store(gateway_factory, upstream):
    gateway = gateway_factory(limited_config(upstream, 10))
    assert "store: embedded" in gateway.log()
    assert statuses(asyncio.run(burst(gateway.base_url, "sk-embedded", 30))) == {200: 10, 429: 20}


def test_the_demo_command_serves_the_simulator_through_the_gateway(tmp_path):
    port, upstream_port = free_port(), free_port()
    proc = subprocess.Popen(
        _cli("demo", "--port", str(port), "--upstream-port", str(upstream_port)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**__import__("os").environ, "DISTILLGUARD_HOME": str(tmp_path)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, timeout=30, what="demo up")
        response = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer sk-demo"},
                              json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        assert "x-ratelimit-remaining-requests" in response.headers
    finally:
        stop_process(proc)
