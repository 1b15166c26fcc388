"""What a reviewer does about a key or a cluster: block, throttle, unblock, dismiss, note.

Every action, whichever door it comes through (the console's forms, `/admin/api`), goes
through `act_on_key`, which writes in one place: the decision the gateway enforces, the
verdict as a label (`confirmed` for block and throttle, `dismissed` for dismiss), the key's
review status, and exactly one audit entry.

A reviewer's decision carries `set_by = "reviewer:<name>"`, so the scorer never overrides
it (service/scoring/actions.py replaces only its own). A dismissal additionally marks the key for
`admin.dismiss_quiet_period`: until that ends the scorer records its flags but sets no
automatic throttle or block.
"""

from __future__ import annotations

import json
import re
import time

from ..config import parse_duration
from ..decisions import get_decision, set_decision
from ..errors import BadRequest, NotFound
from ..scoring.flags import read_flag
from ..scoring.linkage import read_cluster
from ..store import dismissed_key, flag_key, review_key
from .audit import append_audit
from .labels import read_label, write_label

ACTIONS = ("block", "throttle", "unblock", "dismiss", "note")
LABEL_OF = {"block": "confirmed", "throttle": "confirmed", "dismiss": "dismissed"}
STATUS_OF = {"block": "confirmed", "throttle": "confirmed", "dismiss": "dismissed", "unblock": "unblocked",
             "note": "noted"}
SET_BY_PREFIX = "reviewer:"
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
CLUSTER_ID = re.compile(r"^lk-[0-9a-f]{1,32}$")
REVIEW_TTL_SECONDS = 400 * 86400
NOTES_KEPT = 20
NOTE_MAX_CHARS = 2000
REASON_MAX_CHARS = 500
DEFAULT_QUIET_PERIOD = 7 * 86400.0


async def act_on_key(client, settings, reviewer, key_id: str, action: str, *, reason: str = "",
                     expires_in=None, tier: str | None = None, note: str | None = None,
                     audit_details: dict | None = None, alerts=None) -> dict:
    """Apply one reviewer action to one key; returns what changed. Raises BadRequest (400, with
    a code saying which input) before writing anything when the request is not valid. A block
    is also sent to the `alerts` sender (service/review/alerts.py) as a `manual_block`."""
    reason, note = _clean(reason, REASON_MAX_CHARS), _clean(note, NOTE_MAX_CHARS)
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise BadRequest("Not a key_id (16 hex characters); see `distillguard key-id`.", code="invalid_key_id")
    ttl = _validate(settings, action, reason=reason, expires_in=expires_in, tier=tier, note=note)
    now = time.time()
    set_by = SET_BY_PREFIX + reviewer.name
    previous = await get_decision(client, key_id)
    decision = previous
    dismissed_until = None
    if action == "block":
        decision = await set_decision(client, key_id, "block", reason=reason, note=note, set_by=set_by,
                                      ttl_seconds=ttl)
    elif action == "throttle":
        decision = await set_decision(client, key_id, "throttle", tier=tier or "", reason=reason, note=note,
                                      set_by=set_by, ttl_seconds=ttl)
    elif action in ("unblock", "dismiss"):
        decision = await set_decision(client, key_id, "allow", set_by=set_by)
    if action == "dismiss":
        quiet = quiet_period(settings)
        dismissed_until = now + quiet
        await client.set(dismissed_key(key_id), json.dumps({"reviewer": reviewer.name, "until": dismissed_until}),
                         ex=int(quiet))
    elif action in ("block", "throttle"):
        await client.delete(dismissed_key(key_id))  # the reviewer changed their mind
    label = None
    if action in LABEL_OF:
        label = await write_label(client, key_id, LABEL_OF[action], action=action, reviewer=reviewer.name,
                                  reason=reason or note, ts=now)
    review = await _write_review(client, key_id, action, reviewer.name, reason, note, now, dismissed_until)
    details = {"decision": decision.as_dict(), "previous_decision": previous.action, **(audit_details or {})}
    if tier:
        details["tier"] = tier
    if note:
        details["note"] = note
    audit_id = await append_audit(client, actor=reviewer.name, action=action, target=key_id, reason=reason or note,
                                  details=details, retention_seconds=settings.admin.audit_retention)
    if alerts is not None and action == "block":
        alerts.notify_nowait({"event": "manual_block", "key_id": key_id, "action": "block", "detector": "reviewer",
                              "actor": reviewer.name, "reason": reason, "cluster_id": (audit_details or {}).get("cluster_id"),
                              "expires_at": decision.expires_at, "ts": now})
    return {
        "key_id": key_id, "action": action, "previous_decision": previous.as_dict(),
        "decision": decision.as_dict(), "label": label or await read_label(client, key_id), "review": review,
        "audit_id": audit_id,
    }


async def act_on_cluster(client, settings, reviewer, cluster_id: str, action: str, *, reason: str = "",
                         expires_in=None, tier: str | None = None, note: str | None = None, alerts=None) -> dict:
    """The same action on every current member of a linkage cluster: one audit entry per
    member (each names the cluster) and one for the cluster itself."""
    if not isinstance(cluster_id, str) or not CLUSTER_ID.match(cluster_id):
        raise BadRequest("Not a cluster id (lk- and hex characters); see /admin/api/clusters.",
                         code="invalid_cluster_id")
    cluster = await read_cluster(client, cluster_id)
    if cluster is None:
        raise NotFound(f"No current cluster {cluster_id!r}; see /admin/api/clusters.")
    members = [member for member in cluster.get("members", []) if KEY_ID.match(member)]
    _validate(settings, action, reason=_clean(reason, REASON_MAX_CHARS), expires_in=expires_in, tier=tier,
              note=_clean(note, NOTE_MAX_CHARS))
    results = [
        await act_on_key(client, settings, reviewer, member, action, reason=reason, expires_in=expires_in,
                         tier=tier, note=note, audit_details={"cluster_id": cluster_id}, alerts=alerts)
        for member in members
    ]
    audit_id = await append_audit(
        client, actor=reviewer.name, action=f"cluster_{action}", target=cluster_id,
        reason=_clean(reason, REASON_MAX_CHARS) or _clean(note, NOTE_MAX_CHARS),
        details={"members": members, "tier": tier, "expires_in": expires_in},
        retention_seconds=settings.admin.audit_retention,
    )
    return {"cluster_id": cluster_id, "action": action, "members": members, "results": results,
            "audit_id": audit_id}


async def review_status(client, key_id: str) -> dict | None:
    """The key's review: status (confirmed, dismissed, unblocked, noted), the last action, by
    whom, why and when, the current label, the dismissal's end, and the latest notes."""
    raw = await client.get(review_key(key_id))
    return json.loads(raw) if raw else None


async def review_statuses(client, key_ids: list[str]) -> dict[str, dict]:
    """Many keys' reviews in one round trip (for the queue); keys never reviewed are absent."""
    if not key_ids:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for key_id in key_ids:
            pipe.get(review_key(key_id))
        raws = await pipe.execute()
    return {key_id: json.loads(raw) for key_id, raw in zip(key_ids, raws) if raw}


async def is_dismissed(client, key_id: str) -> bool:
    """True while a reviewer's dismissal keeps automatic actions off this key."""
    return bool(await client.exists(dismissed_key(key_id)))


async def mark_left_alone(client, key_id: str) -> None:
    """Note on the key's flag that the scorer did not act because of a dismissal."""
    raw = await client.get(dismissed_key(key_id))
    until = json.loads(raw)["until"] if raw else None
    await _patch_flag(client, key_id, {"left_alone": "dismissed", "dismissed_until": until})


def quiet_period(settings) -> float:
    return float(getattr(settings.admin, "dismiss_quiet_period", DEFAULT_QUIET_PERIOD))


def _validate(settings, action, *, reason: str, expires_in, tier, note: str) -> float | None:
    """The expiry in seconds (block and throttle), or a BadRequest naming what is wrong."""
    if action not in ACTIONS:
        raise BadRequest(f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.", code="invalid_action")
    if action in ("block", "dismiss") and not reason:
        raise BadRequest(f"A {action} needs a reason.", code="reason_required")
    if action == "note" and not note:
        raise BadRequest("A note needs its text.", code="note_required")
    if action == "throttle":
        if not tier:
            raise BadRequest(f"A throttle needs a tier: one of {', '.join(sorted(settings.limits.tiers))}.",
                             code="tier_required")
        if tier not in settings.limits.tiers:
            raise BadRequest(f"Unknown tier {tier!r}; one of {', '.join(sorted(settings.limits.tiers))}.",
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


def _clean(text, limit: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise BadRequest("reason and note must be text.", code="invalid_text")
    return text.strip()[:limit]


async def _write_review(client, key_id: str, action: str, reviewer: str, reason: str, note: str, now: float,
                        dismissed_until: float | None) -> dict:
    review = await review_status(client, key_id) or {"status": None, "notes": []}
    if action != "note" or review["status"] is None:
        review["status"] = STATUS_OF[action]
    if action != "note" or not review.get("action"):
        review.update(action=action, reviewer=reviewer, reason=reason, at=now)
    if action == "dismiss":
        review["dismissed_until"] = dismissed_until
    elif action in ("block", "throttle"):
        review["dismissed_until"] = None
    if note:
        review["notes"] = [{"reviewer": reviewer, "note": note, "at": now}, *review.get("notes", [])][:NOTES_KEPT]
    label = await read_label(client, key_id)
    review["label"] = label["label"] if label else None
    review["updated_at"] = now
    await client.set(review_key(key_id), json.dumps(review, separators=(",", ":")), ex=REVIEW_TTL_SECONDS)
    await _patch_flag(client, key_id, {"review": review["status"]})
    return review


async def _patch_flag(client, key_id: str, fields: dict) -> None:
    """Adds fields to the key's flag record if it has one (the scorer rewrites the record on
    its next change; the review record stays the authority)."""
    flag = await read_flag(client, key_id)
    if flag is None:
        return
    flag.update(fields)
    await client.set(flag_key(key_id), json.dumps(flag, separators=(",", ":")), keepttl=True)
