"""The forest's threshold, revisited with keys reviewers confirmed as harvesters.

Precision comes first: the threshold the target false-positive rate gives stays, unless
lowering it catches more confirmed windows while the held-out honest windows' false-positive
rate stays within `fpr_factor` times the target. Lowering stops at a confirmed window's own
score, so every step down buys at least one more confirmed window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ConfirmedCalibration:
    threshold: float
    threshold_from_target_fpr: float
    lowered: bool
    holdout_fpr_at_threshold: float
    max_holdout_fpr: float
    confirmed_windows: int
    confirmed_window_recall: float
    confirmed_window_recall_at_target_fpr_threshold: float

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate_with_confirmed(threshold: float, honest_raw, confirmed_raw, *, target_fpr: float,
                             fpr_factor: float = 2.0) -> ConfirmedCalibration:
    """The lowest threshold at or below `threshold` (the target-FPR one) that keeps the honest
    false-positive rate within `fpr_factor * target_fpr`, chosen among confirmed windows'
    raw scores (a window flags when its raw score reaches the threshold)."""
    honest = np.sort(np.asarray(honest_raw, dtype=np.float64))
    confirmed = np.asarray(confirmed_raw, dtype=np.float64)
    if len(honest) == 0:
        raise ValueError("no held-out honest windows to bound the false-positive rate")
    max_fpr = fpr_factor * target_fpr
    chosen = threshold
    below = np.sort(confirmed[confirmed < threshold])[::-1]
    if len(below):
        # honest windows at or over each candidate; the rate only grows as candidates fall
        fprs = (len(honest) - np.searchsorted(honest, below, side="left")) / len(honest)
        within = np.count_nonzero(fprs <= max_fpr + 1e-12)  # a prefix, since the rates only grow
        if within:
            chosen = float(below[within - 1])
    return ConfirmedCalibration(
        threshold=chosen,
        threshold_from_target_fpr=threshold,
        lowered=chosen < threshold,
        holdout_fpr_at_threshold=float(np.mean(honest >= chosen)),
        max_holdout_fpr=max_fpr,
        confirmed_windows=len(confirmed),
        confirmed_window_recall=_share(confirmed >= chosen),
        confirmed_window_recall_at_target_fpr_threshold=_share(confirmed >= threshold),
    )


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else 0.0
