"""Scores to actions: flag for review, then throttle, then (only if configured) block.

Hysteresis keeps a key from flapping: stepping up takes `throttle_after` / `block_after`
flagged evaluations in a row; stepping down takes `release_after` clean evaluations AND
`release_after_requests` clean requests AND `release_after_seconds` of clean time, so
neither a burst of cheap clean requests nor a quiet hour alone relaxes an action.

Evidence sticks: a flagged key never falls below `flag` on its own (`sticky`); the flag
stays on the review queue, marked "harvest seen, now quiet", until a reviewer acts. Each
key remembers its strongest evidence (`LadderState.peak`, bounded) and how many requests
its harvest spanned; a longer harvest takes as many clean requests to relax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Reason, Verdict

LEVELS = ("none", "flag", "throttle", "block")
HARVESTING = "harvesting"
QUIET = "harvest seen, now quiet"
PEAK_REASONS_KEPT = 12


@dataclass(frozen=True, slots=True)
class LadderConfig:
    throttle_after: int = 3
    block_after: int = 0
    release_after: int = 10
    release_after_requests: int = 200
    release_after_seconds: float = 3600.0
    clear_below: float = 0.3
    action_ttl_seconds: float = 86400.0
    throttle_tier: str = "throttled"
    shadow: bool = False
    sticky: bool = True
    release_scales_with_harvest: bool = True
    allowlist: frozenset[str] = frozenset()


@dataclass(slots=True)
class LadderState:
    level: int = 0
    flagged_streak: int = 0
    clean_streak: int = 0
    first_flagged_at: float | None = None
    requests_before_flag: int | None = None
    score: float = 0.0
    detector: str = ""
    reasons: list[dict] = field(default_factory=list)
    # The clean run in progress: when and at which request count it began (None: not clean).
    clean_since_ts: float | None = None
    clean_since_requests: int | None = None
    # Long-term memory: the strongest flagged evidence ever seen, and the harvest's extent.
    peak: dict = field(default_factory=dict)
    flagged_evaluations: int = 0
    harvest_first_requests: int | None = None
    harvest_last_requests: int | None = None
    activity: str = ""

    def as_dict(self) -> dict:
        return {
            "level": self.level, "flagged_streak": self.flagged_streak, "clean_streak": self.clean_streak,
            "first_flagged_at": self.first_flagged_at, "requests_before_flag": self.requests_before_flag,
            "score": self.score, "detector": self.detector, "reasons": self.reasons,
            "clean_since_ts": self.clean_since_ts, "clean_since_requests": self.clean_since_requests,
            "peak": self.peak, "flagged_evaluations": self.flagged_evaluations,
            "harvest_first_requests": self.harvest_first_requests,
            "harvest_last_requests": self.harvest_last_requests, "activity": self.activity,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LadderState:
        return cls(**data)  # older checkpoints lack the memory fields, which take their defaults

    @property
    def harvest_span(self) -> int:
        """How many requests the key's flagged evaluations spanned (0 before any flag)."""
        if self.harvest_first_requests is None or self.harvest_last_requests is None:
            return 0
        return self.harvest_last_requests - self.harvest_first_requests


@dataclass(frozen=True, slots=True)
class Change:
    """A key's action changed: what the flag store and the gateway's decision should say."""

    key_id: str
    action: str
    score: float
    detector: str
    reasons: tuple[dict, ...]
    first_flagged_at: float
    requests_before_flag: int
    enforce: bool
    ttl_seconds: float
    activity: str = HARVESTING
    harvest_span_requests: int = 0

    def flag(self) -> dict:
        return {
            "key_id": self.key_id, "action": self.action, "score": round(self.score, 4),
            "detector": self.detector, "reasons": list(self.reasons),
            "first_flagged_at": self.first_flagged_at, "requests_before_flag": self.requests_before_flag,
            "activity": self.activity, "harvest_span_requests": self.harvest_span_requests,
        }


def _strongest(verdicts: list[Verdict]) -> Verdict:
    flagged = [v for v in verdicts if v.flagged]
    pool = flagged or verdicts
    return max(pool, key=lambda v: v.score)


def _reasons(verdicts: list[Verdict]) -> tuple[dict, ...]:
    seen: list[Reason] = []
    for verdict in verdicts:
        if verdict.flagged:
            seen.extend(verdict.reasons)
    return tuple(reason.as_dict() for reason in seen)


def _remember(state: LadderState, strongest: Verdict, verdicts: list[Verdict], requests_seen: int) -> None:
    """Keep the strongest flagged evidence and the extent of the harvest; bounded in size."""
    state.flagged_evaluations += 1
    if state.harvest_first_requests is None:
        state.harvest_first_requests = requests_seen
    state.harvest_last_requests = requests_seen
    if strongest.score >= state.peak.get("score", -1.0):
        state.peak = {"score": strongest.score, "detector": strongest.detector, "requests_seen": requests_seen,
                      "reasons": list(_reasons(verdicts))[:PEAK_REASONS_KEPT]}


def _clean_long_enough(config: LadderConfig, state: LadderState, ts: float, requests_seen: int) -> bool:
    """Clean evaluations, clean requests and clean time, all three; a longer harvest needs
    as many clean requests as it spanned."""
    if state.clean_since_ts is None or state.clean_since_requests is None:
        return False
    needed_requests = config.release_after_requests
    if config.release_scales_with_harvest:
        needed_requests = max(needed_requests, state.harvest_span)
    return (state.clean_streak >= config.release_after
            and requests_seen - state.clean_since_requests >= needed_requests
            and ts - state.clean_since_ts >= config.release_after_seconds)


def step(config: LadderConfig, state: LadderState, key_id: str, verdicts: list[Verdict],
         ts: float, requests_seen: int) -> Change | None:
    """Advance one key's ladder by one evaluation; a Change when its action or activity moves."""
    if not verdicts:
        return None
    strongest = _strongest(verdicts)
    flagged = any(v.flagged for v in verdicts)
    if flagged:
        state.flagged_streak += 1
        state.clean_streak = 0
        state.clean_since_ts = state.clean_since_requests = None
        _remember(state, strongest, verdicts, requests_seen)
    elif strongest.score < config.clear_below:
        state.clean_streak += 1
        state.flagged_streak = 0
        if state.clean_since_ts is None:
            state.clean_since_ts, state.clean_since_requests = ts, requests_seen
    else:  # uncertain: neither confirms nor clears
        state.flagged_streak = 0
        state.clean_streak = 0
        state.clean_since_ts = state.clean_since_requests = None
    target, activity = state.level, state.activity
    if flagged:
        activity = HARVESTING
        target = max(target, 1)
        if config.throttle_after and state.flagged_streak >= config.throttle_after:
            target = max(target, 2)
        if config.block_after and state.flagged_streak >= config.block_after:
            target = max(target, 3)
    elif state.level > 0 and _clean_long_enough(config, state, ts, requests_seen):
        floor = 1 if config.sticky else 0
        target = max(state.level - 1, floor)
        activity = QUIET
        state.clean_streak = 0
        state.clean_since_ts, state.clean_since_requests = ts, requests_seen
    if target == state.level and activity == state.activity:
        return None
    if state.first_flagged_at is None:
        state.first_flagged_at = ts
        state.requests_before_flag = requests_seen
    state.level, state.activity = target, activity
    if flagged:
        state.score, state.detector = strongest.score, strongest.detector
        state.reasons = list(_reasons(verdicts))
    elif state.peak:  # quiet now: the flag speaks with the strongest evidence ever seen
        state.score, state.detector = state.peak["score"], state.peak["detector"]
        state.reasons = list(state.peak["reasons"])
    enforce = not config.shadow and key_id not in config.allowlist
    return Change(key_id, LEVELS[target], state.score, state.detector, tuple(state.reasons),
                  state.first_flagged_at, state.requests_before_flag, enforce, config.action_ttl_seconds,
                  activity, state.harvest_span)
