"""Offline runs over traffic files: `distillguard train` and `distillguard score`.

Both read the file as a stream and push every request through the very functions the
live scorer uses (features, windows, pipeline), so offline and live flag the same keys.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from detectors.features import RequestFeatures, request_features
from detectors.iforest import ForestModel
from detectors.pipeline import KeyState, Pipeline, Snapshot, due_for_evaluation
from detectors.windows import KeyWindow

if TYPE_CHECKING:
    from .linkage import LinkageRun

BATCH = 512


def record_features(record, salt: bytes) -> RequestFeatures:
    """A traffic record as the gateway would have seen it finish. A recording that dropped
    the prompt text kept its text features instead (`features`), which take its place."""
    features = request_features(
        ts=record.ts, key_id=record.key_id, path=record.path, body=record.body,
        headers=record.headers or {}, client_ip=record.ip, status=record.status or 200,
        latency_ms=record.latency_ms or 0.0, usage=record.usage, salt=salt,
    )
    return replace(features, **record.features) if record.features else features


def benign_windows(records: Iterable, salt: bytes) -> np.ndarray:
    """Window features of benign keys at every evaluation point: what the forest learns."""
    windows: dict[str, KeyWindow] = {}
    rows = []
    for record in records:
        if record.label not in (None, "benign"):
            continue
        window = windows.setdefault(record.key_id, KeyWindow())
        window.update(record_features(record, salt))
        if due_for_evaluation(window.requests_seen):
            rows.append(window.features())
    return np.asarray(rows, dtype=np.float64)


def train_forest(records: Iterable, salt: bytes, *, target_fpr: float, seed: int, source: str) -> ForestModel:
    matrix = benign_windows(records, salt)
    if len(matrix) < 50:
        raise ValueError(f"{source}: only {len(matrix)} benign windows; need at least 50 to train")
    return ForestModel.fit(matrix, target_fpr=target_fpr, seed=seed, extra_card={"training_source": source})


@dataclass(frozen=True)
class FittedDetectors:
    """Everything learned from training traffic, as the pipeline takes it (today: the forest)."""

    forest: ForestModel


def fit_detectors(records: Iterable, salt: bytes, *, target_fpr: float, seed: int, source: str) -> FittedDetectors:
    """The one door through which every learned detector is fitted on training records, so
    that an evaluation holding a family out of training holds it out of every detector."""
    return FittedDetectors(train_forest(records, salt, target_fpr=target_fpr, seed=seed, source=source))


@dataclass
class KeyOutcome:
    key_id: str
    label: str | None = None
    scenario: str | None = None
    requests: int = 0
    first_ts: float = 0.0
    flag: dict | None = None
    flagged_at_ts: float | None = None
    max_score: float = 0.0


@dataclass
class ScoreReport:
    keys: dict[str, KeyOutcome] = field(default_factory=dict)
    requests: int = 0

    def flags(self) -> list[dict]:
        return [outcome.flag for outcome in self.keys.values() if outcome.flag is not None]

    def summary(self) -> dict:
        """Key-level precision, recall and false-positive rate, and time to detect per scenario."""
        labelled = [o for o in self.keys.values() if o.label in ("benign", "attack")]
        attack = [o for o in labelled if o.label == "attack"]
        benign = [o for o in labelled if o.label == "benign"]
        true_pos = sum(1 for o in attack if o.flag)
        false_pos = sum(1 for o in benign if o.flag)
        flagged = true_pos + false_pos
        scenarios: dict[str, dict] = {}
        for outcome in labelled:
            name = outcome.scenario or outcome.label
            entry = scenarios.setdefault(name, {"label": outcome.label, "keys": 0, "flagged": 0, "ttd_requests": [],
                                                "ttd_seconds": []})
            entry["keys"] += 1
            if outcome.flag:
                entry["flagged"] += 1
                entry["ttd_requests"].append(outcome.flag["requests_before_flag"])
                entry["ttd_seconds"].append(outcome.flagged_at_ts - outcome.first_ts)
        table = {}
        for name, entry in sorted(scenarios.items()):
            rate = entry["flagged"] / entry["keys"]
            table[name] = {
                "label": entry["label"], "keys": entry["keys"], "flagged": entry["flagged"],
                "recall" if entry["label"] == "attack" else "false_positive_rate": round(rate, 4),
                "ttd_requests_median": _quantile(entry["ttd_requests"], 0.5),
                "ttd_requests_p90": _quantile(entry["ttd_requests"], 0.9),
                "ttd_seconds_median": _quantile(entry["ttd_seconds"], 0.5),
            }
        return {
            "requests": self.requests,
            "keys": len(self.keys),
            "flagged_keys": sum(1 for o in self.keys.values() if o.flag),
            "precision": round(true_pos / flagged, 4) if flagged else None,
            "recall": round(true_pos / len(attack), 4) if attack else None,
            "false_positive_rate": round(false_pos / len(benign), 4) if benign else None,
            "scenarios": table,
            "attack_keys": [
                {"key_id": o.key_id, "scenario": o.scenario, "flagged": bool(o.flag),
                 "ttd_requests": o.flag["requests_before_flag"] if o.flag else None,
                 "ttd_seconds": round(o.flagged_at_ts - o.first_ts, 3) if o.flag else None}
                for o in attack
            ],
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if q == 0.5:
        return round(float(statistics.median(values)), 3)
    return round(float(np.quantile(values, q)), 3)


def score_records(records: Iterable, salt: bytes, pipeline: Pipeline,
                  linkage: LinkageRun | None = None) -> ScoreReport:
    """Every record through the pipeline; keeps the first flag of each key (its strongest
    action is updated as the ladder climbs). With `linkage`, the clustering pass runs in
    simulated time too, and flags members of linked networks through the same ladders."""
    report = ScoreReport()
    states: dict[str, KeyState] = {}
    pending: list[tuple[KeyState, Snapshot]] = []
    for record in records:
        outcome = report.keys.get(record.key_id)
        if outcome is None:
            outcome = report.keys[record.key_id] = KeyOutcome(record.key_id, record.label, record.scenario,
                                                              first_ts=record.ts)
        outcome.requests += 1
        report.requests += 1
        state = states.get(record.key_id)
        if state is None:
            state = states[record.key_id] = KeyState()
        features = record_features(record, salt)
        if linkage is not None:
            if linkage.due(features.ts):
                _apply(pipeline.evaluate(pending), report)
                pending = []
                _apply(linkage.run(states), report)
            linkage.observe(features)
        snapshot = pipeline.observe(state, features)
        if snapshot is not None:
            pending.append((state, snapshot))
            if len(pending) >= BATCH:
                _apply(pipeline.evaluate(pending), report)
                pending = []
    _apply(pipeline.evaluate(pending), report)
    if linkage is not None and linkage.next_pass is not None:
        _apply(linkage.run(states), report)  # the pass due right after the last record
    return report


def _apply(evaluations, report: ScoreReport) -> None:
    for evaluation in evaluations:
        outcome = report.keys[evaluation.key_id]
        for verdict in evaluation.verdicts:
            outcome.max_score = max(outcome.max_score, verdict.score)
        change = evaluation.change
        if change is None or change.action == "none":
            continue
        if outcome.flag is None:
            outcome.flagged_at_ts = change.first_flagged_at
        outcome.flag = change.flag()



def format_summary(summary: dict) -> str:
    """The per-scenario table a reviewer reads first."""
    lines = [
        f"requests {summary['requests']}, keys {summary['keys']}, flagged {summary['flagged_keys']}; "
        f"precision {summary['precision']}, recall {summary['recall']}, "
        f"false-positive rate {summary['false_positive_rate']}",
        "",
        f"{'scenario':<26} {'label':<7} {'keys':>6} {'flagged':>8} {'rate':>7} {'ttd req p50':>12} {'p90':>6} {'ttd s p50':>10}",
    ]
    for name, row in summary["scenarios"].items():
        rate = row.get("recall", row.get("false_positive_rate"))
        lines.append(
            f"{name:<26} {row['label']:<7} {row['keys']:>6} {row['flagged']:>8} {rate:>7.3f} "
            f"{_dash(row['ttd_requests_median']):>12} {_dash(row['ttd_requests_p90']):>6} "
            f"{_dash(row['ttd_seconds_median']):>10}"
        )
    return "\n".join(lines)


def _dash(value) -> str:
    return "-" if value is None else f"{value:g}"
