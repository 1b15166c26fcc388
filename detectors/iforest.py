"""Isolation forest over benign window features: "scripted mass-query" behaviour that
honest keys do not show. Train, calibrate, score and explain, with one meaning everywhere.

Calibration picks the threshold that flags `target_fpr` of held-out benign keys. A score
over it flags only when the explanation shows a content feature outside its benign range
in the harvesting direction: an honest key that is merely unusual in volume or timing is
not a harvester, and precision comes first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Reason, Verdict
from .windows import FEATURE_NAMES

MODEL_VERSION = 1
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]

# +1: high values point to harvesting, -1: low values do, 0: neither.
FEATURE_DIRECTIONS: dict[str, int] = {
    "requests_last_hour": +1, "interarrival_cv": -1, "hours_active_24": +1,
    "near_duplicate_share": +1, "template_diversity": +1, "unique_prompt_share": +1,
    "prompt_tokens_log_mean": -1, "prompt_length_cv": 0, "completion_tokens_log_mean": +1,
    "completion_to_prompt_ratio": +1, "max_tokens_log_mean": +1, "reasoning_share": +1,
    "logprobs_share": +1, "top_logprobs_mean": +1, "multi_choice_share": +1,
    "single_turn_share": +1, "system_prompt_share": 0, "sampling_spread": 0, "greedy_share": 0,
    "ip_prefixes": +1, "user_agents": +1, "error_rate": 0, "rate_limited_share": +1,
    "task_generation_share": +1, "public_eval_share": 0, "standalone_share": +1,
    # Request shape: a fixed template, tool use, judgements and scale are honest automation's
    # too, so they point nowhere alone; the rest point to harvesting.
    "template_share": 0, "variable_tokens_log_mean": 0, "answer_to_variable_ratio": +1,
    "logprobs_generated_share": +1, "tool_use_share": 0, "tool_results_share": 0, "toolset_diversity": +1,
    "mirrored_turn_share": +1, "judgement_share": 0, "rewrite_share": +1, "distinct_tasks_log": 0,
}
# Volume and timing alone never justify a flag: honest automation shares them. Running a
# public benchmark is not evidence of harvesting either.
CONTENT_FEATURES = frozenset(FEATURE_NAMES) - {
    "requests_last_hour", "interarrival_cv", "hours_active_24", "rate_limited_share", "error_rate",
    "public_eval_share",
}


# Features that say one thing count as one piece of evidence: long answers are mostly the
# model's doing, and asking for reasoning is asking for a long answer (reasoning-app users
# get both from every question), and a request with no history is one whose history does
# not continue a conversation.
EVIDENCE_GROUP = {"completion_tokens_log_mean": "long_answers", "completion_to_prompt_ratio": "long_answers",
                  "answer_to_variable_ratio": "long_answers", "logprobs_generated_share": "logprobs_share",
                  "reasoning_share": "long_answers", "single_turn_share": "turns", "standalone_share": "turns"}
GREEDY_INDEX = FEATURE_NAMES.index("greedy_share")


def impute(windows: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Unknown features (NaN: too few requests carried the field) take the benign median, so
    a missing field neither looks like harvesting nor like its absence."""
    windows = np.asarray(windows, dtype=np.float64)
    if not np.isnan(windows).any():
        return windows
    return np.where(np.isnan(windows), median, windows)


def _benign_median(benign: np.ndarray) -> np.ndarray:
    """Per-feature median of the known values; 0 for a feature no benign window knew."""
    known = ~np.isnan(benign)
    return np.array([float(np.median(benign[known[:, j], j])) if known[:, j].any() else 0.0
                     for j in range(benign.shape[1])])


class ModelFileError(ValueError):
    """A model file that must not be loaded: unexpected types or a mismatched card."""


@dataclass
class ForestModel:
    forest: "IsolationForest"  # noqa: F821 (sklearn is imported where a forest is built, not at start)
    threshold: float
    low: np.ndarray
    high: np.ndarray
    median: np.ndarray
    card: dict
    # Raw scores of the held-out benign windows the threshold was calibrated on; only on a
    # model just fitted (a later calibration step, e.g. with reviewer labels, uses them).
    holdout_raw: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(
        cls,
        benign: np.ndarray,
        *,
        target_fpr: float = 0.001,
        holdout_fraction: float = 0.3,
        seed: int = 0,
        n_estimators: int = 200,
        extra_card: dict | None = None,
    ) -> "ForestModel":
        """Fit on part of the benign windows, calibrate the threshold on the rest."""
        benign = np.asarray(benign, dtype=np.float64)
        median = _benign_median(benign)
        unknown_share = np.isnan(benign).mean(axis=0) if len(benign) else np.zeros(benign.shape[1])
        benign = impute(benign, median)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(benign))
        cut = int(len(benign) * (1 - holdout_fraction))
        train, holdout = benign[order[:cut]], benign[order[cut:]]
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=n_estimators, max_samples=min(256, len(train)), random_state=seed)
        forest.fit(train)
        holdout_raw = -forest.score_samples(holdout)
        threshold = float(np.quantile(holdout_raw, 1 - target_fpr, method="higher")) + 1e-9
        low, high = np.quantile(benign, 0.01, axis=0), np.quantile(benign, 0.99, axis=0)
        card = {
            "version": MODEL_VERSION,
            "feature_names": list(FEATURE_NAMES),
            "threshold": threshold,
            "target_fpr": target_fpr,
            "training_rows": int(len(train)),
            "holdout_rows": int(len(holdout)),
            "training_data_sha256": hashlib.sha256(np.ascontiguousarray(benign).tobytes()).hexdigest(),
            "validation": {"holdout_fpr_at_threshold": float(np.mean(holdout_raw >= threshold))},
            "benign_low": low.tolist(),
            "benign_high": high.tolist(),
            "benign_median": median.tolist(),
            "imputation": "a feature too few requests carried (NaN) takes its benign_median, in training and scoring",
            "unknown_share_in_training": [round(float(v), 4) for v in unknown_share],
            "seed": seed,
            "n_estimators": n_estimators,
            **(extra_card or {}),
        }
        return cls(forest, threshold, low, high, median, card, holdout_raw)

    def raw_scores(self, windows: np.ndarray) -> np.ndarray:
        """Anomaly scores, higher = more anomalous (sklearn's score_samples, negated)."""
        return -self.forest.score_samples(impute(windows, self.median))

    def normalise(self, raw: np.ndarray | float) -> np.ndarray | float:
        """Maps raw scores to [0, 1] with the threshold at 0.5."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(raw) - self.threshold) / 0.02))

    def explain(self, window: Sequence[float], top: int = 3) -> tuple[Reason, ...]:
        """The features that pushed this window's score most: how much the score drops when
        each one alone is set to its benign median."""
        x = impute(np.asarray(window, dtype=np.float64)[None, :], self.median)[0]
        probes = np.repeat(x[None, :], len(x) + 1, axis=0)
        probes[np.arange(1, len(x) + 1), np.arange(len(x))] = self.median
        raw = self.raw_scores(probes)
        pushes = raw[0] - raw[1:]
        reasons = []
        for index in np.argsort(-pushes)[: top * 2]:
            if pushes[index] <= 0 or len(reasons) >= top:
                continue
            name = FEATURE_NAMES[index]
            reasons.append(Reason(
                name=f"unusual_{name}", feature=name, value=float(x[index]),
                benign_range=(float(self.low[index]), float(self.high[index])),
                detail=f"{name}={x[index]:.3g}, benign 1st-99th percentile {self.low[index]:.3g}-{self.high[index]:.3g}",
            ))
        return tuple(reasons)

    def harvesting_evidence(self, window: Sequence[float], reasons: tuple[Reason, ...]) -> bool:
        """True when at least two top reasons are content features beyond their benign range,
        in the direction harvesting pushes them, and they are not both about answer length:
        long answers alone are what reasoning models give every honest user. Keys that pin
        temperature 0 on nearly every request look like evaluations and are left to the
        rules (logprobs, reasoning traces)."""
        if window[GREEDY_INDEX] >= 0.95:  # NaN (unknown) compares False: judged on the rest
            return False
        evidence = set()
        for reason in reasons:
            direction = FEATURE_DIRECTIONS.get(reason.feature, 0)
            if reason.feature not in CONTENT_FEATURES or direction == 0 or reason.benign_range is None:
                continue
            low, high = reason.benign_range
            if (direction > 0 and reason.value > high) or (direction < 0 and reason.value < low):
                evidence.add(EVIDENCE_GROUP.get(reason.feature, reason.feature))
        return len(evidence) >= 2

    def save(self, path: str | Path) -> Path:
        """Writes `<path>.skops` (the forest, no pickle) and `<path>.json` (the model card)."""
        import skops.io as sio

        path = Path(path).with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(self.forest, path.with_suffix(".skops"))
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ForestModel":
        """Loads a model, refusing unexpected types in the file or a card that does not match."""
        import skops.io as sio

        path = Path(path).with_suffix("")
        card = json.loads(path.with_suffix(".json").read_text())
        if card.get("feature_names") != list(FEATURE_NAMES):
            raise ModelFileError(f"{path}.json: feature list does not match this version's window features")
        if card.get("version") != MODEL_VERSION:
            raise ModelFileError(f"{path}.json: model version {card.get('version')} is not {MODEL_VERSION}")
        untrusted = sio.get_untrusted_types(file=path.with_suffix(".skops"))
        unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unexpected:
            raise ModelFileError(f"{path}.skops: refusing unexpected types {unexpected}")
        forest = sio.load(path.with_suffix(".skops"), trusted=TRUSTED_TYPES)
        from sklearn.ensemble import IsolationForest

        if not isinstance(forest, IsolationForest) or forest.n_features_in_ != len(FEATURE_NAMES):
            raise ModelFileError(f"{path}.skops: not an IsolationForest over {len(FEATURE_NAMES)} features")
        return cls(forest, float(card["threshold"]), np.asarray(card["benign_low"]),
                   np.asarray(card["benign_high"]), np.asarray(card["benign_median"]), card)


class ForestDetector:
    """The forest as a detector: flags a window over the threshold with harvesting evidence."""

    name = "iforest"

    def __init__(self, model: ForestModel, min_requests: int = 20) -> None:
        self.model = model
        self.min_requests = min_requests

    def score_many(self, windows: np.ndarray, requests_seen: Sequence[int]) -> list[Verdict]:
        """Scores a batch at once (one sklearn call), explaining only what crosses the threshold."""
        if len(windows) == 0:
            return []
        raw = self.model.raw_scores(windows)
        scores = self.model.normalise(raw)
        verdicts = []
        for row, raw_score, score, seen in zip(windows, raw, scores, requests_seen):
            if seen < self.min_requests or raw_score < self.model.threshold:
                verdicts.append(Verdict(self.name, float(score), False))
                continue
            reasons = self.model.explain(row)
            flagged = self.model.harvesting_evidence(row, reasons)
            verdicts.append(Verdict(self.name, float(score), flagged, reasons))
        return verdicts

    def score(self, features: Sequence[float], requests_seen: int) -> Verdict:
        return self.score_many(np.asarray([features], dtype=np.float64), [requests_seen])[0]


