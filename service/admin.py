"""The admin API for reviewers: flags, linked-key clusters, everything the scorer knows
about one key, labels; and the actions (block, throttle, unblock, dismiss, note) that role
`reviewer` may take on a key or a cluster (service/review/actions.py, through service/decisions.py).

Every route needs `Authorization: Bearer <token>` of a configured reviewer (or the legacy
`admin_token`), checked by `console.auth.api_viewer` in constant time. With neither
configured the routes do not exist (404), so a gateway never exposes them by accident; a
missing or wrong token gets 401. Refusals use OpenAI's error JSON, like the rest of the
gateway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from detectors.windows import FEATURE_NAMES

from .console.auth import Reviewer, api_reviewer, api_viewer
from .decisions import CLUSTER_ID, KEY_ID
from .errors import NotFound
from .records.clusters import key_cluster, read_cluster, read_clusters, read_passes
from .records.decisions import get_decision
from .records.flags import read_flag, read_flags
from .records.labels import read_label, read_labels
from .records.reviews import review_status
from .review.actions import act_on_cluster, act_on_key
from .scoring.detection import load_state, recent_events

FLAG_FIELDS = ("key_id", "action", "score", "detector", "reasons", "first_flagged_at", "requests_before_flag",
               "cluster_id")


router = APIRouter(prefix="/admin/api", dependencies=[Depends(api_viewer)])


def _client(request: Request):
    return request.app.state.gateway.store.client


@router.get("/flags")
async def list_flags(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> dict:
    """Flagged keys, newest first flag first."""
    flags = await read_flags(_client(request), limit)
    return {"flags": [{name: flag.get(name) for name in FLAG_FIELDS} for flag in flags]}


@router.get("/keys/{key_id}")
async def show_key(request: Request, key_id: str) -> dict:
    """One key: its decision, flag, window features, last verdicts and recent events."""
    if not KEY_ID.match(key_id):
        raise NotFound("Not a key_id (16 hex characters); see `distillguard key-id`.")
    client = _client(request)
    state = await load_state(client, key_id)
    window = None
    if state is not None:
        window = {
            "requests_seen": state.window.requests_seen,
            "features": dict(zip(FEATURE_NAMES, state.window.features())),
        }
    return {
        "key_id": key_id,
        "cluster_id": await key_cluster(client, key_id),
        "decision": (await get_decision(client, key_id)).as_dict(),
        "flag": await read_flag(client, key_id),
        "review": await review_status(client, key_id),
        "label": await read_label(client, key_id),
        "window": window,
        "last_verdicts": state.last_verdicts if state is not None else [],
        "recent_events": await recent_events(client, key_id),
    }


@router.get("/clusters")
async def list_clusters(request: Request, limit: int = Query(100, ge=1, le=2000), flagged: bool = False) -> dict:
    """The last linkage pass's clusters (flagged first, then the largest) and the recent passes."""
    client = _client(request)
    return {"clusters": await read_clusters(client, limit, flagged_only=flagged),
            "passes": await read_passes(client, 5)}


@router.get("/clusters/{cluster_id}")
async def show_cluster(request: Request, cluster_id: str) -> dict:
    """One cluster: members, size, combined volume, score, and the evidence that joined it."""
    cluster = await read_cluster(_client(request), cluster_id) if CLUSTER_ID.match(cluster_id) else None
    if cluster is None:
        raise NotFound(f"No current cluster {cluster_id!r}; see /admin/api/clusters.")
    return cluster


class ActionRequest(BaseModel):
    """A reviewer's action: `block` (reason, optional expires_in), `throttle` (tier), `unblock`,
    `dismiss` (reason), `note` (note)."""

    model_config = ConfigDict(extra="forbid")

    action: str
    reason: str = ""
    expires_in: str | float | None = None
    tier: str | None = None
    note: str | None = None


@router.post("/keys/{key_id}/actions")
async def act_on_key_route(request: Request, key_id: str, body: ActionRequest,
                           reviewer: Annotated[Reviewer, Depends(api_reviewer)]) -> dict:
    """Block, throttle, unblock, dismiss or annotate one key (role reviewer); returns what changed."""
    return await act_on_key(_client(request), request.app.state.gateway.settings, reviewer, key_id, body.action,
                            reason=body.reason, expires_in=body.expires_in, tier=body.tier, note=body.note,
                            alerts=request.app.state.gateway.alerts)


@router.post("/clusters/{cluster_id}/actions")
async def act_on_cluster_route(request: Request, cluster_id: str, body: ActionRequest,
                               reviewer: Annotated[Reviewer, Depends(api_reviewer)]) -> dict:
    """The same action on every current member of a cluster (role reviewer)."""
    return await act_on_cluster(_client(request), request.app.state.gateway.settings, reviewer, cluster_id,
                                body.action, reason=body.reason, expires_in=body.expires_in, tier=body.tier,
                                note=body.note, alerts=request.app.state.gateway.alerts)


@router.get("/labels")
async def list_labels(request: Request, limit: int = Query(1000, ge=1, le=100_000)) -> dict:
    """Reviewers' verdicts, newest first: what `distillguard labels export` writes."""
    return {"labels": await read_labels(_client(request), limit)}
