"""The flag queue: flagged keys filtered, sorted and paged for the console's first page.

The flag index (`dg:flags`, scored by first flag time) answers the time range itself; the
other filters run in Python over at most `SCAN_LIMIT` records of that range, newest first,
fetched in one pipelined round trip. Secondary indexes per action, detector, reason and
cluster would have to be kept in step with every rewrite of a flag record by the scorer
(and expire with it) for a page a few people open now and then; a bounded scan is simpler
and costs ~10k GETs at worst. When the range holds more, the page says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from detectors.ladder import LEVELS

from ..store import FLAG_INDEX, flag_key

SCAN_LIMIT = 10_000
PAGE_SIZE = 50
SORTS = ("score", "recent")
DETECTORS = ("rules", "iforest", "linkage")
ACTIONS = tuple(level for level in LEVELS if level != "none") + ("cleared",)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float) -> float | None:
    """`24h`-style durations back from now, or an ISO date/time (UTC unless it says otherwise);
    None for empty or unreadable input (the filter is then simply off)."""
    text = (text or "").strip()
    if not text:
        return None
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z itself
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class QueueQuery:
    """What the queue's filter form asks for; every field is optional."""

    sort: str = "score"
    action: str = ""
    detector: str = ""
    reason: str = ""
    cluster: str = ""
    since: str = ""
    until: str = ""
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> QueueQuery:
        """Unknown choices fall back to "no filter" rather than failing the page."""
        sort = params.get("sort", "score")
        action = params.get("action", "")
        detector = params.get("detector", "")
        try:
            page = max(int(params.get("page", "1")), 1)
        except ValueError:
            page = 1
        return cls(
            sort=sort if sort in SORTS else "score",
            action=action if action in ACTIONS else "",
            detector=detector if detector in DETECTORS else "",
            reason=params.get("reason", "").strip()[:100],
            cluster=params.get("cluster", "").strip()[:40],
            since=params.get("since", "").strip()[:40],
            until=params.get("until", "").strip()[:40],
            page=page,
        )

    def matches(self, flag: dict) -> bool:
        if self.action:
            shown = "cleared" if flag.get("status") == "cleared" else flag.get("action")
            if shown != self.action:
                return False
        if self.detector and flag.get("detector") != self.detector:
            return False
        if self.reason and self.reason not in reason_names(flag):
            return False
        return not self.cluster or flag.get("cluster_id") == self.cluster

    def params(self, **changes) -> dict[str, str]:
        """The query string of this query (with `changes`), leaving out what is default."""
        query = replace(self, **changes)
        defaults = QueueQuery()
        return {name: str(getattr(query, name)) for name in self.__dataclass_fields__
                if getattr(query, name) != getattr(defaults, name)}


@dataclass
class QueuePage:
    flags: list[dict]
    total: int  # matching flags in the scanned range
    page: int
    pages: int
    scanned: int
    truncated: bool  # the time range held more than SCAN_LIMIT flags: older ones were not read
    reasons_seen: list[str] = field(default_factory=list)


def reason_names(flag: dict) -> list[str]:
    return [reason.get("name", "") for reason in flag.get("reasons") or []]


def sort_key(sort: str):
    if sort == "recent":
        return lambda flag: -(flag.get("first_flagged_at") or 0.0)
    return lambda flag: (-(flag.get("score") or 0.0), -(flag.get("first_flagged_at") or 0.0))


async def flag_queue(client, query: QueueQuery, now: float | None = None) -> QueuePage:
    """One page of the queue for `query`."""
    now = time.time() if now is None else now
    since, until = parse_time(query.since, now), parse_time(query.until, now)
    key_ids = await client.zrevrangebyscore(
        FLAG_INDEX, "+inf" if until is None else until, "-inf" if since is None else since, start=0, num=SCAN_LIMIT
    )
    flags: list[dict] = []
    if key_ids:
        async with client.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.get(flag_key(key_id.decode() if isinstance(key_id, bytes) else key_id))
            flags = [json.loads(raw) for raw in await pipe.execute() if raw]
    reasons_seen = sorted({name for flag in flags for name in reason_names(flag) if name})
    matching = sorted((flag for flag in flags if query.matches(flag)), key=sort_key(query.sort))
    pages = max((len(matching) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(query.page, pages)
    shown = matching[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    return QueuePage(shown, len(matching), page, pages, len(key_ids), len(key_ids) >= SCAN_LIMIT, reasons_seen)
