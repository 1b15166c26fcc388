"""Each key's requests and tokens per minute over the last day, for the review console's chart.

The scorer counts every event it counts in a window here too, and writes the counts after
its checkpoint was accepted (a refused, stale checkpoint adds nothing, so a minute is never
counted twice; a crash between the two loses at most one commit's seconds). One hash per
key and hour (`dg:{key_id}:activity:<unix hour>`, fields `<unix minute>:r` and `:t`) that
expires a day after its hour: bounded without trimming, and Redis 7.0 has no per-field expiry.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from detectors.features import RequestFeatures

from ..store import activity_key

HOURS_KEPT = 24


@dataclass(frozen=True, slots=True)
class Minute:
    start: float  # Unix seconds
    requests: int
    tokens: int


class ActivityCounts:
    """Per key, per minute: requests and tokens counted since the last write."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))

    def add(self, event: RequestFeatures) -> None:
        bucket = self.counts[event.key_id][int(event.ts // 60)]
        bucket[0] += 1
        bucket[1] += max(event.prompt_tokens, 0) + max(event.completion_tokens, 0)

    def queue_writes(self, pipe, key_ids) -> None:
        """Adds the counts of `key_ids` (those whose checkpoint was written) to a pipeline."""
        for key_id in key_ids:
            hours: set[int] = set()
            for minute, (requests, tokens) in self.counts.get(key_id, {}).items():
                hour = minute // 60
                hours.add(hour)
                pipe.hincrby(activity_key(key_id, hour), f"{minute}:r", requests)
                pipe.hincrby(activity_key(key_id, hour), f"{minute}:t", tokens)
            for hour in hours:
                pipe.expireat(activity_key(key_id, hour), (hour + 1 + HOURS_KEPT) * 3600)  # past: gone at once

    def clear(self) -> None:
        self.counts.clear()


async def read_activity(client, key_id: str, now: float | None = None) -> list[Minute]:
    """The key's minutes with any activity in the last `HOURS_KEPT` hours, oldest first."""
    now = time.time() if now is None else now
    last_hour = int(now // 3600)
    hours = range(last_hour - HOURS_KEPT, last_hour + 1)
    async with client.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hgetall(activity_key(key_id, hour))
        replies = await pipe.execute()
    minutes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for reply in replies:
        for field, value in reply.items():
            field = field.decode() if isinstance(field, bytes) else field
            minute, _, kind = field.partition(":")
            minutes[int(minute)][0 if kind == "r" else 1] += int(value)
    cutoff = (now - HOURS_KEPT * 3600) // 60
    return [Minute(minute * 60.0, requests, tokens)
            for minute, (requests, tokens) in sorted(minutes.items()) if minute >= cutoff]
