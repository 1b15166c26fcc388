"""What an alert says and how it is signed (service/alerts/sender.py sends it).

An alert carries key_ids, scores and reason names only: never a raw API key, never a prompt.
`shape_event` keeps the known fields of whatever a caller passes and drops the rest, so a
careless caller cannot leak more. The signature is Stripe's scheme: header
`X-Distillguard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
which a receiver checks against the exact body bytes and a few minutes' tolerance.

The event a caller passes to `AlertSender.notify` (all but `event` and `key_id` optional):

    {"event": "flag" | "throttle" | "block" | "cluster_flag" | "manual_block",
     "key_id": "16 hex", "action": "flag" | "throttle" | "block" | ...,
     "score": 0.93, "detector": "rules" | "iforest" | "linkage" | "reviewer",
     "reasons": [{"name": "...", "detail": "..."}], "cluster_id": "lk-..." | None,
     "requests_before_flag": 120, "actor": "scorer" | reviewer name, "reason": "why, for people",
     "expires_at": unix seconds | None, "ts": unix seconds (default now)}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from detectors.ladder import Change

from ..config import ALERT_EVENTS
from ..records.flags import cluster_of

MAX_REASONS = 10
MAX_TEXT = 300


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as queued: its delivery id (stable across retries) and its JSON fields."""

    id: str
    event: str
    fields: dict


def change_event(event: str, change: Change) -> dict:
    """The scorer's event for a ladder change."""
    return {
        "event": event, "key_id": change.key_id, "action": change.action, "score": change.score,
        "detector": change.detector, "reasons": list(change.reasons), "cluster_id": cluster_of(change),
        "requests_before_flag": change.requests_before_flag, "actor": "scorer",
    }


def shape_event(event: dict, public_url: str | None = None) -> Alert:
    """The alert's fields from a caller's event: known fields only, each of its type."""
    kind = event["event"]
    if kind not in ALERT_EVENTS:
        raise ValueError(f"unknown alert event {kind!r}")
    key_id = str(event["key_id"])
    path = f"/admin/keys/{key_id}"
    score = event.get("score")
    fields = {
        "id": "dga_" + uuid.uuid4().hex,
        "event": kind,
        "key_id": key_id,
        "action": _text(event.get("action") or ("block" if kind == "manual_block" else kind)),
        "score": round(float(score), 4) if score is not None else None,
        "detector": _text(event.get("detector") or ("reviewer" if kind == "manual_block" else "")),
        "reasons": [
            {"name": _text(reason.get("name", "")), "detail": _text(reason.get("detail", ""))}
            for reason in list(event.get("reasons") or [])[:MAX_REASONS]
        ],
        "cluster_id": _text(event["cluster_id"]) if event.get("cluster_id") else None,
        "requests_before_flag": _int(event.get("requests_before_flag")),
        "actor": _text(event.get("actor") or "scorer"),
        "reason": _text(event.get("reason") or ""),
        "expires_at": float(event["expires_at"]) if event.get("expires_at") else None,
        "ts": float(event.get("ts") or time.time()),
        "console_url": (public_url.rstrip("/") + path) if public_url else path,
    }
    return Alert(fields["id"], kind, fields)


def render_body(alert: Alert, fmt: str) -> bytes:
    """The bytes POSTed (and signed): the fields as JSON, or a Slack message holding them."""
    payload = alert.fields if fmt == "json" else slack_message(alert.fields)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def slack_message(fields: dict) -> dict:
    """Slack's incoming-webhook shape: `text` (notifications, fallback) and `blocks` with the
    same fields; the raw fields ride along under `distillguard` for other tools."""
    text = summary(fields)
    link = fields["console_url"]
    requests = fields["requests_before_flag"]
    facts = [
        ("key_id", f"`{fields['key_id']}`"),
        ("action", fields["action"]),
        ("score", "-" if fields["score"] is None else f"{fields['score']:.2f}"),
        ("detector", fields["detector"] or "-"),
        ("cluster", fields["cluster_id"] or "-"),
        ("requests before flag", "-" if requests is None else str(requests)),
        ("by", fields["actor"]),
    ]
    if fields["reason"]:
        facts.append(("reason", fields["reason"]))
    reasons = "\n".join(f"• *{_slack(r['name'])}* {_slack(r['detail'])}" for r in fields["reasons"]) or "-"
    header = f"{_slack(text)}\n<{link}|Open in the console>" if link.startswith("http") else _slack(text)
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": header}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_slack(value)}"}
                                           for name, value in facts]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*reasons*\n{reasons}"[:2900]}},
        ],
        "distillguard": fields,
    }


def summary(fields: dict) -> str:
    what = {
        "flag": "flagged for review", "throttle": "throttled", "block": "blocked",
        "cluster_flag": f"flagged with cluster {fields['cluster_id']}", "manual_block": f"blocked by {fields['actor']}",
    }[fields["event"]]
    names = ", ".join(r["name"] for r in fields["reasons"][:3])
    return f"distillguard: key {fields['key_id']} {what}" + (f" ({names})" if names else "")


def signature_header(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _text(value) -> str:
    return str(value)[:MAX_TEXT]


def _int(value) -> int | None:
    return int(value) if value is not None else None


def _slack(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup: a reason's detail is shown as text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
