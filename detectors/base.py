"""The small interface every detector implements, and what it returns.

A detector looks at one key's window features (in `FEATURE_NAMES` order) and answers
with a score in [0, 1] (higher = more like scripted harvesting), whether that score is
over its threshold, and the reasons that say why in words a reviewer can check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence: a fired rule, or a feature that pushed a model's score."""

    name: str
    feature: str
    value: float
    benign_range: tuple[float, float] | None = None
    detail: str = ""
    cluster_id: str | None = None  # linkage: the cluster a member was flagged with

    def as_dict(self) -> dict:
        data = {
            "name": self.name,
            "feature": self.feature,
            "value": round(self.value, 4),
            "benign_range": [round(v, 4) for v in self.benign_range] if self.benign_range else None,
            "detail": self.detail,
        }
        if self.cluster_id is not None:
            data["cluster_id"] = self.cluster_id
        return data


@dataclass(frozen=True, slots=True)
class Verdict:
    detector: str
    score: float
    flagged: bool
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


class Detector(Protocol):
    name: str

    def score(self, features: Sequence[float], requests_seen: int) -> Verdict:
        """Judge one key from its window features and how many requests it has sent."""
        ...
