"""Draws from real LLM-serving traces: how often and how burstily a production API
customer sends, and how long its prompts and answers are.

The tables in traffic/data/traces/ are derived by scripts/derive_trace_tables.py from
ServeGen (per-client rates and burstiness of Alibaba Bailian's top API customers), the
Azure LLM inference traces 2023 and Mooncake's Kimi conversation trace (see
traffic/data/SOURCES.md). Every draw takes the caller's `random.Random`.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .timing import DAY_S, HOUR_S, renewal_arrivals

# Length tables (`kind`): whole services, and ServeGen's per-category pools.
AZURE_CONV, AZURE_CODE, MOONCAKE = "azure_conv", "azure_code", "mooncake_conversation"
SERVEGEN_LANGUAGE, SERVEGEN_REASON = "servegen_language_m-small", "servegen_reason_deepseek-r1"
# ServeGen client categories.
LANGUAGE, REASON = "language", "reason"
# Burstiness above this cannot show in a scaled-down key's 600-s window anyway (a window
# of n requests has a sample CV of at most about sqrt(n)), and it would stack hundreds of
# requests on one millisecond.
MAX_CV = 10.0
MIN_CV = 0.05
STEADY_ACTIVE_SHARE, STEADY_CV = 0.5, 2.0


@cache
def _table(name: str) -> dict:
    return json.loads(resources.files("traffic").joinpath("data", "traces", name).read_text())


@cache
def clients(category: str) -> tuple[dict, ...]:
    """ServeGen clients of one category (`language`: m-large, m-mid, m-small; `reason`: deepseek-r1)."""
    rows = tuple(c for c in _table("servegen_clients.json")["clients"] if c["id"].startswith(f"{category}_"))
    if not rows:
        raise ValueError(f"no ServeGen clients of category {category!r}; known: {LANGUAGE}, {REASON}")
    return rows


@cache
def _services() -> dict:
    table = _table("service_traces.json")
    return {"probabilities": tuple(table["probabilities"]),
            "services": {service["name"]: service for service in table["services"]}}


def service(kind: str) -> dict:
    """One length table: quantiles of prompt and completion tokens, their rank correlation,
    and (for whole-service traces) the service's arrival statistics."""
    services = _services()["services"]
    if kind not in services:
        raise ValueError(f"unknown length table {kind!r}; known: {', '.join(services)}")
    return services[kind]


def quantile(probabilities: tuple[float, ...], values: list[float], u: float) -> float:
    """The value at probability `u` of an empirical quantile table, interpolated
    log-linearly between neighbouring quantiles (token lengths are heavy-tailed)."""
    index = min(len(probabilities) - 2, max(0, bisect.bisect_right(probabilities, u) - 1))
    low, high = values[index], values[index + 1]
    share = (u - probabilities[index]) / (probabilities[index + 1] - probabilities[index])
    share = min(1.0, max(0.0, share))
    if low > 0 and high > 0:
        return math.exp(math.log(low) + share * (math.log(high) - math.log(low)))
    return low + share * (high - low)


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def token_lengths(rng: random.Random, kind: str) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of one request of a service, drawn jointly: each
    from its quantiles, tied by a Gaussian copula with the trace's rank correlation."""
    table, probabilities = service(kind), _services()["probabilities"]
    rho = table.get("spearman_rho") or 0.0
    rho = 2 * math.sin(math.pi * rho / 6)  # Spearman's rho -> the Gaussian copula's correlation
    z1, z2 = rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)
    u1, u2 = _normal_cdf(z1), _normal_cdf(rho * z1 + math.sqrt(1 - rho * rho) * z2)
    return (max(1, round(quantile(probabilities, table["prompt_tokens"], u1))),
            max(1, round(quantile(probabilities, table["completion_tokens"], u2))))


def prompt_tokens(rng: random.Random, kind: str) -> int:
    return max(1, round(quantile(_services()["probabilities"], service(kind)["prompt_tokens"], rng.random())))


def completion_tokens(rng: random.Random, kind: str) -> int:
    return completion_tokens_at(kind, rng.random())


def completion_tokens_at(kind: str, u: float) -> int:
    """Completion tokens of a service at probability `u` of its table (the upstream simulator
    draws `u` within a band per kind of request)."""
    return max(1, round(quantile(_services()["probabilities"], service(kind)["completion_tokens"], u)))


@dataclass(frozen=True)
class ClientProfile:
    """One real API customer's habits, scaled to one simulated key.

    `rate_per_s` is the key's mean rate; `hourly_shape` (local time) and `daily_shape` are
    the client's volume by hour of day and by day of its trace, each with mean 1; the
    simulation's first local day is the client's day `first_day`. `cv_quantiles` are the
    10/25/50/75/90th percentiles of its inter-arrival CV over 600-s windows.
    """

    client_id: str
    rate_per_s: float
    hourly_shape: tuple[float, ...]
    daily_shape: tuple[float, ...]
    first_day: int
    cv_quantiles: tuple[float, ...]
    weibull_share: float
    lengths: dict | None = None

    def rate_at(self, ts: float, start_ts: float, utc_offset_h: int) -> float:
        """Requests per second at `ts` (local hour and day, counted from the simulation's start)."""
        local = ts + utc_offset_h * HOUR_S
        day = int(local // DAY_S - (start_ts + utc_offset_h * HOUR_S) // DAY_S)
        hour = int(local // HOUR_S) % 24
        return (self.rate_per_s * self.daily_shape[(self.first_day + day) % len(self.daily_shape)]
                * self.hourly_shape[hour])

    def expected_requests(self, start_ts: float, end_ts: float, utc_offset_h: int) -> float:
        """The mean number of arrivals in [start_ts, end_ts), hour by hour."""
        total, ts = 0.0, start_ts
        while ts < end_ts:
            step_end = min(end_ts, (ts // HOUR_S + 1) * HOUR_S)
            total += self.rate_at(ts, start_ts, utc_offset_h) * (step_end - ts)
            ts = step_end
        return total

    def draw_cv(self, rng: random.Random) -> float:
        """One window's inter-arrival CV, from the client's CV quantiles (flat beyond the
        10th and 90th percentiles), within [MIN_CV, MAX_CV]."""
        u = min(0.9, max(0.1, rng.random()))
        cv = quantile((0.1, 0.25, 0.5, 0.75, 0.9), list(self.cv_quantiles), u)
        return min(MAX_CV, max(MIN_CV, cv))

    def draw_completion(self, rng: random.Random) -> int:
        """Completion tokens from the client's own length table."""
        return max(1, round(self._draw(rng, "completion_tokens")))

    def draw_reasoning_share(self, rng: random.Random) -> float:
        """The share of an answer spent reasoning (ServeGen's reason_ratio; 0 without one)."""
        return min(1.0, max(0.0, self._draw(rng, "reason_ratio"))) if "reason_ratio" in (self.lengths or {}) else 0.0

    def _draw(self, rng: random.Random, name: str) -> float:
        if not self.lengths:
            raise ValueError(f"ServeGen client {self.client_id} has no length table")
        return quantile(self.lengths["probabilities"], self.lengths[name], rng.random())

    def arrivals(self, rng: random.Random, start_ts: float, end_ts: float, utc_offset_h: int,
                 per_arrival: float = 1.0) -> Iterator[float]:
        """When this key sends, as a Gamma or Weibull renewal process (the family the client's
        windows were mostly fitted with) following its rhythm, with a CV drawn each hour.
        `per_arrival` requests come of each arrival (a chat's turns), so arrivals are that
        much rarer."""
        weibull = rng.random() < self.weibull_share
        return renewal_arrivals(rng, start_ts, end_ts,
                                lambda ts: self.rate_at(ts, start_ts, utc_offset_h) / per_arrival,
                                lambda ts: self.draw_cv(rng), weibull)


def client_profile(
    rng: random.Random,
    category: str = LANGUAGE,
    volume_scale: float = 0.01,
    max_requests_per_day: float = 5000.0,
    with_lengths: bool = False,
    steady: bool = False,
) -> ClientProfile:
    """A real ServeGen client's shape at one key's volume.

    ServeGen's clients are a cloud provider's largest API customers: each is a whole
    company's traffic (many apps, keys and end users), up to hundreds of requests a
    second. A simulated key keeps its client's daily rhythm, day-to-day swings and
    burstiness but sends `volume_scale` of its volume, and at most `max_requests_per_day`
    on the client's busiest day: about one app's share, and a bounded file. The first
    simulated day is one the client was active on (drawn by volume), so a key is not
    silent for its whole run. `with_lengths` picks only clients with a length table;
    `steady` only those active in most windows with a median CV of at most 2 (the
    signature of many independent people behind one app, as a support bot has).
    """
    pool = [c for c in clients(category) if c["mean_rate_per_s"] > 0 and (not with_lengths or "prompt_tokens" in c)
            and (not steady or (c["active_share"] >= STEADY_ACTIVE_SHARE and c["cv_quantiles"][2] <= STEADY_CV))]
    client = rng.choice(pool)
    daily = tuple(client["daily_shape"])
    first_day = rng.choices(range(len(daily)), weights=daily)[0] if sum(daily) > 0 else 0
    rate = client["mean_rate_per_s"] * volume_scale
    busiest_day = rate * DAY_S * max(daily)
    if busiest_day > max_requests_per_day:
        rate *= max_requests_per_day / busiest_day
    lengths = None
    if "prompt_tokens" in client:
        lengths = {name: client[name] for name in ("prompt_tokens", "completion_tokens", "reason_ratio")
                   if name in client}
        lengths["probabilities"] = tuple(_table("servegen_clients.json")["length_probabilities"])
    return ClientProfile(client["id"], rate, tuple(client["hourly_shape"]), daily, first_day,
                         tuple(client["cv_quantiles"]), client["weibull_share"], lengths)
