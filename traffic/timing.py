"""When simulated clients send: scripts tick like clocks, people follow the day.

Times are Unix seconds; local time is UTC plus a whole-hour offset, enough for working
hours and sleep without a time-zone database.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator

HOUR_S = 3600.0
DAY_S = 86400.0


def local_hour(ts: float, utc_offset_h: int) -> float:
    return (ts / HOUR_S + utc_offset_h) % 24.0


def is_weekday(ts: float, utc_offset_h: int) -> bool:
    """Monday to Friday in local time (1 January 1970 was a Thursday)."""
    return (int((ts + utc_offset_h * HOUR_S) // DAY_S) + 3) % 7 < 5


def within_hours(ts: float, utc_offset_h: int, first_h: float, last_h: float, weekdays_only: bool = False) -> bool:
    if weekdays_only and not is_weekday(ts, utc_offset_h):
        return False
    return first_h <= local_hour(ts, utc_offset_h) < last_h


def next_opening(ts: float, utc_offset_h: int, first_h: float, last_h: float, weekdays_only: bool = False) -> float:
    """`ts` if it falls within the daily hours [first_h, last_h), else when they next begin."""
    if within_hours(ts, utc_offset_h, first_h, last_h, weekdays_only):
        return ts
    day_start = ts - local_hour(ts, utc_offset_h) * HOUR_S
    opening = day_start + first_h * HOUR_S
    if opening <= ts:
        opening += DAY_S
    while weekdays_only and not is_weekday(opening, utc_offset_h):
        opening += DAY_S
    return opening


def next_local_time(ts: float, utc_offset_h: int, hour: float) -> float:
    """The first moment at or after `ts` when the local clock shows `hour` (a cron schedule)."""
    moment = ts - local_hour(ts, utc_offset_h) * HOUR_S + hour * HOUR_S
    return moment if moment >= ts else moment + DAY_S


def diurnal_factor(ts: float, utc_offset_h: int, night_share: float = 0.15) -> float:
    """Relative activity over a local day: lowest at 04:00, highest at 16:00, never below `night_share`."""
    phase = 2 * math.pi * (local_hour(ts, utc_offset_h) - 4.0) / 24.0
    return night_share + (1 - night_share) * (0.5 - 0.5 * math.cos(phase))


def poisson_arrivals(
    rng: random.Random, start: float, end: float, peak_rate: float, factor: Callable[[float], float] = lambda ts: 1.0
) -> Iterator[float]:
    """Arrivals of a Poisson process whose rate is `peak_rate * factor(ts)` (thinning)."""
    ts = start
    while True:
        ts += rng.expovariate(peak_rate)
        if ts >= end:
            return
        if rng.random() < factor(ts):
            yield ts


def regular_arrivals(rng: random.Random, start: float, end: float, gap_s: float, jitter: float) -> Iterator[float]:
    """A script's clock: gaps of `gap_s`, varying by a relative `jitter` (0.02 = 2 %)."""
    ts = start + rng.uniform(0, gap_s)
    while ts < end:
        yield ts
        ts += gap_s * max(0.05, 1.0 + rng.gauss(0.0, jitter))


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose coefficient of variation is `cv` (bisection on
    CV^2 = Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1, which falls as k grows)."""
    low, high = 0.05, 50.0
    for _ in range(60):
        k = math.sqrt(low * high)
        squared = math.exp(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)) - 1
        low, high = (k, high) if squared > cv * cv else (low, k)
    return math.sqrt(low * high)


def unit_gap(rng: random.Random, cv: float, weibull: bool = False) -> float:
    """A gap of mean 1 and coefficient of variation `cv`: Gamma (shape 1/cv^2) or Weibull,
    the two families ServeGen fits to production inter-arrival times."""
    if weibull:
        k = _weibull_shape(round(cv, 2))
        return rng.weibullvariate(1.0 / math.gamma(1 + 1 / k), k)
    shape = 1.0 / (cv * cv)
    return rng.gammavariate(shape, 1.0 / shape)


_weibull_shape = functools.lru_cache(maxsize=4096)(weibull_shape_for_cv)


def renewal_arrivals(
    rng: random.Random,
    start: float,
    end: float,
    rate_at: Callable[[float], float],
    cv_at: Callable[[float], float],
    weibull: bool = False,
    step_s: float = HOUR_S,
) -> Iterator[float]:
    """Arrivals of a renewal process with Gamma or Weibull gaps whose rate follows
    `rate_at` and whose burstiness (gap CV) follows `cv_at`, both read once per `step_s`
    (on whole hours, so local hours line up).

    Gaps are drawn in operational time (mean 1) and stretched by the rate of the steps
    they cross, so each step keeps its CV at any rate and silent steps pass with no work.
    """
    pending = None
    segment = start
    while segment < end:
        segment_end = min(end, (segment // step_s + 1) * step_s)
        rate = rate_at(segment)
        if rate > 0:
            cv = cv_at(segment)
            if pending is None:  # the first arrival: a random point inside a gap
                pending = unit_gap(rng, cv, weibull) * rng.random()
            ts = segment
            while ts + pending / rate < segment_end:
                ts += pending / rate
                yield ts
                pending = unit_gap(rng, cv, weibull)
            pending -= (segment_end - ts) * rate
        segment = segment_end


def human_gap(rng: random.Random, median_s: float, sigma: float = 1.0) -> float:
    """A person's pause between requests: log-normal, mostly short, sometimes long."""
    return median_s * math.exp(rng.gauss(0.0, sigma))


def interleave_sessions(sessions: Iterable[Iterator[dict]]) -> Iterator[dict]:
    """One ts-ordered stream from overlapping sessions (chats, benchmark questions) that
    start in ts order; only the sessions still running are held in memory."""
    running: list = []
    order = itertools.count()
    for session in sessions:
        first = next(session, None)
        if first is None:
            continue
        while running and running[0][0] <= first["ts"]:
            yield _advance(running, order)
        heapq.heappush(running, (first["ts"], next(order), first, session))
    while running:
        yield _advance(running, order)


def _advance(running: list, order: itertools.count) -> dict:
    _, _, record, session = heapq.heappop(running)
    following = next(session, None)
    if following is not None:
        heapq.heappush(running, (following["ts"], next(order), following, session))
    return record


PACES = ("steady", "poisson", "bursty", "diurnal", "human")


def paced_arrivals(rng: random.Random, start: float, end: float, rate_per_s: float, pace: str,
                   utc_offset_h: int = 0) -> Iterator[float]:
    """A script's send times at a mean `rate_per_s`, in one of PACES: a clock (`steady`),
    independent requests (`poisson`), parallel workers' batches (`bursty`), a day-shaped
    rate (`diurnal`), or a person's waking hours and pauses (`human`)."""
    if pace == "steady":
        yield from regular_arrivals(rng, start, end, 1.0 / rate_per_s, rng.uniform(0.01, 0.3))
    elif pace == "poisson":
        yield from poisson_arrivals(rng, start, end, rate_per_s)
    elif pace == "bursty":
        workers, spread = rng.choice((2, 4, 8, 16, 32)), min(0.2, 0.5 / rate_per_s)
        last = start
        for batch_ts in regular_arrivals(rng, start, end, workers / rate_per_s, rng.uniform(0.05, 0.5)):
            ts = max(batch_ts, last)  # a jittered batch never starts before the last one ended
            for _ in range(workers):
                yield ts
                last = ts
                ts += rng.uniform(0.001, spread)
    elif pace == "diurnal":
        yield from poisson_arrivals(rng, start, end, rate_per_s / 0.575,
                                    lambda ts: diurnal_factor(ts, utc_offset_h))
    elif pace == "human":
        wake, sleep = rng.uniform(7, 9.5), rng.uniform(21, 24)
        ts = next_opening(start, utc_offset_h, wake, sleep)
        while ts < end:
            yield ts
            ts = next_opening(ts + human_gap(rng, 0.6 / rate_per_s, 0.9), utc_offset_h, wake, sleep)
    else:
        raise ValueError(f"unknown pace {pace!r}; known: {', '.join(PACES)}")
