"""The recording's writer thread: lines appended in chunks to traffic files that rotate by
size, so that no file I/O runs on the event loop.

Every file is valid on its own at any moment: a chunk is appended whole or cut back off,
a file ends before a line that would step back in `ts` further than readers accept, and a
file is `NAME.part` until it is closed. A failed open or write (full disk, unwritable
directory) drops that chunk with a metric and a log line and is retried a second later.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import os
import queue
import threading
import time
from pathlib import Path

from traffic.format import METHODS, TS_TOLERANCE_S

from .. import metrics
from ..config import RecordingConfig
from .lines import Finished, HeaderNames, encode_line, traffic_record

log = logging.getLogger("distillguard.recording")

FLUSH_SECONDS = 1.0  # longest a line waits in memory before reaching the file
CHUNK_BYTES = 1 << 20  # lines are appended (and gzip members made) in chunks of about this
RETRY_SECONDS = 1.0  # after a failed open or write, the next attempt waits this long
LOG_EVERY_SECONDS = 10.0
STOP = object()


class Complaints:
    """Counts every drop and error; logs at most once per `LOG_EVERY_SECONDS` with the totals."""

    def __init__(self) -> None:
        self._unlogged: dict[str, int] = {}
        self._last_log = -math.inf

    def dropped(self, reason: str, count: int, error: Exception | None = None) -> None:
        if count > 0:
            metrics.RECORDING_DROPPED.labels(reason).inc(count)
            self._unlogged[reason] = self._unlogged.get(reason, 0) + count
        self._maybe_log(error)

    def failed(self, error: Exception) -> None:
        metrics.RECORDING_ERRORS.inc()
        self._maybe_log(error)

    def _maybe_log(self, error: Exception | None) -> None:
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY_SECONDS or not (self._unlogged or error):
            return
        self._last_log = now
        totals = ", ".join(f"{n} ({why})" for why, n in sorted(self._unlogged.items())) or "none yet"
        detail = f"; last error {type(error).__name__}: {error}" if error else ""
        log.warning("recording: requests not recorded: %s%s", totals, detail)
        self._unlogged.clear()


class Segment:
    """One traffic file being written: `NAME.part` until closed, then `NAME`. A chunk is
    appended whole or cut back off, so the file always ends at a whole line (plain) or a
    whole gzip member (gzip readers read concatenated members as one stream)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        self.fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = 0

    def append(self, payload: bytes) -> None:
        view, written = memoryview(payload), 0
        try:
            while written < len(view):
                written += os.write(self.fd, view[written:])
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += written

    def close(self) -> None:
        os.close(self.fd)
        if self.size:
            os.rename(self.partial, self.path)
        else:
            os.unlink(self.partial)


class TrafficFiles:
    """The writer thread: records -> lines -> chunks appended to files that rotate by size.

    A file also ends when a line would step back in `ts` further than readers accept (a
    request that ran longer than the reorder window), so every file is valid on its own.
    """

    def __init__(self, config: RecordingConfig, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.suffix = ".jsonl.gz" if config.gzip else ".jsonl"
        self.kept_headers = HeaderNames.of(config.headers)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.taken = 0  # records and request bytes this thread has taken in; only it writes these
        self.taken_bytes = 0
        self.complaints = Complaints()
        self._lines: list[bytes] = []
        self._buffered = 0
        self._latest_ts = -math.inf
        self._segment: Segment | None = None
        self._sequence = 0
        self._next_reason = "start"
        self._retry_at = 0.0
        self._last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="distillguard-recording", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def stop(self, timeout: float) -> None:
        """Write what is queued, close the file; waits in a thread, never on the event loop."""
        self.inbox.put(STOP)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("recording: the writer did not finish within %.0fs; queued requests may be lost", timeout)

    def _run(self) -> None:
        while True:
            try:
                batch = self.inbox.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                batch = None
            try:
                if batch is STOP:
                    self._flush()
                    self._close("stop")
                    return
                if batch:
                    self._add(batch)
                if self._lines and time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                    self._flush()
            except Exception:  # a bug here must not end recording for the life of the process
                log.exception("recording: writer error")

    def _add(self, batch: list[Finished]) -> None:
        for finished in batch:
            self.taken += 1
            self.taken_bytes += finished.size
            if finished.method not in METHODS:
                self.complaints.dropped("unrecordable", 1)
                continue
            try:
                line = encode_line(traffic_record(finished, self.config.bodies, self.kept_headers))
            except (TypeError, ValueError) as exc:
                self.complaints.dropped("unrecordable", 1, exc)
                continue
            if finished.ts < self._latest_ts - TS_TOLERANCE_S:
                self._flush()
                self._close("out_of_order")
            self._latest_ts = max(self._latest_ts, finished.ts)
            self._lines.append(line)
            self._buffered += len(line)
            room = self.config.max_file_bytes - (self._segment.size if self._segment else 0)
            if self._buffered >= min(CHUNK_BYTES, room):
                self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        data, count = b"".join(self._lines), len(self._lines)
        self._lines, self._buffered, self._last_flush = [], 0, time.monotonic()
        payload = gzip.compress(data, compresslevel=6, mtime=0) if self.config.gzip else data
        segment = self._segment or self._open()
        if segment is None:
            self.complaints.dropped("write_error", count)
            return
        try:
            segment.append(payload)
        except OSError as exc:
            self.complaints.failed(exc)
            self.complaints.dropped("write_error", count)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._close("error")
            return
        metrics.RECORDING_RECORDS.inc(count)
        metrics.RECORDING_BYTES.inc(len(payload))
        if segment.size >= self.config.max_file_bytes:
            self._close("size")

    def _open(self) -> Segment | None:
        if time.monotonic() < self._retry_at:
            return None
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"traffic-{stamp}-{os.getpid()}-{self._sequence}{self.suffix}"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._segment = Segment(path)
        except OSError as exc:
            self.complaints.failed(exc)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        metrics.RECORDING_FILES.labels(self._next_reason).inc()
        return self._segment

    def _close(self, reason: str) -> None:
        """Ends the current file; the next line starts a new one, counted under `reason`."""
        self._latest_ts = -math.inf
        segment, self._segment = self._segment, None
        if segment is None:
            return
        self._next_reason = reason
        try:
            segment.close()
        except OSError as exc:
            self.complaints.failed(exc)
            return
        if self.config.keep_files and segment.size:
            self._prune(self.config.keep_files)

    def _prune(self, keep: int) -> None:
        """Deletes the oldest finished files beyond `keep` (of every worker, by modification time)."""
        try:
            finished = [path for path in self.directory.glob("traffic-*.jsonl*") if not path.name.endswith(".part")]
            finished.sort(key=lambda path: (path.stat().st_mtime, path.name))
        except OSError:
            return
        for path in finished[:-keep]:
            try:
                path.unlink()
            except OSError:
                pass
