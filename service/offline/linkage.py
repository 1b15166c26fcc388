"""Linkage in simulated time, beside per-key scoring: `distillguard score` and `evaluate`
update every key's signature as its events arrive and run the clustering pass once per
simulated period (`detection.linkage.every_s`), stepping the flagged members' ladders as
the live scorer does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from detectors.features import RequestFeatures
from detectors.ladder import LadderConfig, step
from detectors.linkage import KeySignature, LinkageDetector, LinkageResult
from detectors.pipeline import Evaluation, KeyState

if TYPE_CHECKING:
    from ..config import Settings

PASS_EVERY_S = 600.0


def linkage_run(settings: Settings) -> LinkageRun | None:
    """The run the settings ask for: the live scorer's detector thresholds, ladder and pass
    period (`detection.linkage`), or None when linkage is off."""
    from ..scoring.detection import ladder_config
    from ..scoring.linkage import linkage_config

    linkage = settings.detection.linkage
    if not linkage.enabled:
        return None
    return LinkageRun(LinkageDetector(linkage_config(linkage)), ladder_config(settings.detection), linkage.every_s)


class LinkageRun:
    """Signatures of every key seen, and the pass due at each multiple of `every_s`."""

    def __init__(self, detector: LinkageDetector | None = None, ladder: LadderConfig | None = None,
                 every_s: float = PASS_EVERY_S) -> None:
        self.detector = detector or LinkageDetector()
        self.ladder = ladder or LadderConfig()
        self.every_s = every_s
        self.signatures: dict[str, KeySignature] = {}
        self.next_pass: float | None = None
        self.passes = 0
        self.last: LinkageResult | None = None
        self.first_flagged: dict[str, float] = {}  # key_id -> ts of the first pass that flagged it
        self.first_linked: dict[str, float] = {}  # key_id -> ts of the first pass that put it in a cluster

    def observe(self, event: RequestFeatures) -> None:
        signature = self.signatures.get(event.key_id)
        if signature is None:
            signature = self.signatures[event.key_id] = KeySignature()
        signature.update(event)
        if self.next_pass is None:
            self.next_pass = (event.ts // self.every_s + 1) * self.every_s

    def due(self, ts: float) -> bool:
        """Whether a pass is due before an event at `ts` is counted."""
        return self.next_pass is not None and ts >= self.next_pass

    def run(self, states: Mapping[str, KeyState], now: float | None = None) -> list[Evaluation]:
        """One pass at the due time (or `now`); every flagged member's ladder takes one step."""
        now = self.next_pass if now is None else now
        result = self.last = self.detector.run(self.signatures, now)
        self.passes += 1
        for cluster in result.clusters:
            for key_id in cluster.members:
                self.first_linked.setdefault(key_id, now)
        evaluations = []
        for key_id, verdict in result.member_verdicts.items():
            state = states[key_id]
            seen = state.window.requests_seen
            change = step(self.ladder, state.ladder, key_id, [verdict], now, seen)
            self.first_flagged.setdefault(key_id, now)
            evaluations.append(Evaluation(key_id, seen, [], (verdict,), change))
        stale = now - 2 * self.detector.config.window_s
        for key_id in [key_id for key_id, sig in self.signatures.items() if sig.last_ts < stale]:
            del self.signatures[key_id]
        while self.next_pass is not None and self.next_pass <= now:
            self.next_pass += self.every_s
        return evaluations
