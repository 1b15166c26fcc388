"""Ladder changes -> what reviewers and the gateway see: the key's flag record, and the
per-key decision that the admission script enforces.

A decision a person set (`distillguard keys ...`) is never overwritten or lifted here: the
scorer only replaces decisions it wrote itself (`set_by` starting with `scorer:`).
"""

from __future__ import annotations

import logging

from detectors.ladder import Change
from detectors.pipeline import Evaluation

from .. import metrics
from ..decisions import get_decision, set_decision
from ..review.actions import is_dismissed, mark_left_alone
from ..review.alerts import AlertSender, alert_on_change
from ..review.audit import audit_quietly
from .flags import write_flag

log = logging.getLogger("distillguard.actions")

SET_BY_PREFIX = "scorer:"
# What a blocked client reads in its 403: which rule fired stays with the reviewers.
ENFORCED_REASON = "suspected_distillation"


async def apply_evaluations(client, evaluations: list[Evaluation], *, flags_kept: int, throttle_tier: str,
                            alerts: AlertSender | None = None, audit_retention: float | None = None) -> None:
    """Record scores, then write each change's flag and decision, in evaluation order; new
    flags and enforced throttles and blocks are queued as alerts (never awaited on the network).
    Every change is one audit entry by actor `scorer`; a failed audit write never fails the batch."""
    for evaluation in evaluations:
        for verdict in evaluation.verdicts:
            metrics.DETECTOR_SCORE.labels(verdict.detector).observe(verdict.score)
        change = evaluation.change
        if change is None:
            continue
        metrics.ACTIONS.labels(change.detector, change.action).inc()
        log.info("key %s -> %s after %d requests (%s: %s)%s", change.key_id, change.action,
                 evaluation.requests_seen, change.detector,
                 ", ".join(reason["name"] for reason in change.reasons) or "-",
                 "" if change.enforce else " [not enforced: shadow mode or allowlist]")
        first_flag = await write_flag(client, change, flags_kept)
        if first_flag:
            metrics.FLAGS.labels(change.detector).inc()
        enforced = await decide(client, change, throttle_tier)
        await audit_quietly(client, "scorer", actor="scorer", action=change.action, target=change.key_id,
                            reason=", ".join(reason["name"] for reason in change.reasons),
                            details={"detector": change.detector, "score": round(change.score, 4),
                                     "enforced": enforced, "first_flag": first_flag},
                            retention_seconds=audit_retention)
        await alert_on_change(alerts, client, change, first_flag=first_flag, enforced=enforced)


async def decide(client, change: Change, throttle_tier: str) -> bool:
    """Throttle or block as the ladder says; when it falls back to flag or none, lift the
    scorer's own throttle or block. Shadow mode and allowlisted keys (`enforce` false) only
    get their flag, and so does a key a reviewer dismissed, until its quiet period ends.
    True when it set a throttle or block."""
    if not change.enforce:
        return False
    if change.action in ("throttle", "block") and await is_dismissed(client, change.key_id):
        log.info("key %s left alone: a reviewer dismissed it", change.key_id)
        await mark_left_alone(client, change.key_id)
        return False
    current = await get_decision(client, change.key_id)
    if current.action != "allow" and not current.set_by.startswith(SET_BY_PREFIX):
        return False
    set_by = SET_BY_PREFIX + change.detector
    note = ", ".join(reason["name"] for reason in change.reasons)
    if change.action == "block":
        await set_decision(client, change.key_id, "block", reason=ENFORCED_REASON, note=note,
                           set_by=set_by, ttl_seconds=change.ttl_seconds)
        return True
    if change.action == "throttle":
        await set_decision(client, change.key_id, "throttle", tier=throttle_tier, reason=ENFORCED_REASON,
                           note=note, set_by=set_by, ttl_seconds=change.ttl_seconds)
        return True
    if current.action != "allow":
        await set_decision(client, change.key_id, "allow", note=f"ladder fell to {change.action}",
                           set_by=set_by, ttl_seconds=change.ttl_seconds)
    return False
