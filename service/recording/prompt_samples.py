"""A few recent prompts per key for the review console, kept only when recording keeps
prompts (`recording.bodies: full`): a reviewer judging a flag wants to read what was asked.

Like the event sink, the request path only queues: a background task writes batches in
one pipelined round trip (LPUSH, LTRIM to `SAMPLES_KEPT`, EXPIRE per key). A full queue or
a Redis error drops samples, counted in `distillguard_prompt_samples_dropped_total{reason}`
and logged; a client never waits for them. They are not spooled through an outage: they
are a reviewer's recent examples, and the next requests after Redis returns refill them. Each sample is the
newest user turn, cut to `SAMPLE_CHARS`: bounded memory, never the API key or headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from redis.exceptions import RedisError

from detectors.features import last_user_text

from .. import metrics
from ..proxy import Exchange
from ..store import Store, prompt_samples_key

log = logging.getLogger("distillguard.prompt_samples")

SAMPLES_KEPT = 10
SAMPLE_CHARS = 4000
SAMPLES_TTL_SECONDS = 7 * 86400
QUEUE_SIZE = 1000
BATCH = 200
LOG_EVERY_SECONDS = 10.0


class PromptSamples:
    """The proxy listener that queues samples, and the task that stores them."""

    def __init__(self, store: Store, timeout: float) -> None:
        self.client = store.client
        self.timeout = max(timeout, 1.0)
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task | None = None
        self._last_log = 0.0

    def listen(self, exchange: Exchange) -> None:
        """The proxy's `on_finished` listener: cheap, synchronous, never raises."""
        try:
            if not exchange.key_id or not isinstance(exchange.request, dict):
                return
            text = last_user_text(exchange.request)
            if not text:
                return
            sample = {"ts": exchange.received_at, "path": exchange.path, "status": exchange.status,
                      "text": text[:SAMPLE_CHARS], "chars": len(text)}
            self.queue.put_nowait((exchange.key_id, json.dumps(sample, separators=(",", ":"))))
        except asyncio.QueueFull:
            metrics.PROMPT_SAMPLES_DROPPED.labels("queue_full").inc()
            self._complain("queue full")
        except Exception:
            log.exception("prompt samples: listener failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not self.queue.empty():
            await self._store(self._take([]))

    async def _drain_forever(self) -> None:
        while True:
            await self._store(self._take([await self.queue.get()]))

    def _take(self, batch: list) -> list:
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _store(self, batch: list[tuple[str, str]]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.pipeline(transaction=False) as pipe:
                    for key_id in dict.fromkeys(key_id for key_id, _ in batch):
                        name = prompt_samples_key(key_id)
                        pipe.lpush(name, *[sample for owner, sample in batch if owner == key_id])
                        pipe.ltrim(name, 0, SAMPLES_KEPT - 1)
                        pipe.expire(name, SAMPLES_TTL_SECONDS)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.REDIS_ERRORS.labels("prompt_samples").inc()
            metrics.PROMPT_SAMPLES_DROPPED.labels("redis_error").inc(len(batch))
            self._complain(f"{type(exc).__name__}: {exc}")

    def _complain(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            log.warning("prompt samples for the review console dropped (%s)", why)


async def read_samples(client, key_id: str) -> list[dict]:
    """The key's recent prompt samples, newest first."""
    return [json.loads(raw) for raw in await client.lrange(prompt_samples_key(key_id), 0, SAMPLES_KEPT - 1)]
