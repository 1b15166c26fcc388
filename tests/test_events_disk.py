"""The spool's part on local disk (`detection.spool.disk`): events held through a Redis outage
survive the gateway's restart, are appended in order and each once when Redis returns, and
past the byte bound the oldest are dropped and counted."""

from __future__ import annotations

import asyncio

import pytest
import redis

from detectors.features import from_fields
from service.config import Settings
from service.events import EventSink, shard_of
from service.events_disk import SEGMENT_EVENTS, DiskSpool
from service.events_spool import decode_event
from service.store import connect, event_stream
from tests.conftest import base_config
from tests.support.processes import start_redis, wait_until
from tests.support.traffic import key_id
from tests.test_events_spool import STREAMS, Load, _exchange, crash, dropped, stream_lengths
from tests.test_redis_outage import metric_value


@pytest.fixture
def durable_redis():
    """A Redis that keeps its data across its restart (append-only file)."""
    server = start_redis(extra=["--appendonly", "yes"])
    yield server
    server.stop()


def events(first: int, count: int, shard: int = 0) -> list[tuple[int, int, str]]:
    return [(shard, 0, f'["n","{n}"]') for n in range(first, first + count)]


def numbers(segment) -> list[int]:
    return [int(event.split('"')[3]) for _, _, event in segment.events]


# ---- segments


def test_segments_come_back_oldest_first_and_leave_the_disk(tmp_path):
    disk = DiskSpool(tmp_path, "aaaa", max_bytes=10**6)
    assert disk.write(events(0, 3)) == 0 and disk.write(events(3, 2)) == 0
    assert disk.events == 5 and disk.bytes == sum(p.stat().st_size for p in tmp_path.glob("*.seg"))
    assert numbers(disk.oldest()) == [0, 1, 2]
    assert numbers(disk.oldest()) == [3, 4]
    assert disk.oldest() is None and disk.empty and disk.events == 0 and disk.bytes == 0
    assert list(tmp_path.glob("*.seg")) == []


def test_a_large_write_is_cut_into_segments_but_a_numbered_batch_never_is(tmp_path):
    disk = DiskSpool(tmp_path, "aaaa", max_bytes=10**7)
    disk.write(events(0, SEGMENT_EVENTS + 5))
    disk.write(events(0, SEGMENT_EVENTS + 5), producer="bbbb")
    assert sorted(int(p.name.split("-")[2].split(".")[0]) for p in tmp_path.glob("*.seg")) == [
        5, SEGMENT_EVENTS, SEGMENT_EVENTS + 5]


def test_numbered_batches_written_first_go_before_every_segment(tmp_path):
    disk = DiskSpool(tmp_path, "aaaa", max_bytes=10**6)
    disk.write(events(10, 2))
    disk.write([(1, 7, '["n","1"]')], producer="aaaa", first=True)
    first = disk.oldest()
    assert first.producer == "aaaa" and first.events == [(1, 7, '["n","1"]')]
    assert disk.oldest().producer is None


def test_past_its_byte_bound_the_oldest_segments_are_dropped_and_counted(tmp_path):
    disk = DiskSpool(tmp_path, "aaaa", max_bytes=200)
    assert disk.write(events(0, 5)) == 0  # 5 lines of 13 bytes, and the header
    assert disk.write(events(5, 5)) == 0
    assert disk.write(events(10, 5)) == 5  # the first segment goes
    assert numbers(disk.oldest()) == [5, 6, 7, 8, 9]
    assert disk.bytes <= 200


def test_a_live_workers_segments_are_left_alone_a_stopped_ones_adopted_once(tmp_path):
    live, stopped = DiskSpool(tmp_path, "live", 10**6), DiskSpool(tmp_path, "gone", 10**6)
    live.write(events(0, 2))
    stopped.write(events(2, 3))
    stopped.close()
    first, second = DiskSpool(tmp_path, "one", 10**6), DiskSpool(tmp_path, "two", 10**6)
    assert first.adopt() == (3, 0)
    assert second.adopt() == (0, 0) and live.adopt() == (0, 0)
    assert numbers(first.oldest()) == [2, 3, 4]
    assert numbers(live.oldest()) == [0, 1]


def test_a_killed_workers_lock_is_free_and_its_segments_adopted(tmp_path):
    killed = DiskSpool(tmp_path, "dead", 10**6)
    killed.write(events(0, 2))
    killed._lock.close()  # what the kernel does for a killed process: the lock file stays
    assert (tmp_path / "dead.lock").exists()
    heir = DiskSpool(tmp_path, "heir", 10**6)
    assert heir.adopt() == (2, 0) and not (tmp_path / "dead.lock").exists()


# ---- through the event sink, against a real Redis


def disk_settings(directory, **disk) -> Settings:
    return Settings(redis_timeout="200ms",
                    detection={"streams": STREAMS, "spool": {"disk": {"directory": str(directory), **disk}}})


def appended_ts(url: str, raw_key: str) -> list[float]:
    client = redis.Redis.from_url(url)
    try:
        return [from_fields(fields).ts for _, fields in client.xrange(event_stream(shard_of(key_id(raw_key),
                                                                                              STREAMS)))]
    finally:
        client.close()


def test_events_held_through_a_stop_during_an_outage_are_appended_once_in_order_by_the_next_sink(
    durable_redis, tmp_path
):
    own_redis = durable_redis
    settings = disk_settings(tmp_path)

    async def first_worker() -> None:
        sink = EventSink(await connect(own_redis.url, timeout=0.2), settings, b"salt")
        sink.start()
        for i in range(20):
            sink.listen(_exchange("sk-disk", i))
        wait = 0
        while not sink.drained and wait < 100:
            await asyncio.sleep(0.05)
            wait += 1
        own_redis.stop()
        for i in range(20, 40):  # sent, and failed: a batch being sent stays in memory
            sink.listen(_exchange("sk-disk", i))
        await asyncio.sleep(0.5)
        for i in range(40, 60):  # waiting behind it: moved to disk after the next failed append
            sink.listen(_exchange("sk-disk", i))
        await asyncio.sleep(1.5)
        assert sink.disk.events == 20 and len(sink.spool) == 20
        await sink.close(timeout=0.5)  # Redis still down: the rest goes to disk too
        await sink.store.close()

    async def next_worker() -> EventSink:
        sink = EventSink(await connect(own_redis.url, timeout=0.2), settings, b"salt")
        sink.start()
        for i in range(60, 80):  # served by the restarted gateway, Redis still down
            sink.listen(_exchange("sk-disk", i))
        await asyncio.sleep(0.5)
        own_redis.start()
        for i in range(80, 90):
            sink.listen(_exchange("sk-disk", i))
        for _ in range(200):
            if sink.drained:
                break
            await asyncio.sleep(0.05)
        await sink.close()
        await sink.store.close()
        return sink

    before = dropped("disk_full") + dropped("shutdown") + dropped("spool_full")
    asyncio.run(first_worker())
    assert list(tmp_path.glob("*.seg")), "the stopped worker's events should be on disk"
    asyncio.run(next_worker())
    assert appended_ts(own_redis.url, "sk-disk") == [1000.0 + i for i in range(90)]
    assert dropped("disk_full") + dropped("shutdown") + dropped("spool_full") == before
    assert list(tmp_path.glob("*.seg")) == [] and list(tmp_path.glob("*.lock")) == []


def test_past_the_disk_bound_the_oldest_events_are_dropped_and_counted(own_redis, tmp_path):
    settings = disk_settings(tmp_path, max_bytes=1024 * 1024)

    async def run() -> EventSink:
        sink = EventSink(await connect(own_redis.url, timeout=0.2), settings, b"salt")
        own_redis.stop()
        for i in range(3000):  # about 1.9 MB of events
            sink.listen(_exchange(f"sk-bound-{i % 7}", i))
        await sink.close(timeout=0.2)
        await sink.store.close()
        return sink

    before = dropped("disk_full")
    sink = asyncio.run(run())
    lost = dropped("disk_full") - before
    assert 0 < lost < 3000
    assert sink.disk.events == 3000 - lost and 0 < sink.disk.bytes <= 1024 * 1024
    kept = [from_fields(decode_event(event)).ts for path in sorted(tmp_path.glob("*.seg"))
            for _, _, event in DiskSpool.read(path).events]
    assert len(set(kept)) == len(kept) == 3000 - lost and max(kept) == 1000 + 2999  # the newest are kept


# ---- a gateway restarted while Redis is down


def test_a_gateway_restarted_during_a_redis_outage_loses_no_event(
    gateway_factory, upstream, durable_redis, tmp_path
):
    config = base_config(upstream.base_url, redis_timeout="250ms",
                         detection={"streams": STREAMS, "spool": {"retry_max": "500ms",
                                                                  "disk": {"directory": str(tmp_path)}}})
    keys = [f"sk-restart-{i}" for i in range(4)]
    first = gateway_factory(config, workers=2, redis_url=durable_redis.url)
    with Load(first.base_url, keys, rate=40) as load:
        wait_until(lambda: load.total >= 40, timeout=30, what="traffic before the crash")
        crash(durable_redis)
        at_crash = load.total
        wait_until(lambda: load.total >= at_crash + 80, timeout=60, what="requests served while Redis is down")
    served_first = load.total
    assert load.failures == 0
    first.stop()  # graceful: each worker writes what it holds
    assert list(tmp_path.glob("*.seg")), "the stopped gateway's events should be on disk"

    second = gateway_factory(config, workers=2, redis_url=durable_redis.url)
    with Load(second.base_url, keys, rate=40) as load:
        wait_until(lambda: load.total >= 40, timeout=30, what="requests served by the new gateway, Redis down")
        durable_redis.start()
        at_restart = load.total
        wait_until(lambda: load.total >= at_restart + 40, timeout=60, what="requests served after Redis returned")
    served = served_first + load.total
    assert load.failures == 0
    wait_until(lambda: sum(stream_lengths(durable_redis.url).values()) >= served, timeout=60,
               what="every held event appended")
    scraped = second.metrics()
    wait_until(lambda: metric_value(second.metrics(), "distillguard_events_spool_entries") == 0, timeout=30,
               what="the spool empty")
    assert sum(stream_lengths(durable_redis.url).values()) == served  # none lost, none twice
    assert metric_value(scraped, "distillguard_events_dropped_total") == 0
    assert "adopted" in second.log()
    assert list(tmp_path.glob("*.seg")) == []
