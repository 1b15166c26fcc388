"""Why a key was flagged, in rows a reviewer can check: each reason with its value against
the honest range, and every window feature against the range honest keys show.

The honest range of a feature is the 1st-99th percentile of the benign windows the model was
fitted on, read from the model card (`models/*.json`: `benign_low`, `benign_median`,
`benign_high`), so the page needs neither the forest nor scikit-learn. Without a model card
the ranges are simply not shown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from detectors.iforest import FEATURE_DIRECTIONS
from detectors.windows import FEATURE_NAMES
from models import DEFAULT_MODEL

log = logging.getLogger("distillguard.console")


@dataclass(frozen=True)
class HonestRange:
    low: float
    median: float
    high: float


@dataclass(frozen=True)
class EvidenceRow:
    name: str  # a reason's name or a feature's
    feature: str
    value: float | None
    honest: HonestRange | tuple[float, float] | None
    detail: str = ""
    outside: str = ""  # "above" / "below" the honest range, "" within or unknown
    harvesting_side: bool = False  # outside on the side harvesting pushes this feature


@lru_cache(maxsize=4)
def honest_ranges(model_path: str | None) -> dict[str, HonestRange]:
    """Per window feature, from the configured model's card (else the shipped default's)."""
    card_path = Path(model_path).with_suffix(".json") if model_path else DEFAULT_MODEL.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
        if card.get("feature_names") != list(FEATURE_NAMES):
            raise ValueError("its features are not this version's")
        return {name: HonestRange(float(low), float(median), float(high)) for name, low, median, high in
                zip(FEATURE_NAMES, card["benign_low"], card["benign_median"], card["benign_high"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("console: no honest ranges from %s (%s)", card_path, exc)
        return {}


def _placement(feature: str, value: float | None, honest) -> tuple[str, bool]:
    if value is None or honest is None:
        return "", False
    low, high = (honest.low, honest.high) if isinstance(honest, HonestRange) else honest
    direction = FEATURE_DIRECTIONS.get(feature, 0)
    if value > high:
        return "above", direction > 0
    if value < low:
        return "below", direction < 0
    return "", False


def reason_rows(reasons: list[dict], ranges: dict[str, HonestRange]) -> list[EvidenceRow]:
    """The flag's reasons; a rule's reason gets its feature's honest range from the card, a
    model's reason keeps the range it was judged against."""
    rows = []
    for reason in reasons:
        feature = reason.get("feature", "")
        value = reason.get("value")
        honest = ranges.get(feature)
        if reason.get("benign_range"):
            honest = tuple(reason["benign_range"])
        outside, harvesting = _placement(feature, value, honest)
        rows.append(EvidenceRow(reason.get("name", ""), feature, value, honest, reason.get("detail", ""),
                                outside, harvesting))
    return rows


def feature_rows(features: dict[str, float], ranges: dict[str, HonestRange]) -> list[EvidenceRow]:
    """Every window feature against its honest range; those outside on the harvesting side
    first, then the rest outside, then the others in their usual order."""
    rows = []
    for name in FEATURE_NAMES:
        if name not in features:
            continue
        value, honest = features[name], ranges.get(name)
        outside, harvesting = _placement(name, value, honest)
        rows.append(EvidenceRow(name, name, value, honest, "", outside, harvesting))
    order = {name: index for index, name in enumerate(FEATURE_NAMES)}
    return sorted(rows, key=lambda row: (not row.harvesting_side, not row.outside, order[row.name]))


def verdict_reasons(flag: dict | None, last_verdicts: list[dict]) -> list[dict]:
    """The reasons behind the current flag; with no flag record, the last flagged verdicts'."""
    if flag and flag.get("reasons"):
        return list(flag["reasons"])
    return [reason for verdict in last_verdicts if verdict.get("flagged") for reason in verdict.get("reasons", [])]
