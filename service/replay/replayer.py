"""`distillguard replay`: sends a traffic file's requests to a running gateway, on the
file's schedule (recorded gaps divided by `speed`) or as fast as it goes.

How it keeps its promises:
- Order per key: a key's next request is sent only after its previous one has finished,
  so the gateway sees each key's requests in file order, as one client would send them.
- Bounded concurrency: `concurrency` workers, each with one request in flight, take keys
  whose next request is due from one ready queue; the connection pool has as many slots.
- Flat memory: the file is read as a stream and the reader stops while `read_ahead`
  records wait to be answered (and, on a schedule, while the next record is more than
  `HORIZON_S` in the future). Per-key state is kept only for keys with work waiting;
  each key's report row (a few numbers) stays to the end. Latency goes to fixed-size
  histograms (see report.py).

Keys: a line with a raw `key` is sent with it. A recorded line has only a key_id (the raw
key was never stored), so it is sent as `sk-replay-<key_id>`; the gateway then knows it by
another key_id, HMAC(secret, that key), which the report names when the secret is known
(without it, raw keys are named by an unsalted placeholder id and gateway key_ids are unknown).
The client address cannot be replayed: the gateway sees this machine's address, since it
takes the socket's address and ignores X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from traffic.format import TrafficRecord, read_traffic

from ..keys import KeyHasher
from .report import (
    DetectionOptions,
    KeyRow,
    ReplayStats,
    format_report,
    read_detection,
    replay_report,
    show_progress,
)

SYNTHETIC_KEY_PREFIX = "sk-replay-"
HORIZON_S = 2.0  # on a schedule, read no further ahead than this
NOT_SENT = frozenset({"authorization", "x-api-key", "api-key", "host", "content-length", "connection",
                      "transfer-encoding", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"})
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class ReplayOptions:
    target: str  # the gateway's root URL; a trailing /v1 is tolerated
    speed: float | None = 1.0  # recorded gaps are divided by this; None sends as fast as possible
    concurrency: int = 64
    read_ahead: int = 10_000
    timeout_s: float = 120.0  # per request, to the end of its body
    grace_s: float = 5.0  # after Ctrl-C, how long requests in flight may finish
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    key_secret: bytes | None = None  # the gateway's; names keys as the gateway does
    shard: tuple[int, int] | None = None  # (i, n): only keys whose key_id hashes to i of n

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.read_ahead < 1:
            raise ValueError("--concurrency and --read-ahead must be at least 1")


def parse_speed(text: str) -> float | None:
    """`max` or a positive factor (`1`, `10`, `0.5`)."""
    if text.strip().lower() == "max":
        return None
    speed = float(text)
    if not speed > 0:
        raise ValueError(f"--speed must be positive or 'max', got {text!r}")
    return speed


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N`: this replayer takes the I-th of N disjoint sets of keys (0 <= I < N)."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard must look like 0/4, got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"--shard {text!r}: need 0 <= I < N")
    return shard


def placeholder_key_id(raw_key: str) -> str:
    """Unsalted id for raw keys when the gateway's secret is not known: names report rows only."""
    return hashlib.sha256(raw_key.encode()).hexdigest()[:16]


class _KeyCatcher:
    """`read_traffic` hashes a raw key before handing out its record; this keeps the raw key
    of the line just read so that it can be sent (it is never stored beyond the key's lane)."""

    def __init__(self, key_id_of: Callable[[str], str]) -> None:
        self.key_id_of = key_id_of
        self.last: str | None = None

    def __call__(self, raw_key: str) -> str:
        self.last = raw_key
        return self.key_id_of(raw_key)

    def take(self) -> str | None:
        raw, self.last = self.last, None
        return raw


class _Lane:
    """A key with requests waiting: they go out one at a time, in file order."""

    __slots__ = ("row", "send_key", "waiting")

    def __init__(self, row: KeyRow, send_key: str) -> None:
        self.row = row
        self.send_key = send_key
        self.waiting: deque[tuple[TrafficRecord, float]] = deque()


class Replayer:
    def __init__(self, path: str, options: ReplayOptions) -> None:
        self.path = path
        self.options = options
        self.stats = ReplayStats()
        self.interrupted_by: int | None = None
        self.error: Exception | None = None
        if options.key_secret is not None:
            self._gateway_key_id = KeyHasher(options.key_secret).key_id
        else:
            self._gateway_key_id = None
        self._catcher = _KeyCatcher(self._gateway_key_id or placeholder_key_id)
        base = options.target.rstrip("/")
        self._base = base[:-3] if base.endswith("/v1") else base
        self._lanes: dict[str, _Lane] = {}
        self._urls: dict[str, URL] = {}
        self._waiting = 0  # records read and not yet answered
        self._in_flight = 0
        self._reading = True
        self._stopping = False
        self._room = asyncio.Event()
        self._done = asyncio.Event()
        self._grace = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.interrupted = asyncio.Event()

    def interrupt(self, signum: int) -> None:
        """First signal: stop reading and let requests in flight finish; second: stop now."""
        if self.interrupted_by is not None:
            self._grace.set()
            return
        self.interrupted_by = signum
        self.interrupted.set()
        self._stop()

    def _stop(self) -> None:
        self._stopping = True
        self._done.set()

    async def run(self) -> ReplayStats:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ready: asyncio.Queue[_Lane] = asyncio.Queue()
        connector = aiohttp.TCPConnector(limit=self.options.concurrency, limit_per_host=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        # No cookie jar: a cookie one key's answer set must not ride along with another key's requests.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                         cookie_jar=aiohttp.DummyCookieJar(),
                                         skip_auto_headers=("User-Agent", "Accept-Encoding")) as session:
            workers = [asyncio.create_task(self._work(session)) for _ in range(self.options.concurrency)]
            reader = asyncio.create_task(self._read())
            progress = asyncio.create_task(show_progress(self.stats, self.options.progress))
            try:
                await self._done.wait()
                reader.cancel()
                if self._in_flight:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._until_idle(), self.options.grace_s)
            finally:
                for task in (reader, progress, *workers):
                    task.cancel()
                await asyncio.gather(reader, progress, *workers, return_exceptions=True)
        self.stats.finished = self.stats.finished or loop.time()
        return self.stats

    async def _until_idle(self) -> None:
        grace = asyncio.ensure_future(self._grace.wait())
        idle = asyncio.ensure_future(self._idle.wait())
        await asyncio.wait((grace, idle), return_when=asyncio.FIRST_COMPLETED)
        grace.cancel()
        idle.cancel()

    async def _read(self) -> None:
        """Streams the file into the keys' lanes, holding back while enough waits."""
        loop, speed, stats = self._loop, self.options.speed, self.stats
        first_ts = start = None
        read_ahead, shard = self.options.read_ahead, self.options.shard
        try:
            for record in read_traffic(self.path, self._catcher):
                raw_key = self._catcher.take()
                now = loop.time()
                if first_ts is None:  # the file's first line, whichever shard it is in
                    first_ts, start = record.ts, now
                    stats.started = now
                if shard is not None and int(record.key_id[:8], 16) % shard[1] != shard[0]:
                    continue
                due = start if speed is None else start + (record.ts - first_ts) / speed
                if due - now > HORIZON_S:
                    await asyncio.sleep(due - now - HORIZON_S)
                while self._waiting >= read_ahead:
                    self._room.clear()
                    await self._room.wait()
                self._add(record, raw_key, due)
                stats.read += 1
                if not stats.read % 64:
                    await asyncio.sleep(0)  # parsing is synchronous: let answers in
        except Exception as error:  # a bad line: stop as on Ctrl-C, report what was sent
            self.error = error
            self._stop()
            return
        self._reading = False
        if self._waiting == 0:
            self._stop()

    def _add(self, record: TrafficRecord, raw_key: str | None, due: float) -> None:
        lane = self._lanes.get(record.key_id)
        if lane is None:
            row = self.stats.keys.get(record.key_id)
            if row is None:
                row = self.stats.keys[record.key_id] = self._new_row(record, raw_key)
            send_key = raw_key or SYNTHETIC_KEY_PREFIX + record.key_id
            lane = self._lanes[record.key_id] = _Lane(row, send_key)
            lane.waiting.append((record, due))
            self._schedule(lane)
        else:
            lane.waiting.append((record, due))
        self._waiting += 1
        if self._waiting > self.stats.most_waiting:
            self.stats.most_waiting = self._waiting

    def _new_row(self, record: TrafficRecord, raw_key: str | None) -> KeyRow:
        gateway_key_id = None
        if self._gateway_key_id is not None:
            gateway_key_id = record.key_id if raw_key else self._gateway_key_id(SYNTHETIC_KEY_PREFIX + record.key_id)
        return KeyRow(record.key_id, gateway_key_id, record.label, record.scenario)

    def _schedule(self, lane: _Lane) -> None:
        due = lane.waiting[0][1]
        if due <= self._loop.time():
            self._ready.put_nowait(lane)
        else:
            self._loop.call_at(due, self._ready.put_nowait, lane)

    async def _work(self, session: aiohttp.ClientSession) -> None:
        while not self._stopping:
            lane = await self._ready.get()
            if self._stopping:
                return
            record, due = lane.waiting.popleft()
            self._in_flight += 1
            self._idle.clear()
            try:
                await self._send(session, lane, record, due)
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()
            self._waiting -= 1
            if lane.waiting:
                self._schedule(lane)
            else:
                del self._lanes[lane.row.key_id]
            if self._waiting < self.options.read_ahead:
                self._room.set()
            if not self._reading and self._waiting == 0:
                self.stats.finished = self._loop.time()
                self._stop()

    async def _send(self, session: aiohttp.ClientSession, lane: _Lane, record: TrafficRecord, due: float) -> None:
        headers = {name: value for name, value in record.headers.items() if name not in NOT_SENT}
        headers["authorization"] = f"Bearer {lane.send_key}"
        body = None
        if record.body is not None:
            body = json.dumps(record.body, ensure_ascii=False, separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        row, loop = lane.row, self._loop
        if row.first_sent_at is None:
            row.first_sent_at = time.time()
        sent = loop.time()  # the schedule's clock (uvloop's ticks in whole milliseconds)
        began = time.perf_counter()  # latency needs a finer clock
        status = error = None
        try:
            async with session.request(record.method, self._url(record.path), data=body, headers=headers,
                                       allow_redirects=False) as response:
                await response.read()
                status = response.status
        except asyncio.TimeoutError:
            error = "timeout"
        except asyncio.CancelledError:
            self.stats.observe(row, record.ts, None, "cancelled", time.perf_counter() - began, sent - due,
                               sent - self.stats.started)
            raise
        except (aiohttp.ClientError, OSError) as exc:
            error = type(exc).__name__
        self.stats.observe(row, record.ts, status, error, time.perf_counter() - began, sent - due,
                           sent - self.stats.started)

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) > 1000:  # paths with ids or queries: do not keep them all
                self._urls.clear()
            url = self._urls[path] = URL(self._base + path, encoded=True)
        return url


async def replay_file(path: str, options: ReplayOptions, detection: DetectionOptions | None = None,
                      install_signals: bool = True) -> tuple[dict, Replayer]:
    """Replays `path` and returns the report (with the labelled comparison when asked).
    A signal while the flags are read skips that part."""
    replayer = Replayer(path, options)
    loop = asyncio.get_running_loop()
    if install_signals:
        for signum in EXIT_INTERRUPTED:
            loop.add_signal_handler(signum, replayer.interrupt, signum)
    try:
        began = time.time()
        stats = await replayer.run()
        report = replay_report(
            stats, file=path, target=options.target, speed="max" if options.speed is None else options.speed,
            concurrency=options.concurrency, shard="/".join(map(str, options.shard)) if options.shard else None,
            interrupted=replayer.interrupted_by is not None,
            error=str(replayer.error) if replayer.error else None,
        )
        if detection is not None and replayer.interrupted_by is None and replayer.error is None and stats.keys:
            report["detection"] = await _unless_interrupted(replayer, read_detection(stats, detection, began))
    finally:
        if install_signals:
            for signum in EXIT_INTERRUPTED:
                loop.remove_signal_handler(signum)
    return report, replayer


async def _unless_interrupted(replayer: Replayer, work) -> dict:
    task = asyncio.ensure_future(work)
    signalled = asyncio.ensure_future(replayer.interrupted.wait())
    await asyncio.wait((task, signalled), return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return {"error": "interrupted while reading the gateway's flags"}


def run_replay(path: str, options: ReplayOptions, report_path: str | None = None,
               detection: DetectionOptions | None = None) -> int:
    """The command: replay, print the table, write the JSON; the exit status."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        report, replayer = runner.run(replay_file(path, options, detection))
    print(format_report(report), flush=True)
    if report_path:
        with open(report_path, "w") as handle:
            json.dump(report, handle, indent=2)
    if replayer.error is not None:
        print(f"distillguard replay: {replayer.error}", file=sys.stderr)
        return 1
    if "error" in report.get("detection", {}) and replayer.interrupted_by is None:
        print(f"distillguard replay: {report['detection']['error']}", file=sys.stderr)
        return 1
    if replayer.interrupted_by is not None:
        return EXIT_INTERRUPTED[replayer.interrupted_by]
    if report["requests_sent"] and not report["statuses"]:
        print(f"distillguard replay: no request got an answer from {options.target}", file=sys.stderr)
        return 1
    return 0
