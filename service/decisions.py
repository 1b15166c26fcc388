"""The one door for decisions: the CLI (`distillguard keys`), the console, the admin API and
the scorer all apply a key's decision through `apply_decision`, so each writes the same records.

A person's action (block, throttle, unblock, dismiss, note) writes, in this order: the decision
the gateway enforces, the dismissal marker, the verdict as a label (`confirmed` for block and
throttle, `dismissed` for dismiss), the key's review status, exactly one audit entry, and (for
a block) a `manual_block` alert. The request is validated before anything is written: a bad
one raises BadRequest (400, with a code naming the input) and changes nothing.

The scorer's ladder change (flag, throttle, block, none) writes the decision only where no
person decided (`set_by` not starting with `scorer:`), and not on a key a reviewer dismissed
until its quiet period ends; then one audit entry by actor `scorer` (a failed audit write is
logged, never raised, so it cannot fail a batch), and a `throttle` or `block` alert when it
enforced one. The key's flag record and flag alerts are the scorer's own
(service/scoring/actions.py), since they describe what it saw, not what was decided.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Literal

from detectors.ladder import Change

from .alerts.payloads import change_event
from .config import parse_duration
from .errors import BadRequest
from .records import reviews
from .records.audit import append_audit, audit_quietly
from .records.decisions import Decision, get_decision, set_decision
from .records.labels import read_label, write_label

log = logging.getLogger("distillguard.decisions")

KEY_ID = re.compile(r"^[0-9a-f]{16}$")
CLUSTER_ID = re.compile(r"^lk-[0-9a-f]{1,32}$")
HUMAN_ACTIONS = ("block", "throttle", "unblock", "dismiss", "note")
LABEL_OF = {"block": "confirmed", "throttle": "confirmed", "dismiss": "dismissed"}
NOTE_MAX_CHARS = 2000
REASON_MAX_CHARS = 500
# What a client blocked by the scorer reads in its 403: which rule fired stays with the reviewers.
ENFORCED_REASON = "suspected_distillation"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who decides: a console reviewer, an operator at the CLI, or one of the scorer's detectors.
    A decision's `set_by` is `<kind>:<name>`; the scorer replaces only `scorer:` decisions."""

    kind: Literal["reviewer", "cli", "scorer"]
    name: str

    @property
    def set_by(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def audit_name(self) -> str:
        """The audit entry's actor: a reviewer's name, `cli:<user>`, or `scorer`."""
        return {"reviewer": self.name, "cli": self.set_by, "scorer": "scorer"}[self.kind]


@dataclass(frozen=True, slots=True)
class Policy:
    """What the door needs from the config, read once per process."""

    tiers: frozenset[str]
    throttle_tier: str
    audit_retention: float | None
    quiet_period: float

    @classmethod
    def of(cls, settings) -> Policy:
        return cls(tiers=frozenset(settings.limits.tiers), throttle_tier=settings.detection.ladder.throttle_tier,
                   audit_retention=settings.admin.audit_retention,
                   quiet_period=float(settings.admin.dismiss_quiet_period))


async def apply_decision(client, policy: Policy, actor: Actor, key_id: str, action: str, *, reason: str = "",
                         expires_in=None, tier: str | None = None, note: str | None = None,
                         audit_details: dict | None = None, change: Change | None = None, alerts=None) -> dict:
    """Apply one decision about one key and return what changed. `change` is the scorer's
    ladder change (its action is `action`); without it, the decision is a person's."""
    if change is not None:
        return await _apply_change(client, policy, actor, change, audit_details or {}, alerts)
    reason, note = _clean(reason, REASON_MAX_CHARS), _clean(note, NOTE_MAX_CHARS)
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise BadRequest("Not a key_id (16 hex characters); see `distillguard key-id`.", code="invalid_key_id")
    ttl = validate(policy, action, reason=reason, expires_in=expires_in, tier=tier, note=note)
    now = time.time()
    previous = await get_decision(client, key_id)
    decision = await _write_decision(client, key_id, action, actor.set_by, reason, note, tier, ttl) or previous
    dismissed_until = None
    if action == "dismiss":
        dismissed_until = now + policy.quiet_period
        await reviews.dismiss(client, key_id, actor.audit_name, dismissed_until, policy.quiet_period)
    elif action in ("block", "throttle"):
        await reviews.end_dismissal(client, key_id)  # the reviewer changed their mind
    label = None
    if action in LABEL_OF:
        label = await write_label(client, key_id, LABEL_OF[action], action=action, reviewer=actor.audit_name,
                                  reason=reason or note, ts=now)
    review = await reviews.write_review(client, key_id, action, actor.audit_name, reason, note, now,
                                        dismissed_until)
    details = {"decision": decision.as_dict(), "previous_decision": previous.action, **(audit_details or {})}
    if tier:
        details["tier"] = tier
    if note:
        details["note"] = note
    audit_id = await append_audit(client, actor=actor.audit_name, action=action, target=key_id,
                                  reason=reason or note, details=details, retention_seconds=policy.audit_retention)
    if alerts is not None and action == "block":
        alerts.notify_nowait({"event": "manual_block", "key_id": key_id, "action": "block", "detector": "reviewer",
                              "actor": actor.audit_name, "reason": reason,
                              "cluster_id": (audit_details or {}).get("cluster_id"),
                              "expires_at": decision.expires_at, "ts": now})
    return {
        "key_id": key_id, "action": action, "previous_decision": previous.as_dict(),
        "decision": decision.as_dict(), "label": label or await read_label(client, key_id), "review": review,
        "audit_id": audit_id,
    }


def validate(policy: Policy, action: str, *, reason: str, expires_in, tier, note: str) -> float | None:
    """The expiry in seconds (block and throttle), or a BadRequest naming what is wrong."""
    if action not in HUMAN_ACTIONS:
        raise BadRequest(f"Unknown action {action!r}; one of {', '.join(HUMAN_ACTIONS)}.", code="invalid_action")
    if action in ("block", "dismiss") and not reason:
        raise BadRequest(f"A {action} needs a reason.", code="reason_required")
    if action == "note" and not note:
        raise BadRequest("A note needs its text.", code="note_required")
    if action == "throttle":
        if not tier:
            raise BadRequest(f"A throttle needs a tier: one of {', '.join(sorted(policy.tiers))}.",
                             code="tier_required")
        if tier not in policy.tiers:
            raise BadRequest(f"Unknown tier {tier!r}; one of {', '.join(sorted(policy.tiers))}.",
                             code="unknown_tier")
    elif tier:
        raise BadRequest(f"A tier only goes with throttle, not {action}.", code="unexpected_tier")
    if expires_in in (None, ""):
        return None
    if action not in ("block", "throttle"):
        raise BadRequest(f"An expiry only goes with block or throttle, not {action}.", code="unexpected_expiry")
    try:
        return parse_duration(expires_in)
    except ValueError as exc:
        raise BadRequest(f"expires_in: {exc}", code="invalid_expiry") from None


def clean_text(reason, note) -> tuple[str, str]:
    """A reason and a note as the door stores them: stripped and cut to their limits."""
    return _clean(reason, REASON_MAX_CHARS), _clean(note, NOTE_MAX_CHARS)


async def _write_decision(client, key_id: str, action: str, set_by: str, reason: str, note: str,
                          tier: str | None, ttl: float | None) -> Decision | None:
    """A person's decision record; None for a note, which decides nothing."""
    if action == "block":
        return await set_decision(client, key_id, "block", reason=reason, note=note, set_by=set_by, ttl_seconds=ttl)
    if action == "throttle":
        return await set_decision(client, key_id, "throttle", tier=tier or "", reason=reason, note=note,
                                  set_by=set_by, ttl_seconds=ttl)
    if action in ("unblock", "dismiss"):
        return await set_decision(client, key_id, "allow", set_by=set_by)
    return None


async def _apply_change(client, policy: Policy, actor: Actor, change: Change, audit_details: dict,
                        alerts) -> dict:
    enforced = await _enforce(client, policy, actor, change)
    audit_id = await audit_quietly(
        client, "scorer", actor=actor.audit_name, action=change.action, target=change.key_id,
        reason=", ".join(reason["name"] for reason in change.reasons),
        details={"detector": change.detector, "score": round(change.score, 4), "enforced": enforced,
                 **audit_details},
        retention_seconds=policy.audit_retention)
    if alerts is not None and alerts.enabled and enforced and change.action in ("throttle", "block"):
        await alerts.notify(change_event(change.action, change))
    return {"key_id": change.key_id, "action": change.action, "enforced": enforced, "audit_id": audit_id}


async def _enforce(client, policy: Policy, actor: Actor, change: Change) -> bool:
    """Throttle or block as the ladder says; when it falls back to flag or none, lift the
    scorer's own throttle or block. Shadow mode and allowlisted keys (`enforce` false) only
    get their flag, and so does a key a reviewer dismissed, until its quiet period ends.
    True when it set a throttle or block."""
    if not change.enforce:
        return False
    if change.action in ("throttle", "block") and await reviews.is_dismissed(client, change.key_id):
        log.info("key %s left alone: a reviewer dismissed it", change.key_id)
        await reviews.mark_left_alone(client, change.key_id)
        return False
    current = await get_decision(client, change.key_id)
    if current.action != "allow" and not current.set_by.startswith("scorer:"):
        return False
    note = ", ".join(reason["name"] for reason in change.reasons)
    if change.action == "block":
        await set_decision(client, change.key_id, "block", reason=ENFORCED_REASON, note=note,
                           set_by=actor.set_by, ttl_seconds=change.ttl_seconds)
        return True
    if change.action == "throttle":
        await set_decision(client, change.key_id, "throttle", tier=policy.throttle_tier, reason=ENFORCED_REASON,
                           note=note, set_by=actor.set_by, ttl_seconds=change.ttl_seconds)
        return True
    if current.action != "allow":
        await set_decision(client, change.key_id, "allow", note=f"ladder fell to {change.action}",
                           set_by=actor.set_by, ttl_seconds=change.ttl_seconds)
    return False


def _clean(text, limit: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise BadRequest("reason and note must be text.", code="invalid_text")
    return text.strip()[:limit]
