"""Events to decisions, the same way live and offline: each key's window takes its events,
keys due for evaluation are scored in batches by every detector, and the ladder turns the
verdicts into changes of action.

A key is evaluated at fixed points of its own request count (every 5 requests up to 100,
every 20 after), never on wall time, so the live scorer, `distillguard score` and the
tests reach identical decisions on the same events.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np

from .base import Verdict
from .evidence import EvidenceDetector
from .features import RequestFeatures
from .iforest import ForestDetector
from .ladder import Change, LadderConfig, LadderState, step
from .rules import RulesDetector
from .windows import KeyWindow


def due_for_evaluation(requests_seen: int) -> bool:
    if requests_seen < 10:
        return False
    return requests_seen % 5 == 0 if requests_seen <= 100 else requests_seen % 20 == 0


@dataclass(slots=True)
class KeyState:
    """Everything the scorer keeps for one key: its window and its ladder."""

    window: KeyWindow = field(default_factory=KeyWindow)
    ladder: LadderState = field(default_factory=LadderState)
    last_event_id: str = ""
    last_verdicts: list[dict] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        data = {
            "window": self.window.to_dict(), "ladder": self.ladder.as_dict(),
            "last_event_id": self.last_event_id, "last_verdicts": self.last_verdicts,
        }
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "KeyState":
        data = json.loads(zlib.decompress(blob))
        return cls(KeyWindow.from_dict(data["window"]), LadderState.from_dict(data["ladder"]),
                   data.get("last_event_id", ""), data.get("last_verdicts", []))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A key's window features at the moment it became due: evaluating later, after more
    events, would make decisions depend on batch boundaries."""

    key_id: str
    features: list[float]
    requests_seen: int
    ts: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    key_id: str
    requests_seen: int
    features: list[float]
    verdicts: tuple[Verdict, ...]
    change: Change | None


class Pipeline:
    """Windows, detectors and ladder wired together; pure, no I/O."""

    def __init__(self, rules: RulesDetector, forest: ForestDetector | None, ladder: LadderConfig,
                 evidence: EvidenceDetector | None | bool = True) -> None:
        """`evidence`: a configured detector, True for the default one, None/False for none."""
        self.rules = rules
        self.forest = forest
        self.ladder = ladder
        self.evidence = EvidenceDetector() if evidence is True else (evidence or None)

    def observe(self, state: KeyState, event: RequestFeatures) -> Snapshot | None:
        """Add one event to its key's window; a Snapshot when the key is now due."""
        window = state.window
        window.update(event)
        if not due_for_evaluation(window.requests_seen):
            return None
        return Snapshot(event.key_id, window.features(), window.requests_seen, event.ts)

    def evaluate(self, due: list[tuple[KeyState, Snapshot]]) -> list[Evaluation]:
        """Score every snapshot (the forest in one batch) and step each key's ladder, in order."""
        if not due:
            return []
        matrix = np.asarray([snapshot.features for _, snapshot in due], dtype=np.float64)
        seen = [snapshot.requests_seen for _, snapshot in due]
        forest_verdicts = self.forest.score_many(matrix, seen) if self.forest else [None] * len(due)
        evaluations = []
        for (state, snapshot), row, forest_verdict in zip(due, matrix, forest_verdicts):
            key_id, count = snapshot.key_id, snapshot.requests_seen
            verdicts = [self.rules.score(row, count)]
            if self.evidence is not None:
                verdicts.insert(0, self.evidence.score(row, count))
            if forest_verdict is not None:
                verdicts.append(forest_verdict)
            state.last_verdicts = [
                {"detector": v.detector, "score": round(v.score, 4), "flagged": v.flagged,
                 "reasons": [r.as_dict() for r in v.reasons]}
                for v in verdicts
            ]
            change = step(self.ladder, state.ladder, key_id, verdicts, snapshot.ts, count)
            # The window's own list: unknown features are its one NaN object, so equal evaluations
            # compare equal (a fresh NaN never equals another).
            evaluations.append(Evaluation(key_id, count, snapshot.features, tuple(verdicts), change))
        return evaluations
