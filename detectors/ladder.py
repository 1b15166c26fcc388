"""Scores to actions: flag for review, then throttle, then (only if configured) block.

Hysteresis keeps a key from flapping: stepping up takes `throttle_after` / `block_after`
flagged evaluations in a row, stepping down takes `release_after` clean ones. Actions
expire after `action_ttl_seconds` unless confirmed again. Shadow mode records flags but
acts on nothing; allowlisted keys are flagged for visibility but never acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Reason, Verdict

LEVELS = ("none", "flag", "throttle", "block")


@dataclass(frozen=True, slots=True)
class LadderConfig:
    throttle_after: int = 3
    block_after: int = 0
    release_after: int = 10
    clear_below: float = 0.3
    action_ttl_seconds: float = 86400.0
    throttle_tier: str = "throttled"
    shadow: bool = False
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

    def as_dict(self) -> dict:
        return {
            "level": self.level, "flagged_streak": self.flagged_streak, "clean_streak": self.clean_streak,
            "first_flagged_at": self.first_flagged_at, "requests_before_flag": self.requests_before_flag,
            "score": self.score, "detector": self.detector, "reasons": self.reasons,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LadderState":
        return cls(**data)


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

    def flag(self) -> dict:
        return {
            "key_id": self.key_id, "action": self.action, "score": round(self.score, 4),
            "detector": self.detector, "reasons": list(self.reasons),
            "first_flagged_at": self.first_flagged_at, "requests_before_flag": self.requests_before_flag,
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


def step(config: LadderConfig, state: LadderState, key_id: str, verdicts: list[Verdict],
         ts: float, requests_seen: int) -> Change | None:
    """Advance one key's ladder by one evaluation; a Change when its action moves."""
    if not verdicts:
        return None
    strongest = _strongest(verdicts)
    flagged = any(v.flagged for v in verdicts)
    if flagged:
        state.flagged_streak += 1
        state.clean_streak = 0
    elif strongest.score < config.clear_below:
        state.clean_streak += 1
        state.flagged_streak = 0
    else:  # uncertain: neither confirms nor clears
        state.flagged_streak = 0
        state.clean_streak = 0
    target = state.level
    if flagged:
        target = max(target, 1)
        if config.throttle_after and state.flagged_streak >= config.throttle_after:
            target = max(target, 2)
        if config.block_after and state.flagged_streak >= config.block_after:
            target = max(target, 3)
    elif state.level > 0 and state.clean_streak >= config.release_after:
        target = state.level - 1
        state.clean_streak = 0
    if target == state.level:
        return None
    if state.first_flagged_at is None:
        state.first_flagged_at = ts
        state.requests_before_flag = requests_seen
    state.level = target
    if flagged:
        state.score, state.detector = strongest.score, strongest.detector
        state.reasons = list(_reasons(verdicts))
    action = LEVELS[target]
    enforce = not config.shadow and key_id not in config.allowlist
    return Change(key_id, action, state.score, state.detector, tuple(state.reasons),
                  state.first_flagged_at, state.requests_before_flag, enforce, config.action_ttl_seconds)
