"""Finished requests -> their features -> Redis Streams, off the client's path, losing none
to a Redis outage that the spool can hold.

The proxy calls `EventSink.listen` after each request is answered; it computes the
features (hashes only: never the raw key or prompt text) and adds them to the spool
(events_spool.py), per stream shard, oldest first. One background task appends each
shard's oldest batch, all shards in one pipelined round trip; the client never waits on it.

While Redis is unreachable (or an append fails) the events stay in the spool and the task
retries with a backoff doubling up to `detection.spool.retry_max`; when Redis answers
again each shard's backlog goes first, in order, before anything newer. Only past the
spool's bound (`detection.spool.max_events`, `max_bytes`, per worker) are the oldest
dropped, counted in `distillguard_events_dropped_total{reason="spool_full"}` and logged.

With `detection.spool.disk.directory` set, a worker whose appends fail moves what waits to
segment files there (events_disk.py) after each failed round trip; while segments remain,
the oldest is sent first and newer events wait in memory behind them. A worker stopped during
an outage writes what it held, its batches being sent with their numbers; the next worker
adopts the segments and appends them once each. Past `disk.max_bytes` the oldest segments are
dropped, counted with `reason="disk_full"`.

Each append is `events_append.lua` under a batch number that grows per process and shard:
a retry of a batch whose reply was lost (Redis killed or stalled mid-call) finds its
number applied and appends nothing, so every event is appended once and the scorer,
which counts stream entries exactly once (scoring/scorer.py), counts every request once.

Events are sharded by key_id over `detection.streams` streams, each with its own hash tag
(`dg:{events:N}`): a Redis Cluster spreads the shards over its masters, and one key's
events stay in order in one stream, which the scorer relies on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from detectors.features import RequestFeatures, request_features, to_fields

from . import metrics
from .config import Settings
from .events_disk import DiskSpool
from .events_spool import Batch, EventSpool, encode_event
from .proxy import Exchange
from .store import Store, event_producer_key, event_stream, queue_evalsha

log = logging.getLogger("distillguard.events")

# Events per round trip (shared by the shards, each at least 1): catching up after an
# outage sends the backlog in steps of a few milliseconds, never one long stall of the loop.
ROUND_TRIP_EVENTS = 1000
RETRY_MIN_SECONDS = 0.05
# A producer's batch mark outlives its last append by this long: far longer than any
# retry of a batch whose reply was lost can come later.
MARK_TTL_SECONDS = 86400
LOG_EVERY_SECONDS = 10.0
ADOPT_EVERY_SECONDS = 5.0  # how often a worker looks for the segments of stopped workers
# Reply errors that pass (Redis loading its data, a failover, a full Redis): retried.
# Any other reply error would recur on every retry: its batch is dropped and counted.
PASSING_ERRORS = (ConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, TryAgainError,
                  ClusterDownError, MasterDownError, OutOfMemoryError)


def shard_of(key_id: str, streams: int) -> int:
    """The stream shard a key's events go to; stable across processes and restarts."""
    return zlib.crc32(key_id.encode()) % streams


def exchange_features(exchange: Exchange, salt: bytes) -> RequestFeatures:
    usage = exchange.usage
    return request_features(
        ts=exchange.received_at,
        key_id=exchange.key_id,
        path=exchange.path,
        body=exchange.request,
        headers={name.decode("latin-1").lower(): value.decode("latin-1") for name, value in exchange.headers},
        client_ip=exchange.client_ip,
        status=exchange.status,
        latency_ms=max(exchange.finished - exchange.started, 0.0) * 1000,
        usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens} if usage else None,
        salt=salt,
    )


def _producer_key(shard: int, batch: Batch, producer: str) -> str:
    return event_producer_key(shard, batch.producer or producer)


def _script_args(batch: Batch, maxlen: int) -> list:
    return [batch.seq, MARK_TTL_SECONDS, maxlen, *batch.events]


class EventSink:
    """The spool of feature records and the task that appends them to the streams."""

    def __init__(self, store: Store, settings: Settings, salt: bytes) -> None:
        self.store = store
        self.streams = settings.detection.streams
        self.maxlen = settings.detection.stream_maxlen
        self.timeout = max(settings.redis_timeout, 1.0)
        self.retry_max = settings.detection.spool.retry_max
        self.salt = salt
        self.producer = os.urandom(8).hex()  # names this process's batch marks in Redis
        spool = settings.detection.spool
        self.spool = EventSpool(self.streams, spool.max_events, spool.max_bytes,
                                batch=max(1, ROUND_TRIP_EVENTS // self.streams))
        self.disk = (DiskSpool(spool.disk.directory, self.producer, spool.disk.max_bytes)
                     if spool.disk.directory else None)
        self._adopted_at = -ADOPT_EVERY_SECONDS
        self._waiting = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._unlogged: dict[str, int] = {}
        self._last_log = 0.0
        self._failing_since: float | None = None
        self._last_outage_log = 0.0

    def listen(self, exchange: Exchange) -> None:
        """The proxy's `on_finished` listener: cheap, synchronous, never raises to the caller."""
        features = exchange.features = exchange_features(exchange, self.salt)
        dropped = self.spool.add(shard_of(features.key_id, self.streams), encode_event(to_fields(features)))
        if dropped:
            self._dropped("spool_full", dropped)
        self._show_depth()
        self._waiting.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def close(self, timeout: float = 2.0) -> None:
        """Stop the flush task, then append whatever the spool holds (bounded by `timeout`);
        what is left goes to the disk spool if there is one, else it is dropped."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                while not self.drained:
                    if not await self._step():
                        await asyncio.sleep(RETRY_MIN_SECONDS)
        except TimeoutError:
            if self.disk is None:
                self._dropped("shutdown", len(self.spool))
        if self.disk is not None:
            await asyncio.to_thread(self._keep_on_disk)
            self._show_depth()

    def _keep_on_disk(self) -> None:
        """At stop: the batches being sent, with their numbers, before every segment; then the rest."""
        numbered: dict[str, list] = {}  # producer -> its numbered events
        for shard, batch in self.spool.take_sending():
            numbered.setdefault(batch.producer or self.producer, []).extend(
                (shard, batch.seq, event) for event in batch.events)
        for producer, events in numbered.items():
            self._write_disk(events, producer=producer, first=True)
        self._write_disk([(shard, 0, event) for shard, event in self.spool.take_waiting()])
        self.disk.close()

    @property
    def drained(self) -> bool:
        return self.spool.idle and (self.disk is None or self.disk.empty)

    async def _flush_forever(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            await self._adopt()
            while not self.drained:
                await self._adopt()
                if await self._step():
                    delay = RETRY_MIN_SECONDS
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
            try:
                async with asyncio.timeout(ADOPT_EVERY_SECONDS if self.disk is not None else None):
                    await self._waiting.wait()
            except TimeoutError:
                pass
            self._waiting.clear()

    async def _step(self) -> bool:
        """One round trip. With segments on disk, the oldest is sent once nothing else is being
        sent, and newer events wait in memory behind them; after a failure they join the disk's tail."""
        if self.disk is not None and not self.disk.empty and not self.spool.sending:
            segment = await asyncio.to_thread(self.disk.oldest)
            if segment is not None:
                self.spool.load(segment.events, segment.producer)
        if await self.flush(fill=self.disk is None or self.disk.empty):
            return True
        if self.disk is not None:
            await self._spill()
        return False

    async def _spill(self) -> None:
        """What waits in memory goes to the tail of the disk spool."""
        waiting = self.spool.take_waiting()
        if waiting:
            await asyncio.to_thread(self._write_disk, [(shard, 0, event) for shard, event in waiting])
            self._show_depth()

    def _write_disk(self, events: list, producer: str | None = None, first: bool = False) -> None:
        try:
            dropped = self.disk.write(events, producer, first)
        except OSError as exc:
            self._dropped("disk_failed", len(events), exc)
        else:
            self._dropped("disk_full", dropped)

    async def _adopt(self) -> None:
        """The segments of workers that stopped, every `ADOPT_EVERY_SECONDS` (at start first)."""
        if self.disk is None or time.monotonic() - self._adopted_at < ADOPT_EVERY_SECONDS:
            return
        self._adopted_at = time.monotonic()
        try:
            adopted, dropped = await asyncio.to_thread(self.disk.adopt)
        except OSError as exc:
            log.warning("could not adopt the disk spool's segments (%s: %s)", type(exc).__name__, exc)
            return
        self._dropped("disk_full", dropped)
        if adopted:
            log.warning("adopted %d detection events from the disk spool of a stopped worker", adopted)
            self._show_depth()

    async def flush(self, fill: bool = True) -> bool:
        """Send each shard's oldest batch in one round trip; False when Redis did not take them all.
        Without `fill`, only the batches being sent already."""
        batches = self.spool.batches(fill)
        if not batches:
            return True
        script = self.store.scripts["events_append"]
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(2):
                    async with self.store.client.pipeline(transaction=False) as pipe:
                        for shard, batch in batches.items():
                            keys = [event_stream(shard), _producer_key(shard, batch, self.producer)]
                            queue_evalsha(pipe, script.sha, keys, _script_args(batch, self.maxlen))
                        results = await pipe.execute(raise_on_error=False)
                    if not any(isinstance(result, NoScriptError) for result in results):
                        break
                    await self.store.load_scripts()  # Redis restarted and forgot the scripts
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return False
        failure: Exception | None = None
        for shard, result in zip(batches, results):
            if isinstance(result, PASSING_ERRORS + (NoScriptError,)):
                failure = result
            elif isinstance(result, Exception):
                self._dropped("redis_refused", self.spool.sent(shard), result)
            else:  # appended now, or (0) by an earlier call whose reply was lost
                metrics.EVENTS_APPENDED.inc(self.spool.sent(shard))
        self._show_depth()
        if failure is not None:
            self._failed(failure)
            return False
        self._recovered()
        return True

    def _show_depth(self) -> None:
        on_disk = self.disk.events if self.disk is not None else 0
        metrics.EVENTS_SPOOLED.set(self.spool.events + on_disk)
        metrics.EVENTS_SPOOLED_BYTES.set(self.spool.bytes)
        if self.disk is not None:
            metrics.EVENTS_SPOOLED_DISK_BYTES.set(self.disk.bytes)

    def _failed(self, exc: Exception) -> None:
        """Count the failed call; log when appends start failing, then every `LOG_EVERY_SECONDS`."""
        metrics.REDIS_ERRORS.labels("events").inc()
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._last_outage_log < LOG_EVERY_SECONDS:
            return
        self._last_outage_log = now
        log.warning("appending detection events failed (%s: %s); %d events (%d bytes) held in the spool, retrying",
                    type(exc).__name__, exc, self.spool.events, self.spool.bytes)

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning("detection events appended again after %.1fs of failures; spool holds %d",
                        time.monotonic() - self._failing_since, self.spool.events)
            self._failing_since = None

    def _dropped(self, reason: str, count: int, exc: Exception | None = None) -> None:
        """Count every drop; log at most once per `LOG_EVERY_SECONDS` with the totals since."""
        if count <= 0:
            return
        metrics.EVENTS_DROPPED.labels(reason).inc(count)
        self._unlogged[reason] = self._unlogged.get(reason, 0) + count
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            totals = ", ".join(f"{n} ({why})" for why, n in sorted(self._unlogged.items()))
            detail = f"; last error {type(exc).__name__}: {exc}" if exc else ""
            log.warning("detection events dropped: %s%s", totals, detail)
            self._unlogged.clear()
