"""Ladder changes -> what reviewers and the gateway see: the key's flag record (and its alert),
then the decision, through the one door every decision takes (service/decisions.py).

A decision a person set (`distillguard keys ...`, the console) is never overwritten or lifted
here: the door lets the scorer replace only decisions it wrote itself (`set_by` `scorer:...`).
"""

from __future__ import annotations

import logging

from detectors.pipeline import Evaluation

from .. import metrics
from ..alerts.sender import AlertSender, alert_on_flag
from ..decisions import Actor, Policy, apply_decision
from ..records.flags import write_flag

log = logging.getLogger("distillguard.actions")


async def apply_evaluations(client, evaluations: list[Evaluation], *, flags_kept: int, policy: Policy,
                            alerts: AlertSender | None = None) -> None:
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
        await alert_on_flag(alerts, client, change, first_flag=first_flag)
        await apply_decision(client, policy, Actor("scorer", change.detector), change.key_id, change.action,
                             change=change, audit_details={"first_flag": first_flag}, alerts=alerts)
