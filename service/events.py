"""Finished requests -> their features -> Redis Streams, off the client's path.

The proxy calls `EventSink.listen` after each request is answered; it computes the
features (hashes only: never the raw key or prompt text) and queues them. One background
task drains the queue and appends whole batches in one pipelined round trip. Detection is
best effort by design: a full queue or a Redis error drops events, counts them and logs,
and never touches a client's request.

Events are sharded by key_id over `detection.streams` streams, each with its own hash tag
(`dg:{events:N}`): a Redis Cluster spreads the shards over its masters, and one key's
events stay in order in one stream, which the scorer relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

from redis.exceptions import RedisError

from detectors.features import RequestFeatures, request_features, to_fields

from . import metrics
from .config import Settings
from .proxy import Exchange
from .store import Store, event_stream

log = logging.getLogger("distillguard.events")

QUEUE_SIZE = 10_000
BATCH = 500
LOG_EVERY_SECONDS = 10.0


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


class EventSink:
    """A bounded queue of feature records and the task that appends them to the streams."""

    def __init__(self, store: Store, settings: Settings, salt: bytes) -> None:
        self.client = store.client
        self.streams = settings.detection.streams
        self.maxlen = settings.detection.stream_maxlen
        self.timeout = max(settings.redis_timeout, 1.0)
        self.salt = salt
        self.queue: asyncio.Queue[tuple[int, dict[str, str]]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task | None = None
        self._unlogged: dict[str, int] = {}
        self._last_log = 0.0

    def listen(self, exchange: Exchange) -> None:
        """The proxy's `on_finished` listener: cheap, synchronous, never raises to the caller."""
        features = exchange.features = exchange_features(exchange, self.salt)
        try:
            self.queue.put_nowait((shard_of(features.key_id, self.streams), to_fields(features)))
        except asyncio.QueueFull:
            self._dropped("queue_full", 1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain_forever())

    async def close(self, timeout: float = 2.0) -> None:
        """Stop the drain task, then append whatever is still queued (bounded by `timeout`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                while not self.queue.empty():
                    await self._append(self._take_batch([]))
        except TimeoutError:
            self._dropped("shutdown", self.queue.qsize())

    async def _drain_forever(self) -> None:
        while True:
            first = await self.queue.get()
            await self._append(self._take_batch([first]))

    def _take_batch(self, batch: list) -> list:
        while len(batch) < BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _append(self, batch: list[tuple[int, dict[str, str]]]) -> None:
        if not batch:
            return
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.pipeline(transaction=False) as pipe:
                    for shard, fields in batch:
                        pipe.xadd(event_stream(shard), fields, maxlen=self.maxlen, approximate=True)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.REDIS_ERRORS.labels("events").inc()
            self._dropped("redis_error", len(batch), exc)
            return
        metrics.EVENTS_APPENDED.inc(len(batch))

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
