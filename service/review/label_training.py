"""`distillguard train --labels`: reviewers' verdicts taken into the next model.

A key a reviewer dismissed as a false positive is honest by the one judgement that counts,
so its windows join the honest training data whatever the traffic file says about it. A key
a reviewer confirmed never trains the forest; its windows calibrate the threshold instead
(detectors/calibration.py: precision first, lowered only within twice the target FPR). The
model card says how many labels were used and the confirmed keys' recall at the threshold.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from detectors.calibration import calibrate_with_confirmed
from detectors.iforest import ForestModel
from detectors.pipeline import due_for_evaluation
from detectors.windows import KeyWindow

from ..offline.scoring import record_features

MIN_HONEST_WINDOWS = 50
FPR_FACTOR = 2.0


@dataclass
class LabelledWindows:
    """Window features at every evaluation point, split by what training does with them."""

    honest: list = field(default_factory=list)
    confirmed: list = field(default_factory=list)
    confirmed_keys: list[str] = field(default_factory=list)  # the key of each confirmed row
    dismissed_windows: int = 0
    dismissed_keys: set[str] = field(default_factory=set)
    labelled_keys_seen: set[str] = field(default_factory=set)


def labelled_windows(records: Iterable, salt: bytes, labels: dict[str, dict]) -> LabelledWindows:
    """One pass over the traffic: dismissed keys' windows and the file's benign keys' windows
    are honest (unless a reviewer confirmed the key); confirmed keys' windows are kept apart."""
    windows: dict[str, KeyWindow] = {}
    found = LabelledWindows()
    for record in records:
        verdict = labels.get(record.key_id, {}).get("label")
        if verdict is None and record.label not in (None, "benign"):
            continue
        window = windows.setdefault(record.key_id, KeyWindow())
        window.update(record_features(record, salt))
        if verdict is not None:
            found.labelled_keys_seen.add(record.key_id)
        if not due_for_evaluation(window.requests_seen):
            continue
        if verdict == "confirmed":
            found.confirmed.append(window.features())
            found.confirmed_keys.append(record.key_id)
            continue
        found.honest.append(window.features())
        if verdict == "dismissed":
            found.dismissed_windows += 1
            found.dismissed_keys.add(record.key_id)
    return found


def train_with_labels(records: Iterable, salt: bytes, labels: dict[str, dict], *, target_fpr: float, seed: int,
                      source: str, labels_source: str) -> ForestModel:
    """Fit on the honest windows (dismissed keys included), then calibrate with confirmed keys."""
    data = labelled_windows(records, salt, labels)
    if len(data.honest) < MIN_HONEST_WINDOWS:
        raise ValueError(f"{source}: only {len(data.honest)} honest windows; need at least {MIN_HONEST_WINDOWS}")
    model = ForestModel.fit(np.asarray(data.honest, dtype=np.float64), target_fpr=target_fpr, seed=seed,
                            extra_card={"training_source": source})
    confirmed_ids = {key_id for key_id, label in labels.items() if label.get("label") == "confirmed"}
    dismissed_ids = {key_id for key_id, label in labels.items() if label.get("label") == "dismissed"}
    card = {
        "source": labels_source,
        "labels_read": len(labels),
        "labels_used": len(data.labelled_keys_seen),
        "dismissed_keys": len(dismissed_ids & data.labelled_keys_seen),
        "dismissed_keys_with_windows": len(data.dismissed_keys),
        "dismissed_windows": data.dismissed_windows,
        "confirmed_keys": len(confirmed_ids & data.labelled_keys_seen),
        "confirmed_keys_with_windows": len(set(data.confirmed_keys)),
    }
    if data.confirmed:
        raw = model.raw_scores(np.asarray(data.confirmed, dtype=np.float64))
        calibration = calibrate_with_confirmed(model.threshold, model.holdout_raw, raw, target_fpr=target_fpr,
                                               fpr_factor=FPR_FACTOR)
        model.threshold = calibration.threshold
        model.card["threshold"] = calibration.threshold
        model.card["validation"]["holdout_fpr_at_threshold"] = calibration.holdout_fpr_at_threshold
        card.update(calibration.as_dict())
        card["confirmed_key_recall"] = _key_recall(data.confirmed_keys, raw, calibration.threshold)
    model.card["labels"] = card
    return model


def _key_recall(key_ids: list[str], raw: np.ndarray, threshold: float) -> float:
    """Share of confirmed keys with at least one window at or over the threshold."""
    best: dict[str, float] = {}
    for key_id, score in zip(key_ids, raw):
        best[key_id] = max(best.get(key_id, -np.inf), float(score))
    return sum(score >= threshold for score in best.values()) / len(best)


def train_command(traffic_path: str, labels_path: str, *, key_id_of, salt: bytes, target_fpr: float,
                  seed: int) -> ForestModel:
    """`train --traffic FILE --labels LABELS.jsonl`: the model, not yet saved."""
    from traffic.format import read_traffic

    from ..records.labels import read_labels_file

    labels = read_labels_file(labels_path)
    return train_with_labels(read_traffic(traffic_path, key_id_of), salt, labels, target_fpr=target_fpr, seed=seed,
                             source=os.path.basename(traffic_path), labels_source=os.path.basename(labels_path))


def describe(card: dict) -> str:
    """The line `train` prints about the labels it used."""
    labels = card.get("labels")
    if not labels:
        return ""
    line = (f"; labels {labels['labels_used']} of {labels['labels_read']} used: "
            f"{labels['dismissed_windows']} dismissed windows trained as honest, "
            f"{labels.get('confirmed_windows', 0)} confirmed windows calibrated")
    if "confirmed_key_recall" in labels:
        line += (f" (confirmed key recall {labels['confirmed_key_recall']:.3f}, "
                 f"threshold {'lowered' if labels['lowered'] else 'kept'})")
    return line
