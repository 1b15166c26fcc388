"""A dead or stuck Redis never hangs a request: after a short timeout the configured policy
decides (fail open by default, fail closed as an option), and the gateway recovers by itself
when Redis comes back, reloading its scripts."""

from __future__ import annotations

import threading

import httpx

from tests.conftest import base_config
from tests.support.processes import wait_until

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 4}


def post(gateway, key: str = "sk-outage", timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json=CHAT, headers={"x-api-key": key}, timeout=timeout)


def metric_value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


class Traffic:
    """Requests sent one after another from a thread while the test breaks things."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set() and len(self.statuses) < 2000:
                response = client.post(f"{self.gateway.base_url}/chat/completions", json=CHAT,
                                       headers={"x-api-key": "sk-under-traffic"})
                self.statuses.append(response.status_code)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def test_fail_open_keeps_serving_through_a_redis_restart(gateway_factory, upstream, own_redis):
    gateway = gateway_factory(base_config(upstream.base_url), redis_url=own_redis.url)
    assert "x-ratelimit-limit-requests" in post(gateway).headers
    with Traffic(gateway) as traffic:
        wait_until(lambda: len(traffic.statuses) > 5, what="traffic flowing")
        own_redis.stop()
        served_during = len(traffic.statuses)
        wait_until(lambda: len(traffic.statuses) > served_during + 10, what="traffic during outage")
        down = post(gateway)
        assert down.status_code == 200 and "x-ratelimit-limit-requests" not in down.headers
        own_redis.start()
        wait_until(lambda: "x-ratelimit-limit-requests" in post(gateway).headers, timeout=15, what="limits back")
    assert set(traffic.statuses) == {200}
    assert metric_value(gateway.metrics(), "distillguard_redis_errors_total") >= 1
    assert "failing open" in gateway.log()


def test_fail_closed_refuses_with_503_while_redis_is_down(gateway_factory, upstream, own_redis):
    config = base_config(upstream.base_url, redis_failure_policy="closed")
    gateway = gateway_factory(config, redis_url=own_redis.url)
    assert post(gateway).status_code == 200
    own_redis.stop()
    refused = post(gateway)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "rate_limiter_unavailable"
    own_redis.start()
    wait_until(lambda: post(gateway).status_code == 200, timeout=15, what="serving again")


def test_a_stuck_redis_does_not_hang_requests(gateway_factory, upstream, own_redis):
    config = base_config(upstream.base_url, redis_timeout="200ms")
    gateway = gateway_factory(config, redis_url=own_redis.url)
    assert post(gateway).status_code == 200
    own_redis.pause()
    try:
        responses = [post(gateway, timeout=5) for _ in range(3)]
    finally:
        own_redis.resume()
    assert [r.status_code for r in responses] == [200, 200, 200]
    wait_until(lambda: "x-ratelimit-limit-requests" in post(gateway).headers, timeout=15, what="limits back")


def test_console_prompt_samples_lost_to_an_outage_are_counted(own_redis):
    """Prompt samples are not spooled: those a down Redis refuses are counted, one by one."""
    import asyncio

    from prometheus_client import REGISTRY

    from service.recording import PromptSamples
    from service.store import connect
    from tests.test_events_spool import _exchange

    def lost() -> float:
        return REGISTRY.get_sample_value("distillguard_prompt_samples_dropped_total", {"reason": "redis_error"}) or 0

    async def run() -> None:
        samples = PromptSamples(await connect(own_redis.url, timeout=0.2), timeout=0.2)
        samples.start()
        own_redis.stop()
        for i in range(5):
            samples.listen(_exchange("sk-samples", i))
        for _ in range(100):
            if samples.queue.empty() and lost() - before >= 5:
                break
            await asyncio.sleep(0.05)
        await samples.close()
        await samples.client.aclose()

    before = lost()
    asyncio.run(run())
    assert lost() - before == 5
