"""`distillguard evaluate`: from a simulated population to the per-scenario table in one command.

Simulates honest and harvesting keys, fits the isolation forest on the benign traffic of
part of the honest keys (split by key, so no scored key was seen in training), then scores
the other honest keys and every attack key offline with the very pipeline the live scorer
runs. Simulation is deterministic, so it is run twice rather than held in memory: once
for training (honest keys only), once for scoring.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from detectors.iforest import ForestDetector
from detectors.pipeline import Pipeline, due_for_evaluation
from detectors.rules import Rule, RulesDetector, parse_rules
from traffic.format import TrafficRecord
from traffic.scenarios import ATTACK, BENIGN, SCENARIOS, generate
from traffic.simulate import parse_mix, parse_params

from ..config import Settings
from ..keys import KeyHasher
from ..scoring.detection import ladder_config
from .bounds import rate_bounds
from .linkage import LinkageRun, linkage_run
from .scoring import FittedDetectors, ScoreReport, fit_detectors, score_records

# Fixed, so key ids and the train/test split are the same on every machine, and no
# installation secret is needed: every key here is simulated.
EVALUATION_SECRET = b"distillguard-evaluate"
GOAL_RECALL = 0.99
GOAL_FPR = 0.001
GOAL_TTD_REQUESTS = 100
ROOT = Path(__file__).resolve().parents[2]
FIRST_EVALUATION = next(count for count in range(1, 1000) if due_for_evaluation(count))

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SimulationPlan:
    """What every evaluation simulates and how it splits the honest keys; `scenarios` and
    `param_items` are spelt as `distillguard simulate` takes them (NAME=N, SCENARIO.NAME=VALUE)."""

    benign: int = 2000
    hours: float = 24.0
    seed: int = 1
    train_share: float = 0.5
    target_fpr: float = 0.001
    scenarios: tuple[str, ...] = ()
    param_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.train_share < 1:
            raise ValueError("train_share must be between 0 and 1 (exclusive): both halves need keys")
        if self.benign < 2 or self.hours <= 0:
            raise ValueError("need at least 2 honest keys and a positive duration")
        parse_params(list(self.param_items))

    @property
    def params(self) -> dict[str, dict]:
        return parse_params(list(self.param_items))

    @classmethod
    def given(cls, **fields):
        """The plan of the fields a command line gave (None: not given, the plan's default)."""
        return cls(**{name: value for name, value in fields.items() if value is not None})


@dataclass(frozen=True)
class Plan(SimulationPlan):
    """One evaluation: the simulated population, every attack scenario at `attacks_per_scenario` keys."""

    attacks_per_scenario: int = 10
    linkage: bool = True  # run the cross-key linkage passes too (when the settings enable them)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attacks_per_scenario < 1:
            raise ValueError("need at least 1 key per attack scenario")


def population(plan: Plan) -> dict[str, int]:
    """Scenario -> number of keys: the default honest mix, `attacks_per_scenario` keys of every
    attack scenario, and any NAME=N on top, exactly as `distillguard simulate` counts them."""
    return parse_mix(plan.benign, plan.attacks_per_scenario, list(plan.scenarios))


def honest_part(mix: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in mix.items() if SCENARIOS[name].label == BENIGN}


def in_training(key_id: str, plan: Plan) -> bool:
    """Whether an honest key trains the forest; a seeded hash, so the split is by key and repeatable."""
    digest = hashlib.blake2b(f"{plan.seed}:{key_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < plan.train_share


def simulate(plan: Plan, mix: dict[str, int], keep: Callable[[str, str], bool]) -> Iterator[TrafficRecord]:
    """The simulator's records as the offline functions read them (raw keys become key ids),
    only of the keys `keep(key_id, label)` accepts at that moment."""
    hasher = KeyHasher(EVALUATION_SECRET)
    for item in generate(mix, plan.hours, plan.seed, params=plan.params):
        key_id = hasher.key_id(item["key"])
        if keep(key_id, item["label"]):
            yield TrafficRecord(
                ts=item["ts"], key_id=key_id, ip=item["ip"], method=item["method"], path=item["path"],
                headers=item.get("headers") or {}, body=item.get("body"), label=item["label"],
                scenario=item["scenario"], status=item.get("status"), latency_ms=item.get("latency_ms"),
                usage=item.get("usage"),
            )


class SettledKeys:
    """The pipeline, watching its own evaluations: a key flagged with a score of 1 is settled,
    since nothing it sends later can change its first flag or raise its highest score. Its
    later events still fill its window but are no longer evaluated, and without linkage
    (which needs every key's events for its signatures) they need not be scored at all.
    Decisions are those of the wrapped pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.settled: set[str] = set()
        self.last_seen: dict[str, tuple[list[float], int]] = {}  # features, requests at the latest evaluation

    def observe(self, state, event):
        snapshot = self.pipeline.observe(state, event)
        return None if event.key_id in self.settled else snapshot

    def evaluate(self, due):
        evaluations = self.pipeline.evaluate(due)
        for evaluation in evaluations:
            self.last_seen[evaluation.key_id] = (evaluation.features, evaluation.requests_seen)
            if any(v.flagged for v in evaluation.verdicts) and max(v.score for v in evaluation.verdicts) >= 1.0:
                self.settled.add(evaluation.key_id)
        return evaluations


def nearest_rule(features: list[float], requests_seen: int, rules: list[Rule]) -> dict | None:
    """The rule a missed key came closest to firing, and what it lacked (too few requests counts)."""
    best = None
    for rule in rules:
        failing = [{"feature": c.feature, "value": round(features[c.index], 4), "needs": f"{c.op} {c.threshold:g}"}
                   for c in rule.conditions if not c.holds(features)]
        if requests_seen < rule.min_requests:
            failing.append({"feature": "requests", "value": requests_seen, "needs": f">= {rule.min_requests}"})
        if best is None or len(failing) < len(best["failing"]):
            best = {"rule": rule.name, "failing": failing}
    return best


def pipeline_with(fitted: FittedDetectors, settings: Settings) -> Pipeline:
    """The configured rules and ladder with the freshly fitted detectors."""
    detection = settings.detection
    return Pipeline(RulesDetector(parse_rules(detection.rules)),
                    ForestDetector(fitted.forest, detection.iforest_min_requests), ladder_config(detection))


def threshold_sweep(scores: Iterable[tuple[str, float]]) -> list[dict]:
    """Recall and false-positive rate if a key were flagged whenever its score reaches each
    threshold, from the highest score down; both only grow as the threshold falls."""
    pairs = list(scores)
    attack = np.sort(np.asarray([s for label, s in pairs if label == ATTACK], dtype=np.float64))
    benign = np.sort(np.asarray([s for label, s in pairs if label == BENIGN], dtype=np.float64))
    thresholds = np.unique(np.concatenate([attack, benign]))[::-1]
    points = []
    for threshold in thresholds:
        caught = len(attack) - np.searchsorted(attack, threshold, side="left")
        false = len(benign) - np.searchsorted(benign, threshold, side="left")
        points.append({"threshold": round(float(threshold), 6),
                       "recall": float(caught / len(attack)) if len(attack) else 0.0,
                       "false_positive_rate": float(false / len(benign)) if len(benign) else 0.0})
    return points


def goals(summary: dict, linkage: bool = True) -> list[dict]:
    """The issue's targets against this run; group attacks (hydra) are reported, not judged."""
    rows = []
    for name, row in summary["scenarios"].items():
        if row["label"] != ATTACK:
            continue
        if name in SCENARIOS and SCENARIOS[name].group is not None:
            target = "per-key detection and linkage" if linkage else "per-key detection alone"
            rows.append({"subject": name, "target": f"share of member keys flagged ({target})",
                         "measured": row["recall"], "met": None})
            continue
        median = row["ttd_requests_median"]
        rows += [
            {"subject": name, "target": f"recall >= {GOAL_RECALL}", "measured": row["recall"],
             "met": row["recall"] is not None and row["recall"] >= GOAL_RECALL},
            {"subject": name, "target": f"median requests to detect <= {GOAL_TTD_REQUESTS}", "measured": median,
             "met": median is not None and median <= GOAL_TTD_REQUESTS},
        ]
    fpr = summary["false_positive_rate"]
    rows.append({"subject": "honest keys", "target": f"false-positive rate <= {GOAL_FPR:.1%}", "measured": fpr,
                 "met": fpr is not None and fpr <= GOAL_FPR})
    return rows


def goals_by_subject(rows: list[dict]) -> list[tuple[str, bool | None, list[dict]]]:
    """(subject, all met / any missed / only reported, its goals) in first-seen order."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["subject"], []).append(row)
    result = []
    for subject, items in grouped.items():
        judged = [item["met"] for item in items if item["met"] is not None]
        result.append((subject, all(judged) if judged else None, items))
    return result


def command_line(plan: dict) -> str:
    """The command that repeats a run (from `Plan` as a dict, as the report stores it)."""
    parts = [f"distillguard evaluate --benign {plan['benign']} --attacks-per-scenario {plan['attacks_per_scenario']}",
             f"--hours {plan['hours']:g} --seed {plan['seed']} --train-share {plan['train_share']:g}"]
    if plan["target_fpr"] != Plan.target_fpr:
        parts.append(f"--target-fpr {plan['target_fpr']:g}")
    if not plan.get("linkage", True):
        parts.append("--no-linkage")
    parts += [f"--scenario {item}" for item in plan["scenarios"]]
    parts += [f"--param {item}" for item in plan["param_items"]]
    return " ".join(parts)


def commit() -> str:
    """The checkout's commit, marked when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def score_population(plan: Plan, mix: dict[str, int], pipeline: Pipeline, linkage: LinkageRun | None):
    """Every attack key and every honest key outside the training share through the pipeline
    (and linkage, when on); returns the report, the watched pipeline, the requests each
    scored key sent, and the training keys that were passed over."""
    watched = SettledKeys(pipeline)
    generated: dict[str, int] = {}
    train_keys: set[str] = set()

    def test_key(key_id: str, label: str) -> bool:
        if label == BENIGN and in_training(key_id, plan):
            train_keys.add(key_id)
            return False
        generated[key_id] = generated.get(key_id, 0) + 1
        return linkage is not None or key_id not in watched.settled

    report = score_records(simulate(plan, mix, test_key), EVALUATION_SECRET, watched, linkage)
    return report, watched, generated, train_keys


def run_evaluation(plan: Plan, settings: Settings, progress: Progress = lambda message: None) -> dict:
    """Simulate, train, score and summarise; returns everything the table and the page show."""
    started = time.perf_counter()
    mix = population(plan)
    honest = honest_part(mix)
    progress(f"training the forest on the honest keys of the training share ({plan.train_share:.0%})")
    training_requests = 0

    def training_key(key_id: str, label: str) -> bool:
        nonlocal training_requests
        keep = in_training(key_id, plan)
        training_requests += keep
        return keep

    fitted = fit_detectors(
        simulate(plan, honest, training_key), EVALUATION_SECRET,
        target_fpr=plan.target_fpr, seed=plan.seed, source=f"evaluate seed {plan.seed}, {plan.hours:g} h",
    )
    model = fitted.forest
    trained = time.perf_counter()
    progress(f"scoring the other honest keys and {plan.attacks_per_scenario} keys of every attack scenario")
    linkage = linkage_run(settings) if plan.linkage else None
    report, pipeline, generated, train_keys = score_population(plan, mix, pipeline_with(fitted, settings), linkage)
    scored = time.perf_counter()
    summary = completed_summary(report.summary(), report, mix)
    for key in summary["attack_keys"]:
        key["max_score"] = round(report.keys[key["key_id"]].max_score, 6)
        last = pipeline.last_seen.get(key["key_id"])
        if not key["flagged"] and last is not None:
            key["nearest_rule"] = nearest_rule(*last, pipeline.pipeline.rules.rules)
    benign_keys = [o for o in report.keys.values() if o.label == BENIGN]
    evaluated = [o for o in benign_keys if o.requests >= FIRST_EVALUATION]
    # Keys too quiet to be evaluated cannot be flagged: the bound counts only the others.
    fpr_bounds = rate_bounds(sum(1 for o in evaluated if o.flag), len(evaluated), sided="upper")
    return {
        "plan": asdict(plan),
        "population": mix,
        "commit": commit(),
        "model_card": {name: value for name, value in model.card.items() if not name.startswith("benign_")},
        "train_keys": len(train_keys),
        "requests_trained": training_requests,
        "test_keys": len(report.keys),
        "requests_generated": sum(generated.values()),
        "requests_scored": report.requests,
        "summary": summary,
        "honest_keys": len(benign_keys),
        "honest_keys_evaluated": len(evaluated),
        "fpr_upper_bound_95": fpr_bounds and fpr_bounds[1],
        "goals": goals(summary, linkage is not None),
        "key_scores": [{"key_id": o.key_id, "label": o.label, "scenario": o.scenario, "score": round(o.max_score, 6),
                        "flagged": bool(o.flag)} for o in report.keys.values()],
        "sweep": threshold_sweep((o.label, o.max_score) for o in report.keys.values()),
        "false_positives": [{"key_id": o.key_id, "scenario": o.scenario, "ttd_requests":
                             o.flag["requests_before_flag"], "reasons": o.flag["reasons"]}
                            for o in benign_keys if o.flag],
        "seconds": {"train": round(trained - started, 1), "score": round(scored - trained, 1),
                    "total": round(scored - started, 1)},
    }


def completed_summary(summary: dict, report: ScoreReport, mix: dict[str, int]) -> dict:
    """The offline summary plus what the evaluation table needs and it lacks: a row for every
    scenario of the population (one whose keys sent nothing has no rate), how many keys sent
    enough requests to be evaluated at all, and the 90th percentile of seconds to detect."""
    seconds: dict[str, list[float]] = {}
    evaluated: dict[str, int] = {}
    for outcome in report.keys.values():
        name = outcome.scenario or outcome.label
        if outcome.requests >= FIRST_EVALUATION:
            evaluated[name] = evaluated.get(name, 0) + 1
        if outcome.flag is not None:
            seconds.setdefault(name, []).append(outcome.flagged_at_ts - outcome.first_ts)
    for name in mix:
        label = SCENARIOS[name].label
        summary["scenarios"].setdefault(name, {
            "label": label, "keys": 0, "flagged": 0, "recall" if label == ATTACK else "false_positive_rate": None,
            "ttd_requests_median": None, "ttd_requests_p90": None, "ttd_seconds_median": None,
        })
    for name, row in summary["scenarios"].items():
        values = seconds.get(name)
        row["evaluated"] = evaluated.get(name, 0)
        row["ttd_seconds_p90"] = round(float(np.quantile(values, 0.9)), 3) if values else None
    summary["scenarios"] = dict(sorted(summary["scenarios"].items()))
    return summary


def format_table(result: dict) -> str:
    """The per-scenario table, overall figures and how long it took, as `evaluate` prints them."""
    summary = result["summary"]
    width = max([24, *(len(name) for name in summary["scenarios"])])
    lines = [
        f"{'scenario':<{width}} {'label':<7} {'keys':>5} {'eval':>5} {'flagged':>7} {'recall/FPR':>10} "
        f"{'ttd req p50':>11} {'p90':>6} {'ttd s p50':>10} {'p90':>8}",
    ]
    ordered = sorted(summary["scenarios"].items(), key=lambda item: (item[1]["label"] != ATTACK, item[0]))
    for name, row in ordered:
        rate = row.get("recall", row.get("false_positive_rate"))
        lines.append(
            f"{name:<{width}} {row['label']:<7} {row['keys']:>5} {row['evaluated']:>5} {row['flagged']:>7} "
            f"{_rate(rate):>10} {_dash(row['ttd_requests_median']):>11} {_dash(row['ttd_requests_p90']):>6} "
            f"{_dash(row['ttd_seconds_median']):>10} {_dash(row['ttd_seconds_p90']):>8}"
        )
    bound = result["fpr_upper_bound_95"]
    lines += [
        "",
        f"overall: precision {summary['precision']}, recall {summary['recall']}, false-positive rate "
        f"{summary['false_positive_rate']} over {result['honest_keys']} honest keys; "
        f"{result['honest_keys_evaluated']} of them sent the {FIRST_EVALUATION}+ requests to be evaluated, "
        f"which bounds the rate below {_dash(bound and round(bound, 4))} (95%)",
        "",
    ]
    for subject, met, items in goals_by_subject(result["goals"]):
        verdict = {True: "met", False: "MISSED", None: "reported"}[met]
        checks = "; ".join(f"{item['target']}: {_dash(item['measured'])}" for item in items)
        lines.append(f"  {verdict:<8} {subject}: {checks}")
    plan = result["plan"]
    lines += [
        "",
        command_line(plan),
        f"{result['train_keys']} honest keys trained the forest ({result['requests_trained']:,} requests); "
        f"{result['test_keys']} keys scored "
        f"({result['requests_scored']:,} of the {result['requests_generated']:,} requests they sent scored"
        f"{'' if result['requests_scored'] == result['requests_generated'] else ': none after a key is settled'}); "
        f"seed {plan['seed']}, {plan['hours']:g} h, commit {result['commit']}",
        f"took {result['seconds']['total']:.1f} s (train {result['seconds']['train']:.1f} s, "
        f"score {result['seconds']['score']:.1f} s)",
    ]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _dash(value) -> str:
    return "-" if value is None else f"{value:g}"
