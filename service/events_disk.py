"""The events spool's overflow on local disk (`detection.spool.disk`, off by default): while
Redis fails, a worker writes the events it holds to segment files, so a gateway restarted
during an outage hands them to the next one; when Redis answers they go first, oldest first.

A segment is one file of at most `SEGMENT_EVENTS` events, named `<order>-<owner>-<count>.seg`
(order: nanoseconds, so names sort oldest first), written under a temporary name and renamed:
no reader sees half a file. Its first line is the producer whose batch numbers its events
carry, or `-`; then one `shard seq event` line per event (seq 0: not numbered yet).

Each worker owns the segments named with its producer id and holds `<producer>.lock` (flock)
while it lives. Segments whose owner's lock is free (the owner stopped or was killed) are
adopted, renamed to the adopter, by the first worker that looks; a rename happens once, so
two workers never both take one. Bounded per worker by `max_bytes`: past it the oldest owned
segments are deleted and their events returned as dropped. Synchronous file I/O: the event
sink calls it from a thread, never on the event loop.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".seg"
SEGMENT_EVENTS = 1000  # one round trip of the sink (events.ROUND_TRIP_EVENTS)
UNNUMBERED = "-"

# (shard, batch number or 0, event)
DiskEvent = tuple[int, int, str]


@dataclass(frozen=True)
class Segment:
    path: Path
    producer: str | None  # whose batch numbers the numbered events carry
    events: list[DiskEvent]


@dataclass(frozen=True)
class _Name:
    order: int
    owner: str
    count: int

    @classmethod
    def parse(cls, path: Path) -> _Name | None:
        parts = path.name[:-len(SUFFIX)].split("-")
        if not path.name.endswith(SUFFIX) or len(parts) != 3 or not (parts[0].isdigit() and parts[2].isdigit()):
            return None
        return cls(int(parts[0]), parts[1], int(parts[2]))

    def file(self) -> str:
        return f"{self.order:020d}-{self.owner}-{self.count}{SUFFIX}"


class DiskSpool:
    """One worker's segments in `directory`, at most `max_bytes` of them."""

    def __init__(self, directory: str | Path, producer: str, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.producer = producer
        self.max_bytes = max_bytes
        self._lock = open(self._lock_path(producer), "a")  # noqa: SIM115  (held for the worker's life)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._owned: dict[Path, tuple[int, int]] = {}  # path -> (bytes, events), oldest first
        self._last_order = 0
        self.events = 0  # in owned segments
        self.bytes = 0
        # A write cut short by a cancelled caller still runs to its end in its thread.
        self._mutex = threading.Lock()

    @property
    def empty(self) -> bool:
        return not self._owned

    def write(self, events: list[DiskEvent], producer: str | None = None, first: bool = False) -> int:
        """Appends `events` (oldest first) as segments after every owned one, or before all
        of them with `first`; returns how many events the bound dropped."""
        if not events:
            return 0
        with self._mutex:
            return self._write(events, producer, first)

    def _write(self, events: list[DiskEvent], producer: str | None, first: bool) -> int:
        # Numbered events stay in one segment: a batch split in two would be two batches under
        # one number, and the second would be taken for a repeat of the first.
        chunks = [events] if producer else [events[i:i + SEGMENT_EVENTS] for i in range(0, len(events), SEGMENT_EVENTS)]
        if first and self._owned:
            start = min(_Name.parse(path).order for path in self._owned) - len(chunks)
        else:
            start = max(time.time_ns(), self._last_order + 1)
        for number, chunk in enumerate(chunks):
            order = start + number
            self._last_order = max(self._last_order, order)
            name = _Name(order, self.producer, len(chunk))
            text = "".join([f"{producer or UNNUMBERED}\n", *(f"{shard} {seq} {event}\n" for shard, seq, event in chunk)])
            path = self.directory / name.file()
            temporary = path.with_suffix(".tmp")
            with open(temporary, "w", encoding="ascii") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temporary, path)
            self._own(path, len(text), len(chunk))
        return self._trim()

    def adopt(self) -> tuple[int, int]:
        """Takes the segments of owners that no longer hold their lock; returns the events
        adopted, and those the bound then dropped."""
        with self._mutex:
            adopted = self._adopt()
            return adopted, self._trim()

    def _adopt(self) -> int:
        adopted = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            name = _Name.parse(path)
            if name is None or name.owner == self.producer or not self._orphaned(name.owner):
                continue
            mine = self.directory / _Name(name.order, self.producer, name.count).file()
            try:
                os.rename(path, mine)
            except FileNotFoundError:  # another worker took it first
                continue
            self._own(mine, mine.stat().st_size, name.count)
            adopted += name.count
        return adopted

    def oldest(self) -> Segment | None:
        """The oldest owned segment, read whole and deleted: its events are the caller's now."""
        with self._mutex:
            if not self._owned:
                return None
            path = next(iter(self._owned))
            self._disown(path)
            segment = self.read(path)
            os.unlink(path)
        return segment

    @staticmethod
    def read(path: Path) -> Segment:
        lines = path.read_text(encoding="ascii").splitlines()
        events = []
        for line in lines[1:]:
            shard, seq, event = line.split(" ", 2)
            events.append((int(shard), int(seq), event))
        return Segment(path, None if lines[0] == UNNUMBERED else lines[0], events)

    def close(self) -> None:
        """Releases the lock: what is left is adopted by the next worker that looks."""
        with self._mutex:
            self._lock_path(self.producer).unlink(missing_ok=True)
            self._lock.close()

    def _own(self, path: Path, size: int, count: int) -> None:
        self._owned[path] = (size, count)
        self._owned = dict(sorted(self._owned.items(), key=lambda item: item[0].name))
        self.events += count
        self.bytes += size

    def _disown(self, path: Path) -> int:
        size, count = self._owned.pop(path)
        self.events -= count
        self.bytes -= size
        return count

    def _trim(self) -> int:
        """Past the bound, the oldest segments go; returns their events."""
        dropped = 0
        while self._owned and self.bytes > self.max_bytes:
            path = next(iter(self._owned))
            dropped += self._disown(path)
            path.unlink(missing_ok=True)
        return dropped

    def _lock_path(self, owner: str) -> Path:
        return self.directory / f"{owner}.lock"

    def _orphaned(self, owner: str) -> bool:
        """Whether `owner` stopped: its lock file is gone, or nobody holds the lock."""
        try:
            with open(self._lock_path(owner), "r+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                self._lock_path(owner).unlink(missing_ok=True)  # ids are never reused
                return True
        except FileNotFoundError:
            return True
