"""`distillguard evaluate --networks`: randomised harvesting networks of 10 to 5,000 keys
among honest look-alikes at scale, scored by per-key detection and linkage as the live
scorer runs them (`detection.linkage`, as service/offline/hydra_evaluation.py does).

Each of `--draws` seeds is a new population: per size band, `networks_per_band` networks
(traffic/networks.py draws how each hides and how long its keys live), `lookalikes` honest
keys that share what networks share (traffic/lookalikes.py), and `benign` keys of the
default honest mix. Every key's outcome is kept (`outcomes`); network_report.py turns them
into the report, the worst draw first.
"""

from __future__ import annotations

import heapq
import json
import math
import operator
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from traffic.format import TrafficRecord
from traffic.lookalikes import lookalike_streams, reseller_shops
from traffic.networks import STYLE, Member, describe, draw_network, member_slots
from traffic.scenarios import ATTACK, BENIGN, DEFAULT_START_TS, benign_mix, key_streams

from ..config import Settings
from ..keys import KeyHasher
from ..scoring.detection import build_pipeline
from .evaluation import commit
from .linkage import LinkageRun, linkage_run
from .network_report import summarise
from .scoring import score_records

SECRET = b"distillguard-evaluate"
BANDS = ((10, 19), (20, 49), (50, 199), (200, 999), (1000, 5000))
BURNER_FROM = 50  # a draw always has one burner network at least this large (one-day keys, <= 20 requests)
BURNER_SHARE = 0.25

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NetworkPlan:
    """One run: the size bands measured, how many networks each, the honest population, the draws."""

    seed: int = 1
    draws: int = 2
    hours: float = 26.0
    max_size: int = 400
    networks_per_band: int = 1
    lookalikes: int = 1000
    benign: int = 100
    start_within_h: float = 2.0  # every network starts within this many hours of the run's start
    shops: int = 3
    style: tuple[tuple[str, object], ...] = ()  # pins what every network would draw (traffic/networks.py)

    def __post_init__(self) -> None:
        if self.draws < 1 or self.networks_per_band < 1 or self.hours <= self.start_within_h:
            raise ValueError("need a draw, a network per band, and more hours than start_within_h")
        if self.max_size < BANDS[0][0] or self.lookalikes < len(BANDS) or self.benign < 0:
            raise ValueError(f"max_size must be at least {BANDS[0][0]} and lookalikes at least {len(BANDS)}")
        unknown = sorted({name for name, _ in self.style} - set(STYLE))
        if unknown:
            raise ValueError(f"no network style {', '.join(unknown)}; known: {', '.join(STYLE)}")

    @property
    def bands(self) -> tuple[tuple[int, int], ...]:
        """The size bands up to `max_size` (the last one cut at it)."""
        return tuple((low, min(high, self.max_size)) for low, high in BANDS if low <= self.max_size)


def network_sizes(plan: NetworkPlan, rng: random.Random) -> list[int]:
    """`networks_per_band` sizes per band, log-uniform within it."""
    return [round(math.exp(rng.uniform(math.log(low), math.log(high + 1)))) if high > low else low
            for low, high in plan.bands for _ in range(plan.networks_per_band)]


def band_of(size: int, plan: NetworkPlan) -> str:
    for low, high in plan.bands:
        if low <= size <= high:
            return f"{low}-{high}"
    raise ValueError(f"no band holds {size}")


@dataclass
class Population:
    """One draw's streams and what the evaluation knows of its keys."""

    streams: list[Iterator[dict]]
    members: dict[str, Member]  # raw key -> member; filled as the slots create keys
    networks: list[dict]
    lookalike_class: dict[str, str]  # raw key -> class


def population(plan: NetworkPlan, draw: int) -> Population:
    seed = plan.seed + draw
    start, duration_s = DEFAULT_START_TS, plan.hours * 3600.0
    end = start + duration_s
    rng = random.Random(f"{seed}:networks")
    shops = reseller_shops(str(seed), plan.shops)
    sizes = network_sizes(plan, rng)
    large = [index for index, size in enumerate(sizes) if size >= BURNER_FROM]
    forced = rng.choice(large) if large else None
    members: dict[str, Member] = {}
    networks, streams = [], []
    for index, size in enumerate(sizes):
        burner = index == forced or rng.random() < BURNER_SHARE
        begins = start + rng.uniform(0, plan.start_within_h * 3600.0)
        network = draw_network(random.Random(f"{seed}:network:{index}"), size, begins, shops[0], burner,
                               dict(plan.style))
        networks.append({"index": index, "size": size, "band": band_of(size, plan), "start_ts": begins,
                         "burner": burner, "style": describe(network)})
        streams += [_labelled(stream, ATTACK, "network") for stream in member_slots(str(seed), index, network, end, members)]
    lookalike_class = {}
    for key, name, stream in lookalike_streams(str(seed), plan.lookalikes, start, duration_s, shops):
        lookalike_class[key] = name
        streams.append(_labelled(stream, BENIGN, f"lookalike:{name}"))
    if plan.benign:
        streams += [stream for _, stream in key_streams(benign_mix(plan.benign), plan.hours, seed, start_ts=start)]
    return Population(streams, members, networks, lookalike_class)


def _labelled(records: Iterator[dict], label: str, scenario: str) -> Iterator[dict]:
    for record in records:
        record["label"], record["scenario"] = label, scenario
        yield record


def records(streams: list[Iterator[dict]], hasher: KeyHasher, raw_keys: dict[str, str]) -> Iterator[TrafficRecord]:
    """Every stream merged in ts order, as the offline scorer reads it."""
    ids: dict[str, str] = {}
    for item in heapq.merge(*streams, key=operator.itemgetter("ts")):
        raw = item["key"]
        key_id = ids.get(raw)
        if key_id is None:
            key_id = ids[raw] = hasher.key_id(raw)
            raw_keys[key_id] = raw
        yield TrafficRecord(item["ts"], key_id, item["ip"], item["method"], item["path"], item.get("headers") or {},
                            item.get("body"), item["label"], item["scenario"], item.get("status"),
                            item.get("latency_ms"), item.get("usage"))


def measure(plan: NetworkPlan, settings: Settings, draw: int, progress: Progress = lambda message: None) -> dict:
    """One draw: generate, score with per-key detection and linkage, and every key's outcome."""
    started = time.perf_counter()
    drawn = population(plan, draw)
    sizes = ", ".join(str(network["size"]) for network in drawn.networks)
    progress(f"draw {draw + 1}/{plan.draws}: networks of {sizes} keys, {plan.lookalikes} look-alikes, "
             f"{plan.benign} other honest keys")
    hasher, raw_keys = KeyHasher(SECRET), {}
    linkage = linkage_run(settings) or LinkageRun()
    report = score_records(records(drawn.streams, hasher, raw_keys), SECRET, build_pipeline(settings), linkage)
    outcomes = []
    for key_id, outcome in report.keys.items():
        raw = raw_keys[key_id]
        entry = {"draw": draw, "requests": outcome.requests, "first_ts": outcome.first_ts,
                 "flagged_ts": outcome.flagged_at_ts if outcome.flag else None,
                 "by_linkage": key_id in linkage.first_flagged,
                 "detector": _flagged_by(outcome.flag)}
        member = drawn.members.get(raw)
        if member is not None:
            network = drawn.networks[member.network]
            entry.update(role="member", network=member.network, size=member.size, band=network["band"],
                         founder=member.founder, network_start_ts=member.network_start_ts,
                         lifetime_h=round((member.retires_ts - member.born_ts) / 3600.0, 2),
                         through_reseller=member.through_reseller)
        elif raw in drawn.lookalike_class:
            entry.update(role="lookalike", cls=drawn.lookalike_class[raw])
        else:
            entry.update(role="honest", cls=outcome.scenario)
        outcomes.append(entry)
    seconds = time.perf_counter() - started
    progress(f"draw {draw + 1}: {report.requests:,} requests, {len(report.keys):,} keys, {linkage.passes} passes, "
             f"{seconds:.0f} s")
    return {"outcomes": outcomes, "networks": [{**network, "draw": draw} for network in drawn.networks],
            "requests": report.requests, "keys": len(report.keys), "seconds": round(seconds, 1)}


def _flagged_by(flag: dict | None) -> str | None:
    """`detector:first reason` of a key's first flag (e.g. `rules:broad_capability_harvest`)."""
    if not flag:
        return None
    return f"{flag['detector']}:{flag['reasons'][0]['name']}" if flag["reasons"] else flag["detector"]


def run_networks(plan: NetworkPlan, settings: Settings, progress: Progress = lambda message: None) -> dict:
    """Every draw; the report `network_report.format_networks` prints."""
    started = time.perf_counter()
    draws = [measure(plan, settings, draw, progress) for draw in range(plan.draws)]
    outcomes = [outcome for result in draws for outcome in result["outcomes"]]
    networks = [network for result in draws for network in result["networks"]]
    return {"plan": asdict(plan), "bands": [f"{low}-{high}" for low, high in plan.bands], "commit": commit(),
            **summarise(outcomes, networks, [f"{low}-{high}" for low, high in plan.bands], plan.draws,
                        DEFAULT_START_TS + plan.hours * 3600.0),
            "requests": sum(result["requests"] for result in draws), "keys": sum(result["keys"] for result in draws),
            "draw_seconds": [result["seconds"] for result in draws], "outcomes": outcomes,
            "seconds": round(time.perf_counter() - started, 1)}


def command_line(plan: dict) -> str:
    """The command that repeats a network run."""
    pins = "".join(f" --network-style {name}={json.dumps(value, separators=(',', ':'))}"
                   for name, value in plan["style"])
    return (f"distillguard evaluate --networks --seed {plan['seed']} --draws {plan['draws']} --hours {plan['hours']:g} "
            f"--max-network-size {plan['max_size']} --networks-per-band {plan['networks_per_band']} "
            f"--lookalikes {plan['lookalikes']} --benign {plan['benign']}{pins}")
