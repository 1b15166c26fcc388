"""A key's review record: its status (confirmed, dismissed, unblocked, noted), the last human
action on it, by whom, why and when, its label, its latest notes, and the dismissal that keeps
the scorer's automatic actions off it for a quiet period."""

from __future__ import annotations

import json

from ..store import dismissed_key, flag_key, review_key
from .batch import get_json_many
from .flags import read_flag
from .labels import read_label

STATUS_OF = {"block": "confirmed", "throttle": "confirmed", "dismiss": "dismissed", "unblock": "unblocked",
             "note": "noted"}
REVIEW_TTL_SECONDS = 400 * 86400
NOTES_KEPT = 20


async def review_status(client, key_id: str) -> dict | None:
    """The key's review: status, the last action, by whom, why and when, the current label,
    the dismissal's end, and the latest notes."""
    raw = await client.get(review_key(key_id))
    return json.loads(raw) if raw else None


async def review_statuses(client, key_ids: list[str]) -> dict[str, dict]:
    """Many keys' reviews in one round trip (for the queue); keys never reviewed are absent."""
    reviews = await get_json_many(client, [review_key(key_id) for key_id in key_ids])
    return {key_id: review for key_id, review in zip(key_ids, reviews) if review}


async def write_review(client, key_id: str, action: str, reviewer: str, reason: str, note: str, now: float,
                       dismissed_until: float | None) -> dict:
    """Fold one human action into the key's review record (and mirror its status on the flag)."""
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
    await patch_flag(client, key_id, {"review": review["status"]})
    return review


async def dismiss(client, key_id: str, reviewer: str, until: float, quiet_seconds: float) -> None:
    """Keep automatic actions off the key until `until` (the marker expires with the quiet period)."""
    await client.set(dismissed_key(key_id), json.dumps({"reviewer": reviewer, "until": until}),
                     ex=int(quiet_seconds))


async def end_dismissal(client, key_id: str) -> None:
    await client.delete(dismissed_key(key_id))


async def is_dismissed(client, key_id: str) -> bool:
    """True while a reviewer's dismissal keeps automatic actions off this key."""
    return bool(await client.exists(dismissed_key(key_id)))


async def mark_left_alone(client, key_id: str) -> None:
    """Note on the key's flag that the scorer did not act because of a dismissal."""
    raw = await client.get(dismissed_key(key_id))
    until = json.loads(raw)["until"] if raw else None
    await patch_flag(client, key_id, {"left_alone": "dismissed", "dismissed_until": until})


async def patch_flag(client, key_id: str, fields: dict) -> None:
    """Adds fields to the key's flag record if it has one (the scorer rewrites the record on
    its next change; the review record stays the authority)."""
    flag = await read_flag(client, key_id)
    if flag is None:
        return
    flag.update(fields)
    await client.set(flag_key(key_id), json.dumps(flag, separators=(",", ":")), keepttl=True)
