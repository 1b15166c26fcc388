"""Recording: every finished request appended to a traffic file (docs/recording.md).

The request path pays for a tuple and a heap push: `listen` keeps what the line needs and
returns. Lines must be in arrival (`ts`) order but requests finish in any order, so a
finished request waits until every request that arrived before it has been heard of (the
`watch` wrapper knows which are still running), for at most `reorder_window`. The writer
thread (files.py) then writes the lines; a full disk never reaches a client.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import math
import time
from collections import deque
from pathlib import Path

from ..config import RecordingConfig
from ..keys import state_dir
from ..proxy import Exchange
from .files import Complaints, TrafficFiles
from .lines import Finished

log = logging.getLogger("distillguard.recording")

TICK_SECONDS = 0.2  # how often finished requests whose turn has come go to the writer
_REQUEST = contextvars.ContextVar("distillguard_recording_request")


def recording_directory(config: RecordingConfig) -> Path:
    return Path(config.directory) if config.directory else state_dir() / "recordings"


class Recorder:
    """The event-loop side: hears finished requests, holds each until its turn, hands
    batches to the writer thread."""

    def __init__(self, config: RecordingConfig, settle_seconds: float = 2.0) -> None:
        """`settle_seconds`: how long after its response a request may still be heard of
        (accounting runs first); a request never heard of stops holding others back then."""
        self.config = config
        self.directory = recording_directory(config)
        self.files = TrafficFiles(config, self.directory)
        self.keeps_request = config.bodies != "none"
        self.complaints = Complaints()
        self._waiting: list[Finished] = []  # a heap, by (ts, seq)
        self._waiting_bytes = 0
        self._handed = 0
        self._handed_bytes = 0
        self._seq = itertools.count()
        self._running: dict[int, float] = {}  # request token -> arrival (Unix seconds)
        self._departed: deque[tuple[float, int]] = deque()
        self._settle_seconds = settle_seconds
        self._task: asyncio.Task | None = None

    def watch(self, app):
        """Wraps the `/v1/` ASGI app: notes each request's arrival, so that requests which
        finish sooner wait for it and lines stay in `ts` order."""
        running, departed, tokens, settle = self._running, self._departed, itertools.count(), self._settle_seconds

        async def watched(scope, receive, send) -> None:
            token = next(tokens)
            running[token] = time.time()
            _REQUEST.set(token)
            try:
                await app(scope, receive, send)
            finally:
                departed.append((time.monotonic() + settle, token))

        return watched

    def listen(self, exchange: Exchange) -> None:
        """The proxy's `on_finished` listener: cheap, synchronous, never raises."""
        try:
            self._running.pop(_REQUEST.get(None), None)
            request = exchange.request if self.keeps_request else None
            size = len(exchange.body) if request is not None else 0
            held = len(self._waiting) + self._handed - self.files.taken
            held_bytes = self._waiting_bytes + self._handed_bytes - self.files.taken_bytes
            if held >= self.config.queue_size or held_bytes + size > self.config.queue_bytes:
                self.complaints.dropped("queue_full", 1)
                return
            usage = exchange.usage
            heapq.heappush(self._waiting, Finished(
                exchange.received_at, next(self._seq), exchange.key_id, exchange.client_ip, exchange.method,
                exchange.path, exchange.headers, request, exchange.strip_usage, exchange.status,
                max(exchange.finished - exchange.started, 0.0) * 1000,
                (max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0)) if usage else None, size,
                exchange.features if self.config.bodies == "features" else None,
            ))
            self._waiting_bytes += size
        except Exception:
            log.exception("recording: listener failed")

    def start(self) -> None:
        log.info("recording traffic to %s (bodies: %s)", self.directory, self.config.bodies)
        self.files.start()
        self._task = asyncio.create_task(self._release_forever())

    async def close(self, timeout: float = 5.0) -> None:
        """Hands over every waiting request and waits for the writer to close its file."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._release(everything=True)
        await self.files.stop(timeout)

    async def _release_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._release()

    def _release(self, everything: bool = False) -> None:
        """Hands the writer, in `ts` order, every waiting request that arrived before all
        requests still running, or has waited out the reorder window, or would overfill."""
        now = time.monotonic()
        departed, running = self._departed, self._running
        while departed and departed[0][0] <= now:
            running.pop(departed.popleft()[1], None)
        turn = math.inf if everything else min(running.values(), default=math.inf)
        overdue = time.time() - self.config.reorder_window
        crowd = self.config.queue_size // 2
        waiting, ready = self._waiting, []
        while waiting and (waiting[0].ts <= turn or waiting[0].ts < overdue or len(waiting) > crowd):
            ready.append(heapq.heappop(waiting))
        if ready:
            size = sum(finished.size for finished in ready)
            self._waiting_bytes -= size
            self._handed += len(ready)
            self._handed_bytes += size
            self.files.inbox.put(ready)
