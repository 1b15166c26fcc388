"""The gateway's buffer of detection events not yet in Redis: per shard, oldest first.

Every finished request's features pass through it. Normally an event stays for one round
trip; while Redis is unreachable events pile up here and leave, in order, when it returns.
Bounded by count and bytes: past either bound the oldest waiting event is dropped (and
returned, so the caller counts it). The batch being sent of each shard is never dropped,
because it may already be in Redis. Plain synchronous data: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

# One event: its fields as a JSON array (name, value, name, value, ...), ASCII only. One
# string per event keeps the spool compact and the append one script argument per event
# (redis-py packs each argument in Python: 60 per event would cost ten times as much).
Event = str


def encode_event(fields: dict[str, str]) -> Event:
    return json.dumps([_valid(item) for pair in fields.items() for item in pair], separators=(",", ":"))


def _valid(text: str) -> str:
    """A lone surrogate (malformed client text that got this far) becomes `?`: Redis's JSON
    decoder refuses one, and the event would make its whole batch fail."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def decode_event(event: Event) -> dict[str, str]:
    items = json.loads(event)
    return dict(zip(items[::2], items[1::2], strict=True))


def event_bytes(event: Event) -> int:
    """What the bound counts: the encoded event's size (the process holds about 1.3x)."""
    return len(event)


@dataclass(slots=True)
class Batch:
    """Events of one shard sent in one script call, under one sequence number.

    A retry sends the very same events under the same number, and the script skips a number
    it has already applied: a call that succeeded but whose reply was lost appends nothing twice.
    """

    seq: int
    events: list[Event]
    size: int
    producer: str | None = None  # whose number `seq` is, when not this process's (a disk segment's)


@dataclass(slots=True)
class _Shard:
    waiting: deque = field(default_factory=deque)  # (arrival number, event, bytes), oldest first
    sending: Batch | None = None
    last_seq: int = 0


class EventSpool:
    """Events waiting for their stream shard, bounded by `max_events` and `max_bytes`."""

    def __init__(self, streams: int, max_events: int, max_bytes: int, batch: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.batch = batch
        self.shards = [_Shard() for _ in range(streams)]
        self.events = 0  # held now, batches being sent included
        self.bytes = 0
        self._arrivals = 0
        self._nonempty: set[int] = set()  # shards with waiting events

    def __len__(self) -> int:
        return self.events

    def add(self, shard: int, event: Event) -> int:
        """Queue one event at its shard's tail; returns how many old events the bound dropped."""
        size = event_bytes(event)
        self._arrivals += 1
        self.shards[shard].waiting.append((self._arrivals, event, size))
        self._nonempty.add(shard)
        self.events += 1
        self.bytes += size
        dropped = 0
        while (self.events > self.max_events or self.bytes > self.max_bytes) and self._nonempty:
            self._drop_oldest()
            dropped += 1
        return dropped

    def _drop_oldest(self) -> None:
        """The oldest waiting event of all shards goes (a scan over the shards that hold some)."""
        shard = min(self._nonempty, key=lambda s: self.shards[s].waiting[0][0])
        waiting = self.shards[shard].waiting
        _, _, size = waiting.popleft()
        if not waiting:
            self._nonempty.discard(shard)
        self.events -= 1
        self.bytes -= size

    def batches(self, fill: bool = True) -> dict[int, Batch]:
        """Each shard's batch to send now: the one that failed before, unchanged, else (with
        `fill`) its oldest waiting events."""
        ready = {}
        for shard in sorted(self._nonempty) if fill else ():
            state = self.shards[shard]
            if state.sending is None:
                events, size = [], 0
                while state.waiting and len(events) < self.batch:
                    _, event, event_size = state.waiting.popleft()
                    events.append(event)
                    size += event_size
                if not state.waiting:
                    self._nonempty.discard(shard)
                state.last_seq += 1
                state.sending = Batch(state.last_seq, events, size)
        for shard, state in enumerate(self.shards):
            if state.sending is not None:
                ready[shard] = state.sending
        return ready

    def sent(self, shard: int) -> int:
        """The shard's batch is in Redis (or was given up): forget it; returns its event count."""
        state = self.shards[shard]
        batch, state.sending = state.sending, None
        if batch is None:
            return 0
        self.events -= len(batch.events)
        self.bytes -= batch.size
        return len(batch.events)

    @property
    def idle(self) -> bool:
        return self.events == 0

    @property
    def sending(self) -> bool:
        return any(state.sending is not None for state in self.shards)

    def take_waiting(self) -> list[tuple[int, Event]]:
        """Every waiting event as (shard, event), oldest first, out of the spool (to disk)."""
        taken = sorted(((arrival, shard, event, size) for shard in self._nonempty
                        for arrival, event, size in self.shards[shard].waiting), key=lambda item: item[0])
        for shard in self._nonempty:
            self.shards[shard].waiting.clear()
        self._nonempty.clear()
        self.events -= len(taken)
        self.bytes -= sum(size for *_, size in taken)
        return [(shard, event) for _, shard, event, _ in taken]

    def take_sending(self) -> list[tuple[int, Batch]]:
        """Every batch being sent, out of the spool (to disk, with its number)."""
        taken = [(shard, state.sending) for shard, state in enumerate(self.shards) if state.sending is not None]
        for shard, batch in taken:
            self.shards[shard].sending = None
            self.events -= len(batch.events)
            self.bytes -= batch.size
        return taken

    def load(self, events: list[tuple[int, int, Event]], producer: str | None) -> None:
        """A disk segment's events, each shard's as the batch it sends next: numbered ones
        under their number and `producer`, the others under this process's next number.
        Only while nothing is being sent, so nothing newer goes before them."""
        by_shard: dict[int, list[tuple[int, Event]]] = {}
        for shard, seq, event in events:
            by_shard.setdefault(shard % len(self.shards), []).append((seq, event))
        for shard, items in by_shard.items():
            state = self.shards[shard]
            assert state.sending is None, "a segment is loaded only while nothing is being sent"
            seq = items[0][0]
            if not seq:
                state.last_seq += 1
            batch_events = [event for _, event in items]
            size = sum(event_bytes(event) for event in batch_events)
            state.sending = Batch(seq or state.last_seq, batch_events, size, producer if seq else None)
            self.events += len(batch_events)
            self.bytes += size
