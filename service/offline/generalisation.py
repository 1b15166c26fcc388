"""`distillguard evaluate --randomise / --hold-out-families / --drop-usage / --features-mode`:
detection measured on what it was not fitted to.

Every key of every family re-draws how it sends (traffic/variation.py); with
`--hold-out-families`, whatever is learned (`scoring.fit_detectors`) is fitted without
family F and then F is measured, for attack and honest families alike; `--drop-usage` and
`--features-mode` score the lines as a proxy without usage, or the recorder in `bodies:
features` mode, writes them. Each of `--draws` seeds is a new population. The report puts
the worst family and draw first, with 95 % bounds on every rate (`rate_bounds`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

from traffic.format import TrafficRecord
from traffic.scenarios import ATTACK, BENIGN, SCENARIOS, key_streams
from traffic.simulate import parse_mix

from ..config import Settings
from ..keys import KeyHasher
from ..recording.lines import parameters_of, text_features
from .evaluation import (
    EVALUATION_SECRET,
    FIRST_EVALUATION,
    SettledKeys,
    SimulationPlan,
    commit,
    in_training,
    pipeline_with,
)
from .generalisation_report import family_rows, worst_cases
from .scoring import FittedDetectors, fit_detectors, score_records

CONDITIONS = ("full", "no_usage", "features", "features_no_usage")
KEY_PREFIX = "sk-sim-"

Fit = Callable[..., FittedDetectors]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class GeneralisationPlan(SimulationPlan):
    """One generalisation run: the population, the draws, and the conditions measured."""

    benign: int = 300
    hours: float = 6.0
    attacks_per_family: int = 10
    draws: int = 1
    randomise: bool = True
    hold_out_families: bool = False
    drop_usage: bool = False
    features_mode: bool = False
    max_requests_per_key: int = 1000
    families: tuple[str, ...] = ()  # only these families (default: every single-key family)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attacks_per_family < 0 or self.draws < 1:
            raise ValueError("need no negative number of attack keys, and at least one draw")
        if self.max_requests_per_key < FIRST_EVALUATION:
            raise ValueError(f"max_requests_per_key must be at least {FIRST_EVALUATION}")
        known = {scenario.family_of(name) for name, scenario in SCENARIOS.items()}
        unknown = sorted(set(self.families) - known)
        if unknown:
            raise ValueError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")

    @property
    def conditions(self) -> tuple[str, ...]:
        """`full` always (the reference), then what the flags add."""
        wanted = {"full", *(["no_usage"] if self.drop_usage else []), *(["features"] if self.features_mode else []),
                  *(["features_no_usage"] if self.drop_usage and self.features_mode else [])}
        return tuple(condition for condition in CONDITIONS if condition in wanted)


def population(plan: GeneralisationPlan) -> dict[str, int]:
    """Every single-key family: `benign` honest keys split evenly over the honest ones (so
    each family's false-positive rate is measured on as many keys), `attacks_per_family`
    keys of each harvesting one, and any NAME=N on top. Group scenarios (hydra, offices,
    shared apps) are left to linkage's own evaluation."""
    chosen = [name for name, s in SCENARIOS.items()
              if s.group is None and (not plan.families or s.family_of(name) in plan.families)]
    honest = [name for name in chosen if SCENARIOS[name].label == BENIGN]
    attacks = [name for name in chosen if SCENARIOS[name].label == ATTACK]
    mix = {name: plan.benign // len(honest) + (index < plan.benign % len(honest)) for index, name in
           enumerate(honest)} if honest else {}
    mix.update({name: plan.attacks_per_family for name in attacks if plan.attacks_per_family})
    for name, count in parse_mix(0, 0, list(plan.scenarios)).items() if plan.scenarios else ():
        mix[name] = mix.get(name, 0) + count
    return {name: count for name, count in mix.items() if count}


def family_of(scenario: str) -> str:
    return SCENARIOS[scenario].family_of(scenario)


def scenario_of(raw_key: str) -> str:
    return raw_key[len(KEY_PREFIX):].rsplit("-", 1)[0]


def as_record(item: dict, key_id: str, condition: str) -> TrafficRecord:
    """A simulated request as the offline functions read it, under `condition`: with usage
    removed (`no_usage`), and/or as a `bodies: features` recording keeps it (`features`)."""
    usage = None if condition.endswith("no_usage") else item.get("usage")
    body, features = item.get("body"), None
    if condition.startswith("features") and body is not None:
        features = text_features(body, item["path"], usage)
        body = parameters_of(body)
    return TrafficRecord(
        ts=item["ts"], key_id=key_id, ip=item["ip"], method=item["method"], path=item["path"],
        headers=item.get("headers") or {}, body=body, label=item["label"], scenario=item["scenario"],
        status=item.get("status"), latency_ms=item.get("latency_ms"), usage=usage, features=features,
        family=item.get("family"),
    )


def compact(record: TrafficRecord) -> TrafficRecord:
    """A record as a `bodies: features` recording keeps it, which detection scores and fits
    exactly as the full one (tests/test_recording.py): training records held in memory for
    several fits cost their parameters, not their prompts."""
    if record.features is not None or record.body is None:
        return record
    return replace(record, body=parameters_of(record.body),
                   features=text_features(record.body, record.path, record.usage))


def simulated(plan: GeneralisationPlan, mix: dict[str, int], seed: int, condition: str,
              keep: Callable[[str, str], bool], settled: set[str] | frozenset = frozenset()) -> Iterator[TrafficRecord]:
    """The records of the keys `keep(key_id, scenario)` accepts, in ts order: each key cut at
    `max_requests_per_key`, and no longer generated once it is in `settled`."""
    hasher = KeyHasher(EVALUATION_SECRET)
    streams = []
    for raw_key, stream in key_streams(mix, plan.hours, seed, params=plan.params, randomise=plan.randomise):
        key_id = hasher.key_id(raw_key)
        if keep(key_id, scenario_of(raw_key)):
            streams.append(_capped(stream, key_id, plan.max_requests_per_key, settled))
    for key_id, item in heapq.merge(*streams, key=lambda pair: pair[1]["ts"]):
        yield as_record(item, key_id, condition)


def _capped(stream: Iterator[dict], key_id: str, limit: int, settled) -> Iterator[tuple[str, dict]]:
    for count, item in enumerate(stream):
        if count >= limit or key_id in settled:
            return
        yield key_id, item


def measure(plan: GeneralisationPlan, settings: Settings, draw: int, condition: str, fit: Fit = fit_detectors,
            progress: Progress = lambda message: None) -> list[dict]:
    """One draw under one condition: fit, score, and every measured key's outcome.

    Without hold-out, the honest keys of the training share are fitted on and the others
    and every attack key scored. With it, the keys of each family F are scored by
    detectors fitted on the training share of every *other* family (attack families have
    no key in training, so they share the fit that leaves out nothing)."""
    seed, mix = plan.seed + draw, population(plan)
    families = sorted({family_of(name) for name in mix})
    in_share = {}

    def training(key_id: str, scenario: str) -> bool:
        if key_id not in in_share:
            in_share[key_id] = SCENARIOS[scenario].label == BENIGN and in_training(key_id, _split(plan, seed))
        return in_share[key_id]

    progress(f"draw {draw + 1}/{plan.draws}, {condition}: simulating the training keys")
    records = [compact(record) for record in simulated(plan, mix, seed, condition, training)]
    trained_families = {record.family for record in records}
    fits: dict[str | None, FittedDetectors] = {}
    held_out = [family for family in families if family in trained_families] if plan.hold_out_families else []
    for left_out in [None, *held_out]:
        progress(f"draw {draw + 1}, {condition}: fitting without {left_out or 'nothing'}")
        kept = [record for record in records if record.family != left_out] if left_out else records
        fits[left_out] = fit(kept, EVALUATION_SECRET, target_fpr=plan.target_fpr, seed=seed,
                             source=f"evaluate --randomise seed {seed}, without {left_out or 'nothing'}")
    del records
    outcomes = []
    for left_out, fitted in fits.items():
        def scored(key_id: str, scenario: str, left_out=left_out) -> bool:
            family = family_of(scenario)
            if plan.hold_out_families:
                return family == left_out or (left_out is None and family not in fits)
            return not training(key_id, scenario)

        progress(f"draw {draw + 1}, {condition}: scoring {'family ' + left_out if left_out else 'the other keys'}")
        watched = SettledKeys(pipeline_with(fitted, settings))
        report = score_records(simulated(plan, mix, seed, condition, scored, watched.settled), EVALUATION_SECRET,
                               watched, None)
        for outcome in report.keys.values():
            outcomes.append({
                "family": family_of(outcome.scenario), "scenario": outcome.scenario, "label": outcome.label,
                "draw": draw, "condition": condition, "requests": outcome.requests,
                "evaluated": outcome.requests >= FIRST_EVALUATION, "flagged": outcome.flag is not None,
                "ttd_requests": outcome.flag["requests_before_flag"] if outcome.flag else None,
                "held_out": plan.hold_out_families,
            })
    return outcomes


@dataclass(frozen=True)
class _Split:
    seed: int
    train_share: float


def _split(plan: GeneralisationPlan, seed: int) -> _Split:
    """What `in_training` reads of a plan: the seed of this draw and the training share."""
    return _Split(seed, plan.train_share)


def run_generalisation(plan: GeneralisationPlan, settings: Settings, fit: Fit = fit_detectors,
                       progress: Progress = lambda message: None) -> dict:
    """Every draw under every condition; the report `format_generalisation` prints."""
    started = time.perf_counter()
    outcomes: list[dict] = []
    for draw in range(plan.draws):
        for condition in plan.conditions:
            outcomes += measure(plan, settings, draw, condition, fit, progress)
    rows = family_rows(outcomes, plan.conditions)
    return {
        "plan": asdict(plan), "conditions": list(plan.conditions), "population": population(plan),
        "commit": commit(), "worst": worst_cases(outcomes, plan.conditions), "families": rows,
        "keys_measured": len(outcomes), "seconds": round(time.perf_counter() - started, 1),
    }


def command_line(plan: dict) -> str:
    """The command that repeats a generalisation run."""
    parts = [(f"distillguard evaluate --benign {plan['benign']} --attacks-per-scenario {plan['attacks_per_family']} "
             f"--hours {plan['hours']:g} --seed {plan['seed']} --draws {plan['draws']}")]
    parts += [flag for flag, on in (("--randomise", plan["randomise"]), ("--hold-out-families", plan["hold_out_families"]),
                                    ("--drop-usage", plan["drop_usage"]),
                                    ("--features-mode", plan["features_mode"])) if on]
    if plan["train_share"] != 0.5:
        parts.append(f"--train-share {plan['train_share']:g}")
    if plan["max_requests_per_key"] != GeneralisationPlan.max_requests_per_key:
        parts.append(f"--max-requests-per-key {plan['max_requests_per_key']}")
    if plan["families"]:
        parts.append(f"--families {','.join(plan['families'])}")
    parts += [f"--scenario {item}" for item in plan["scenarios"]]
    parts += [f"--param {item}" for item in plan["param_items"]]
    return " ".join(parts)

