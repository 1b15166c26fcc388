"""The console's review pages: the flag queue, a key's page, clusters, and the reviewer
actions posted from them (through `service/review/actions.py` to the one door,
service/decisions.py, like the admin API's and the CLI's).

Every page is plain server-rendered HTML: GET forms filter, POST forms act and redirect
back (303) with a short message. Viewers read; only reviewers see the forms, and a POST
needs the reviewer role and the session's CSRF token (auth.py) whatever the page showed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from markupsafe import Markup

from detectors.windows import FEATURE_NAMES

from ..decisions import CLUSTER_ID, KEY_ID
from ..errors import GatewayError
from ..recording.prompt_samples import read_samples
from ..records.audit import append_audit, read_audit
from ..records.clusters import key_cluster, read_cluster, read_clusters, read_passes
from ..records.decisions import get_decision
from ..records.flags import read_flag
from ..records.reviews import review_status, review_statuses
from ..review.actions import act_on_cluster, act_on_key
from ..scoring.activity import read_activity
from ..scoring.detection import load_state
from .auth import Reviewer, check_csrf, console_reviewer, console_viewer
from .charts import activity_chart
from .evidence import feature_rows, honest_ranges, reason_rows, verdict_reasons
from .formats import DONE_MESSAGES, EXPIRIES, Formats
from .queue import ACTIONS, DETECTORS, SORTS, QueueQuery, flag_queue, reason_names
from .render import error_page, render, secure

log = logging.getLogger("distillguard.console")

router = APIRouter()
ACTING = [Depends(console_reviewer), Depends(check_csrf)]
Viewer = Annotated[Reviewer, Depends(console_viewer)]
FORM_FIELDS = ("action", "reason", "expires_in", "tier", "note")
HISTORY_SHOWN = 50
CLUSTERS_SHOWN = 200


def _client(request: Request):
    return request.app.state.gateway.store.client


def _settings(request: Request):
    return request.app.state.gateway.settings


def _alerts(request: Request):
    """The webhook sender (service/alerts/sender.py), so a reviewer's block alerts like the API's."""
    return getattr(request.app.state.gateway, "alerts", None)


# --- the queue -------------------------------------------------------------------------------


@router.get("/admin")
async def queue_page(request: Request, reviewer: Viewer):
    """Flagged keys, sorted and filtered by the query string, 50 a page."""
    client = _client(request)
    query = QueueQuery.from_params(request.query_params)
    page = await flag_queue(client, query)
    key_ids = [flag["key_id"] for flag in page.flags]
    reviews, decisions = await asyncio.gather(review_statuses(client, key_ids),
                                              asyncio.gather(*(get_decision(client, key) for key in key_ids)))
    rows = [queue_row(flag, reviews.get(flag["key_id"]), decision) for flag, decision in zip(page.flags, decisions)]
    return render(request, "queue.html", query=query, page=page, rows=rows, sorts=SORTS, actions=ACTIONS,
                  detectors=DETECTORS, prev_query=urlencode(query.params(page=page.page - 1)),
                  next_query=urlencode(query.params(page=page.page + 1)), fmt=Formats)


def queue_row(flag: dict, review: dict | None, decision) -> dict:
    """One row; `enforced` is what the gateway does now, which a reviewer may have changed."""
    return {
        "enforced": decision.action,
        "key_id": flag["key_id"],
        "action": "cleared" if flag.get("status") == "cleared" else flag.get("action", ""),
        "score": flag.get("score") or 0.0,
        "detector": flag.get("detector", ""),
        "reasons": reason_names(flag)[:3],
        "requests": flag.get("requests_before_flag"),
        "first_flagged": Formats.utc(flag.get("first_flagged_at")),
        "cluster_id": flag.get("cluster_id"),
        "review": (review or {}).get("status"),
    }


# --- a key -----------------------------------------------------------------------------------


@router.get("/admin/keys/{key_id}")
async def key_page(request: Request, key_id: str, reviewer: Viewer, done: str = ""):
    """A key's decision and history, why it was flagged, its activity, cluster and prompts."""
    if not KEY_ID.match(key_id):
        return error_page(request, 404, "No such key", "A key_id is 16 hex characters; see `distillguard key-id`.")
    return render(request, "key.html", **await key_context(request, key_id), done=DONE_MESSAGES.get(done, ""))


async def key_context(request: Request, key_id: str, *, revealed: bool = False) -> dict:
    client, settings = _client(request), _settings(request)
    state, decision, flag, cluster_id, minutes, samples, history, review = await asyncio.gather(
        load_state(client, key_id), get_decision(client, key_id), read_flag(client, key_id),
        key_cluster(client, key_id), read_activity(client, key_id), read_samples(client, key_id),
        read_audit(client, target=key_id, limit=HISTORY_SHOWN), review_status(client, key_id),
    )
    cluster = await read_cluster(client, cluster_id) if cluster_id else None
    ranges = honest_ranges(settings.detection.model_path)
    features = dict(zip(FEATURE_NAMES, state.window.features())) if state is not None else {}
    reasons = verdict_reasons(flag, state.last_verdicts if state is not None else [])
    return {
        "key_id": key_id, "decision": decision, "flag": flag, "review": review, "cluster": cluster,
        "requests_seen": state.window.requests_seen if state is not None else None,
        "reasons": reason_rows(reasons, ranges), "features": feature_rows(features, ranges),
        "chart": Markup(activity_chart(minutes)), "samples": samples, "revealed": revealed,
        "history": history, "tiers": list(settings.limits.tiers), "expiries": EXPIRIES, "fmt": Formats,
    }


@router.post("/admin/keys/{key_id}/actions", dependencies=ACTING)
async def act_on_key_page(request: Request, key_id: str):
    if not KEY_ID.match(key_id):
        return error_page(request, 404, "No such key", "A key_id is 16 hex characters.")
    action, error = await _act(request, act_on_key, key_id)
    if error is not None:
        return render(request, "key.html", status_code=400, error=error, **await key_context(request, key_id))
    return _back(f"/admin/keys/{key_id}", action)


@router.post("/admin/keys/{key_id}/reveal", dependencies=ACTING)
async def reveal_prompts(request: Request, key_id: str):
    """The key's stored prompts in full, for this response only; the reveal is audited first."""
    reviewer: Reviewer = request.state.reviewer
    if not KEY_ID.match(key_id):
        return error_page(request, 404, "No such key", "A key_id is 16 hex characters.")
    client = _client(request)
    await append_audit(client, actor=reviewer.name, action="reveal_prompts", target=key_id,
                       reason="full prompts shown in the console",
                       retention_seconds=_settings(request).admin.audit_retention)
    log.info("reviewer %s revealed the prompts of %s", reviewer.name, key_id)
    return render(request, "key.html", **await key_context(request, key_id, revealed=True))


# --- clusters --------------------------------------------------------------------------------


@router.get("/admin/clusters")
async def clusters_page(request: Request, reviewer: Viewer):
    client = _client(request)
    clusters, passes = await asyncio.gather(read_clusters(client, CLUSTERS_SHOWN), read_passes(client, 1))
    return render(request, "clusters.html", clusters=clusters, last_pass=passes[0] if passes else None, fmt=Formats)


@router.get("/admin/clusters/{cluster_id}")
async def cluster_page(request: Request, cluster_id: str, reviewer: Viewer, done: str = ""):
    """A cluster's members (each with its decision and review), volume, and the evidence that joined it."""
    context = await cluster_context(request, cluster_id)
    if context is None:
        return error_page(request, 404, "No such cluster", "It is not in the last linkage pass; see Clusters.")
    return render(request, "cluster.html", **context, done=DONE_MESSAGES.get(done, ""))


async def cluster_context(request: Request, cluster_id: str) -> dict | None:
    client, settings = _client(request), _settings(request)
    cluster = await read_cluster(client, cluster_id) if CLUSTER_ID.match(cluster_id) else None
    if cluster is None:
        return None
    members = cluster.get("members", [])
    decisions, flags, reviews, history = await asyncio.gather(
        asyncio.gather(*(get_decision(client, key_id) for key_id in members)),
        asyncio.gather(*(read_flag(client, key_id) for key_id in members)),
        review_statuses(client, members),
        read_audit(client, target=cluster_id, limit=HISTORY_SHOWN),
    )
    rows = [{"key_id": key_id, "decision": decision.action, "flag": (flag or {}).get("action"),
             "review": (review or {}).get("status")}
            for key_id, decision, flag, review in zip(members, decisions, flags,
                                                      [reviews.get(key_id) for key_id in members])]
    return {"cluster": cluster, "members": rows, "history": history, "tiers": list(settings.limits.tiers),
            "expiries": EXPIRIES, "fmt": Formats}


@router.post("/admin/clusters/{cluster_id}/actions", dependencies=ACTING)
async def act_on_cluster_page(request: Request, cluster_id: str):
    if not CLUSTER_ID.match(cluster_id):
        return error_page(request, 404, "No such cluster", "Not a cluster id.")
    action, error = await _act(request, act_on_cluster, cluster_id)
    if error is not None:
        context = await cluster_context(request, cluster_id)
        if context is None:
            return error_page(request, 404, "No such cluster", error)
        return render(request, "cluster.html", status_code=400, error=error, **context)
    return _back(f"/admin/clusters/{cluster_id}", action)


# --- helpers ---------------------------------------------------------------------------------


async def _act(request: Request, act, target: str) -> tuple[str, str | None]:
    """The posted form's action applied to a key or cluster by `act`; returns the action and
    the reviewer-facing error, None when it was applied."""
    form = await _form(request)
    try:
        await act(_client(request), _settings(request), request.state.reviewer, target, form["action"],
                  reason=form["reason"], expires_in=form["expires_in"] or None, tier=form["tier"] or None,
                  note=form["note"] or None, alerts=_alerts(request))
    except (ValueError, GatewayError) as exc:
        return form["action"], _message(exc)
    return form["action"], None


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    values = {name: form.get(name) for name in FORM_FIELDS}
    return {name: value.strip() if isinstance(value, str) else "" for name, value in values.items()}


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, GatewayError) else str(exc)


def _back(path: str, action: str) -> RedirectResponse:
    """303 back to the page, naming what was done (a fixed message per action, never echoed text)."""
    done = action if action in DONE_MESSAGES else ""
    return secure(RedirectResponse(f"{path}?done={done}" if done else path, status_code=303))
