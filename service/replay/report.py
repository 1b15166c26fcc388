"""What a replay measured, and how it reads: counts, latency, per-key refusals and, for a
labelled file, how the gateway's flags compare with the labels.

Latency is kept in HDR histograms (the HdrHistogram project's Python port): fixed memory
whatever the number of requests, 0.1 % value precision, about a microsecond per record. The
detection part reuses `service.offline.scoring.ScoreReport`, so its numbers and shape are those
of `distillguard score`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
from hdrh.histogram import HdrHistogram

from ..offline.scoring import KeyOutcome, ScoreReport, format_summary

LATENCY_RANGE_US = (1, 3_600_000_000)  # 1 µs to 1 h
FLAGS_PAGE = 10_000  # the admin API's largest `limit`
SCORED_SAMPLE = 10  # keys whose scoring is awaited before the flags are read
KEYS_SHOWN = 20
PROGRESS_INTERVAL_S = 0.5
CLOCK_TOLERANCE_S = 1.0


def new_histogram() -> HdrHistogram:
    return HdrHistogram(*LATENCY_RANGE_US, 3)


def _ms(histogram: HdrHistogram, percentile: float) -> float | None:
    if not histogram.get_total_count():
        return None
    return round(histogram.get_value_at_percentile(percentile) / 1000, 2)


@dataclass(slots=True)
class KeyRow:
    """One key of the file: what was sent for it and when the gateway first refused it."""

    key_id: str  # as in the file (raw keys hashed as the reader was told)
    gateway_key_id: str | None  # what the gateway calls the key sent; None without the secret
    label: str | None
    scenario: str | None
    sent: int = 0
    first_sent_at: float | None = None  # Unix seconds, this machine's clock
    first_429: dict | None = None
    first_403: dict | None = None

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class ReplayStats:
    """Everything counted while replaying; memory grows with the file's keys, not its lines."""

    latency: HdrHistogram = field(default_factory=new_histogram)  # end to end, µs
    lag: HdrHistogram = field(default_factory=new_histogram)  # sent after its scheduled time, µs
    recent: HdrHistogram = field(default_factory=new_histogram)  # since the progress bar last looked
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    keys: dict[str, KeyRow] = field(default_factory=dict)
    sent: int = 0
    read: int = 0
    most_waiting: int = 0  # largest number of records read but not yet answered
    started: float | None = None  # loop clock of the first send
    finished: float | None = None

    def observe(self, row: KeyRow, ts: float, status: int | None, error: str | None,
                latency_s: float, lag_s: float, since_start_s: float) -> None:
        self.sent += 1
        row.sent += 1
        self.lag.record_value(max(int(lag_s * 1e6), 1))
        if error is not None:  # no answer: counted, but kept out of the latency of answers
            self.errors[error] += 1
            return
        micros = max(int(latency_s * 1e6), 1)
        self.latency.record_value(micros)
        self.recent.record_value(micros)
        self.statuses[status] += 1
        if status == 429 and row.first_429 is None:
            row.first_429 = {"request": row.sent, "ts": ts, "after_s": round(since_start_s, 3)}
        elif status == 403 and row.first_403 is None:
            row.first_403 = {"request": row.sent, "ts": ts, "after_s": round(since_start_s, 3)}

    @property
    def duration(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return self.finished - self.started


async def show_progress(stats: ReplayStats, progress: bool | None) -> None:
    """A bar with requests/s, the latest p50 and status counts; `None` shows it on a terminal only."""
    if progress is False:
        return
    from tqdm import tqdm

    with tqdm(unit="req", dynamic_ncols=True, disable=None if progress is None else False, file=sys.stderr,
              desc="replay") as bar:

        def refresh() -> None:
            recent = stats.recent
            p50 = f"{recent.get_value_at_percentile(50) / 1000:.1f}" if recent.get_total_count() else "-"
            recent.reset()
            counts = " ".join(f"{status}:{count}" for status, count in sorted(stats.statuses.items()))
            errors = sum(stats.errors.values())
            bar.set_postfix_str(f"p50 {p50} ms | {counts or '-'}" + (f" | errors:{errors}" if errors else ""),
                                refresh=False)
            bar.update(stats.sent - bar.n)

        try:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL_S)
                refresh()
        finally:
            refresh()  # the bar ends on the final counts


def replay_report(stats: ReplayStats, **run: object) -> dict:
    """The JSON report; `run` says what was replayed where (file, target, speed, ...)."""
    duration = stats.duration
    return {
        **run,
        "requests_sent": stats.sent,
        "requests_read": stats.read,
        "duration_s": round(duration, 3),
        "throughput_rps": round(stats.sent / duration, 1) if duration > 0 else None,
        "latency_ms": {
            "p50": _ms(stats.latency, 50), "p95": _ms(stats.latency, 95), "p99": _ms(stats.latency, 99),
            "max": round(stats.latency.get_max_value() / 1000, 2) if stats.latency.get_total_count() else None,
        },
        "schedule_lag_ms": {"p50": _ms(stats.lag, 50), "p99": _ms(stats.lag, 99)},
        "statuses": {str(status): count for status, count in sorted(stats.statuses.items())},
        "errors": dict(stats.errors.most_common()),
        "most_waiting": stats.most_waiting,
        "keys": [row.as_dict() for row in stats.keys.values()],
    }


def format_report(report: dict) -> str:
    """The table printed at the end of a replay."""
    latency = report["latency_ms"]
    statuses = ", ".join(f"{status}: {count}" for status, count in report["statuses"].items()) or "-"
    errors = ", ".join(f"{kind}: {count}" for kind, count in report["errors"].items()) or "none"
    lines = [
        f"replay of {report['file']} -> {report['target']}"
        + (" (interrupted: partial report)" if report.get("interrupted") else ""),
        f"  sent {report['requests_sent']} requests in {report['duration_s']:.1f} s "
        f"({_dash(report['throughput_rps'])} req/s)",
        f"  latency p50 {_dash(latency['p50'])} ms, p95 {_dash(latency['p95'])} ms, "
        f"p99 {_dash(latency['p99'])} ms (end to end, answered requests)",
        f"  statuses {statuses}; connection errors {errors}",
    ]
    keys = report["keys"]
    refused = sorted((k for k in keys if k["first_429"] or k["first_403"]), key=lambda k: -k["sent"])
    shown = (refused + sorted((k for k in keys if k not in refused), key=lambda k: -k["sent"]))[:KEYS_SHOWN]
    if shown:
        lines += ["", f"  {'key_id':<16} {'label':<7} {'scenario':<22} {'sent':>7} {'first 429':>14} {'first 403':>14}"]
        for key in shown:
            lines.append(
                f"  {key['key_id']:<16} {key['label'] or '-':<7} {(key['scenario'] or '-')[:22]:<22} "
                f"{key['sent']:>7} {_refusal(key['first_429']):>14} {_refusal(key['first_403']):>14}"
            )
        if len(keys) > len(shown):
            lines.append(f"  ... and {len(keys) - len(shown)} more keys (all of them are in --report)")
    detection = report.get("detection")
    if detection and "error" in detection:
        lines += ["", f"  detection: {detection['error']}"]
    elif detection:
        lines += ["", format_summary(detection["summary"])]
        lines += [f"  warning: {warning}" for warning in detection.get("warnings", [])]
    return "\n".join(lines)


def _refusal(first: dict | None) -> str:
    return "-" if first is None else f"#{first['request']} @{first['after_s']:g}s"


def _dash(value) -> str:
    return "-" if value is None else f"{value:,g}"


def detection_summary(rows: Iterable[KeyRow], flags: list[dict], requests: int, since: float) -> dict:
    """The file's labels against the gateway's flags, in the shape of `distillguard score`.

    A flag first raised before the replay began (`since`) is left out: it belongs to earlier
    traffic and would give a negative time to detect. Times to detect are replay seconds.
    """
    by_gateway_id = {flag["key_id"]: flag for flag in flags if flag.get("first_flagged_at", 0) >= since}
    report = ScoreReport(requests=requests)
    matched = []
    for row in rows:
        flag = by_gateway_id.get(row.gateway_key_id)
        if flag is not None:
            matched.append({**flag, "key_id": row.key_id, "gateway_key_id": row.gateway_key_id})
        report.keys[row.key_id] = KeyOutcome(
            row.key_id, row.label, row.scenario, requests=row.sent, first_ts=row.first_sent_at or since,
            flag=flag, flagged_at_ts=flag["first_flagged_at"] if flag else None,
        )
    ignored = sum(1 for flag in flags if flag.get("first_flagged_at", 0) < since)
    return {"flags": matched, "summary": report.summary(), "flags_before_replay": ignored}


class AdminClient:
    """Reads the gateway's flags over its admin API (Bearer admin token)."""

    def __init__(self, session: aiohttp.ClientSession, admin_url: str, token: str) -> None:
        self.session = session
        self.base = admin_url.rstrip("/") + "/admin/api"
        self.headers = {"authorization": f"Bearer {token}"}

    async def _get(self, path: str) -> dict:
        async with self.session.get(self.base + path, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"admin API {path}: HTTP {response.status}: {(await response.text())[:200]}")
            return await response.json()

    async def flags(self) -> list[dict]:
        return (await self._get(f"/flags?limit={FLAGS_PAGE}"))["flags"]

    async def settled_flags(self, settle_s: float, limit_s: float = 120.0) -> list[dict]:
        """Flags once they have stopped changing for `settle_s`: the scorer works behind the
        gateway, so the last requests' flags appear a moment after their answers."""
        started = last_change = time.monotonic()
        seen = await self.flags()
        while time.monotonic() - last_change < settle_s and time.monotonic() - started < limit_s:
            await asyncio.sleep(min(0.5, settle_s))
            current = await self.flags()
            if _flag_state(current) != _flag_state(seen):
                last_change = time.monotonic()
            seen = current
        return seen

    async def flags_of(self, gateway_key_ids: list[str], concurrency: int = 16) -> list[dict]:
        """Each key's own flag record: for files with more keys than one page of flags."""
        limit = asyncio.Semaphore(concurrency)

        async def one(key_id: str) -> dict | None:
            async with limit:
                return (await self._get(f"/keys/{key_id}"))["flag"]

        found = await asyncio.gather(*(one(key_id) for key_id in gateway_key_ids))
        return [flag for flag in found if flag]

    async def requests_scored(self, gateway_key_id: str) -> int | None:
        """How many of the key's requests the scorer has counted; None if it has no window."""
        window = (await self._get(f"/keys/{gateway_key_id}"))["window"]
        return None if window is None else window["requests_seen"]

    async def scored(self, rows: list[KeyRow], limit_s: float) -> list[KeyRow]:
        """Waits until the scorer has counted every replayed request of `rows`; the rows it
        had not caught up with when `limit_s` ran out."""
        deadline = time.monotonic() + limit_s
        behind = rows
        while True:
            counts = await asyncio.gather(*(self.requests_scored(row.gateway_key_id) for row in behind))
            behind = [row for row, count in zip(behind, counts) if count is None or count < row.sent]
            if not behind or time.monotonic() >= deadline:
                return behind
            await asyncio.sleep(0.5)


def _flag_state(flags: list[dict]) -> set[tuple]:
    return {(flag["key_id"], flag.get("action")) for flag in flags}


@dataclass(frozen=True)
class DetectionOptions:
    """Where to read the gateway's flags after a labelled replay."""

    admin_url: str
    admin_token: str
    settle_s: float = 3.0


async def read_detection(stats: ReplayStats, detection: DetectionOptions, since: float) -> dict:
    """The labelled comparison, or {"error": why} when the admin API cannot be read."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            admin = AdminClient(session, detection.admin_url, detection.admin_token)
            return await _join_flags(stats, admin, detection.settle_s, since)
    except (aiohttp.ClientError, OSError, RuntimeError) as error:
        return {"error": f"could not read the gateway's flags: {error}"}


async def _join_flags(stats: ReplayStats, admin: AdminClient, settle_s: float, since: float,
                      scored_limit_s: float = 60.0) -> dict:
    """Flags for the replayed keys, joined to the file's labels. First waits for the scorer
    (it works behind the gateway) to count the busiest keys' requests, then for the flags
    to stop changing."""
    rows = list(stats.keys.values())
    busiest = sorted(rows, key=lambda r: -r.sent)[:SCORED_SAMPLE]
    behind = await admin.scored(busiest, scored_limit_s)
    flags = await admin.settled_flags(settle_s)
    if len(flags) >= FLAGS_PAGE:
        listed = {flag["key_id"] for flag in flags}
        flags += await admin.flags_of([r.gateway_key_id for r in rows if r.gateway_key_id not in listed])
    detection = detection_summary(rows, flags, stats.sent, since - CLOCK_TOLERANCE_S)
    detection["warnings"] = [] if not behind else [
        f"after {scored_limit_s:g} s the gateway had not scored all requests of {len(behind)} of the "
        f"{len(busiest)} busiest keys (e.g. key {behind[0].key_id}, gateway key_id {behind[0].gateway_key_id}): "
        "is its scorer running, and is the key secret given here the gateway's?"
    ]
    return detection
