"""While Redis is down the gateway holds detection events in a bounded spool and appends
them, in order and each exactly once, when Redis returns: a Redis crash loses no request's
features, and the scorer counts every request of every key."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Self

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from detectors.features import from_fields
from service.config import Settings
from service.events import EventSink, shard_of
from service.events_spool import EventSpool, decode_event, event_bytes
from service.proxy import Exchange
from service.store import EVENT_GROUP, connect, event_stream
from tests.conftest import base_config
from tests.support.processes import start_redis, wait_until
from tests.support.traffic import harvest_request, key_id
from tests.test_redis_outage import metric_value
from tests.test_scorer import requests_seen

STREAMS = 4


def event(n: int, size: int = 10) -> str:
    """The spool holds events as opaque strings: event n, `size` bytes."""
    return str(n).rjust(size, "0")


def waiting(spool: EventSpool, shard: int) -> list[str]:
    return [e.lstrip("0") for _, e, _ in spool.shards[shard].waiting]


def _exchange(raw_key: str, i: int) -> Exchange:
    return Exchange("POST", "/v1/chat/completions", "/chat/completions", "/v1/chat/completions", key_id(raw_key),
                    "127.0.0.1", [(b"user-agent", b"t")], b"{}", harvest_request(i), 0.0, received_at=1000.0 + i,
                    status=200, finished=0.01)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("distillguard_events_dropped_total", {"reason": reason}) or 0.0


def spool_settings(**spool) -> Settings:
    return Settings(redis_timeout="200ms", detection={"streams": STREAMS, "spool": spool})


# ---- the bound


def test_past_its_count_bound_the_spool_drops_the_oldest_events_of_any_shard():
    spool = EventSpool(streams=2, max_events=5, max_bytes=10**6, batch=100)
    assert [spool.add(n % 2, event(n)) for n in range(1, 6)] == [0, 0, 0, 0, 0]
    assert spool.add(0, event(6)) == 1  # event 1 (shard 1) is the oldest of all
    assert spool.add(0, event(7)) == 1  # then event 2 (shard 0)
    assert waiting(spool, 0) == ["4", "6", "7"] and waiting(spool, 1) == ["3", "5"]
    assert len(spool) == 5 and spool.bytes == 5 * event_bytes(event(1))


def test_past_its_byte_bound_the_spool_drops_as_many_old_events_as_it_takes():
    spool = EventSpool(streams=1, max_events=100, max_bytes=41, batch=100)
    for n in range(1, 5):
        spool.add(0, event(n))  # 10 bytes each
    assert spool.add(0, event(5, size=30)) == 3
    assert waiting(spool, 0) == ["4", "5"] and spool.bytes == 40


def test_a_batch_being_sent_is_never_dropped_and_is_sent_again_unchanged():
    spool = EventSpool(streams=1, max_events=3, max_bytes=10**6, batch=2)
    for n in range(1, 4):
        spool.add(0, event(n))
    first = spool.batches()[0]
    assert [e.lstrip("0") for e in first.events] == ["1", "2"]
    assert spool.add(0, event(4)) == 1  # over the bound: event 3 goes, not the batch in flight
    assert spool.batches()[0] is first  # its reply was lost: the very same batch, same number
    assert spool.sent(0) == 2
    again = spool.batches()[0]
    assert [e.lstrip("0") for e in again.events] == ["4"] and again.seq == first.seq + 1
    assert spool.sent(0) == 1 and spool.idle and spool.bytes == 0


def test_a_full_spool_drops_the_oldest_events_and_counts_them():
    settings = Settings(detection={"streams": STREAMS, "spool": {"max_events": 100}})

    class NoStore:
        client = None

    sink = EventSink(NoStore(), settings, b"salt")  # never started: nothing leaves the spool
    before = dropped("spool_full")
    for i in range(103):
        sink.listen(_exchange("sk-one-key", i))
    assert len(sink.spool) == 100 and dropped("spool_full") - before == 3
    (shard,) = [s for s, state in enumerate(sink.spool.shards) if state.waiting]
    assert shard == shard_of(key_id("sk-one-key"), STREAMS)
    kept = [from_fields(decode_event(e)).ts for _, e, _ in sink.spool.shards[shard].waiting]
    assert kept == [1000.0 + i for i in range(3, 103)]


# ---- against a real Redis


async def _sink(url: str, settings: Settings) -> EventSink:
    return EventSink(await connect(url, timeout=settings.redis_timeout), settings, b"salt")


def stream_lengths(url: str, shards=range(STREAMS)) -> dict[int, int]:
    client = redis.Redis.from_url(url)
    try:
        return {shard: client.xlen(event_stream(shard)) for shard in shards}
    finally:
        client.close()


def test_events_held_while_redis_is_down_are_appended_in_order_when_it_returns(own_redis):
    settings = spool_settings()

    async def run() -> list[float]:
        sink = await _sink(own_redis.url, settings)
        sink.start()
        own_redis.stop()
        for i in range(30):
            sink.listen(_exchange("sk-during-outage", i))
        await asyncio.sleep(0.5)
        assert len(sink.spool) == 30
        own_redis.start()
        for i in range(30, 40):  # newer events queue behind the held ones
            sink.listen(_exchange("sk-during-outage", i))
        for _ in range(200):
            if sink.spool.idle:
                break
            await asyncio.sleep(0.05)
        await sink.close()
        await sink.store.close()
        client = redis.asyncio.Redis.from_url(own_redis.url)
        shard = shard_of(key_id("sk-during-outage"), STREAMS)
        entries = await client.xrange(event_stream(shard))
        await client.aclose()
        return [from_fields(fields).ts for _, fields in entries]

    appended_before = REGISTRY.get_sample_value("distillguard_events_appended_total") or 0.0
    assert asyncio.run(run()) == [1000.0 + i for i in range(40)]
    assert REGISTRY.get_sample_value("distillguard_events_appended_total") - appended_before == 40


def test_a_batch_whose_reply_was_lost_is_appended_once(own_redis):
    """Redis frozen mid-call: it runs the append when it wakes, but the gateway timed out
    waiting for the reply and sends the batch again; the batch number makes that a no-op."""
    settings = spool_settings()

    async def run() -> tuple[int, int]:
        sink = await _sink(own_redis.url, settings)
        for i in range(25):
            sink.listen(_exchange(f"sk-lost-reply-{i % 5}", i))
        own_redis.pause()
        try:
            assert await sink.flush() is False
        finally:
            own_redis.resume()
        await asyncio.sleep(0.2)
        applied_while_waiting = sum(stream_lengths(own_redis.url).values())
        assert await sink.flush() is True and sink.spool.idle
        await sink.store.close()
        return applied_while_waiting, sum(stream_lengths(own_redis.url).values())

    appended_before = REGISTRY.get_sample_value("distillguard_events_appended_total") or 0.0
    applied_while_waiting, total = asyncio.run(run())
    assert applied_while_waiting == 25, "the frozen Redis should have run the first call when it woke"
    assert total == 25
    assert REGISTRY.get_sample_value("distillguard_events_appended_total") - appended_before == 25


def test_an_append_redis_refuses_for_good_is_dropped_and_counted_not_retried_forever(own_redis):
    settings = spool_settings()
    client = redis.Redis.from_url(own_redis.url)
    wrong = shard_of(key_id("sk-wrong-type"), STREAMS)
    client.set(event_stream(wrong), "not a stream")

    async def run() -> EventSink:
        sink = await _sink(own_redis.url, settings)
        sink.listen(_exchange("sk-wrong-type", 0))
        sink.listen(_exchange(next(f"sk-ok-{i}" for i in range(100)
                                   if shard_of(key_id(f"sk-ok-{i}"), STREAMS) != wrong), 1))
        assert await sink.flush() is True
        await sink.store.close()
        return sink

    before = dropped("redis_refused")
    sink = asyncio.run(run())
    assert sink.spool.idle and dropped("redis_refused") - before == 1
    assert sum(stream_lengths(own_redis.url, [s for s in range(STREAMS) if s != wrong]).values()) == 1
    client.close()


def test_an_event_with_a_lone_surrogate_does_not_spoil_its_batch(own_redis):
    settings = spool_settings()
    odd = Exchange("POST", "/v1/chat/\ud800", "/chat/\ud800", "/v1/chat/\ud800", key_id("sk-odd"), "127.0.0.1",
                   [], b"{}", harvest_request(0), 0.0, received_at=1000.0, status=404, finished=0.01)

    async def run() -> list[dict]:
        sink = await _sink(own_redis.url, settings)
        sink.listen(odd)
        sink.listen(_exchange("sk-odd", 1))
        assert await sink.flush() is True and sink.spool.idle
        await sink.store.close()
        client = redis.asyncio.Redis.from_url(own_redis.url)
        entries = await client.xrange(event_stream(shard_of(key_id("sk-odd"), STREAMS)))
        await client.aclose()
        return [from_fields(fields) for _, fields in entries]

    first, second = asyncio.run(run())
    assert first.path == "/v1/chat/?" and first.status == 404 and second.ts == 1001.0


# ---- a Redis crash under load, through a real gateway and scorer


class Load:
    """A bounded loopback client: about `rate` requests/s over a few keys, at most 16 at once,
    from a thread; counts every answered request per key."""

    def __init__(self, url: str, keys: list[str], rate: float) -> None:
        self.url, self.keys, self.rate = url, keys, rate
        self.answered: dict[str, int] = dict.fromkeys(keys, 0)
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        limit = asyncio.Semaphore(16)
        tasks = set()
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as client:
            async def one(i: int) -> None:
                raw = self.keys[i % len(self.keys)]
                try:
                    response = await client.post("/chat/completions", json=harvest_request(i),
                                                 headers={"authorization": f"Bearer {raw}"})
                except httpx.HTTPError:
                    self.failures += 1
                else:
                    self.answered[raw] += 1
                    self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                finally:
                    limit.release()

            start, i = time.monotonic(), 0
            while not self.stop.is_set():
                await asyncio.sleep(max(0.0, start + i / self.rate - time.monotonic()))
                await limit.acquire()
                task = asyncio.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)

    @property
    def total(self) -> int:
        return sum(self.answered.values())

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def durable_redis():
    """A Redis that keeps its data across a crash (append-only file), as a production one would."""
    server = start_redis(extra=["--appendonly", "yes"])
    yield server
    server.stop()


def crash(server) -> None:
    """SIGKILL by PID: no shutdown, no final save; what the append-only file holds survives."""
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(5)
    server.proc = None


def test_a_redis_crash_under_load_loses_no_event_and_the_scorer_counts_every_request(
    gateway_factory, scorer_factory, upstream, durable_redis
):
    config = base_config(upstream.base_url, redis_timeout="250ms",
                         detection={"streams": STREAMS, "scorer_lease": "1s", "spool": {"retry_max": "500ms"}})
    gateway = gateway_factory(config, workers=2, redis_url=durable_redis.url)
    scorer = scorer_factory(config, durable_redis.url, name="scorer")
    keys = [f"sk-crash-load-{i}" for i in range(6)]
    with Load(gateway.base_url, keys, rate=60) as load:
        wait_until(lambda: load.total >= 100, timeout=30, what="traffic before the crash")
        crash(durable_redis)
        at_crash = load.total
        wait_until(lambda: load.total >= at_crash + 150, timeout=60, what="requests served while Redis is down")
        held = metric_value(gateway.metrics(), "distillguard_events_spool_entries")
        durable_redis.start()  # same port, same directory: it reloads its append-only file
        at_restart = load.total
        wait_until(lambda: load.total >= at_restart + 150, timeout=60, what="requests served after the restart")
    served = load.total
    # Every request is answered: served, or refused once the scorer throttles a harvesting key.
    assert load.failures == 0 and set(load.statuses) <= {200, 429}
    assert held >= 100, "the gateway should have held the outage's events"
    wait_until(lambda: sum(stream_lengths(durable_redis.url).values()) >= served, timeout=30,
               what="the spool flushed")
    scraped = gateway.metrics()
    assert metric_value(scraped, "distillguard_events_spool_entries") == 0
    assert sum(stream_lengths(durable_redis.url).values()) == served  # none lost, none twice
    assert metric_value(scraped, "distillguard_events_appended_total") == served
    assert metric_value(scraped, "distillguard_events_dropped_total") == 0
    assert metric_value(scraped, 'distillguard_redis_errors_total{operation="events"}') > 0
    assert "appending detection events failed" in gateway.log()

    client = redis.Redis.from_url(durable_redis.url)

    def scored() -> bool:
        groups = [g for shard in range(STREAMS) for g in client.xinfo_groups(event_stream(shard))
                  if g["name"] == EVENT_GROUP.encode()]
        return len(groups) == STREAMS and all(g["lag"] == 0 and g["pending"] == 0 for g in groups)

    wait_until(scored, timeout=60, what="the scorer caught up")
    assert {raw: requests_seen(client, raw) for raw in keys} == load.answered
    assert scorer.proc.poll() is None
    client.close()
