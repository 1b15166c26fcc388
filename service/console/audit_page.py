"""`GET /admin/audit`: the audit trail, newest first, filtered by target, actor and time, paged."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from ..records.audit import parse_time, read_audit
from .auth import Reviewer, console_viewer
from .render import error_page, render

router = APIRouter()
PAGE_SIZE = 100
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@router.get("/admin/audit")
async def audit_page(request: Request, reviewer: Annotated[Reviewer, Depends(console_viewer)]) -> Response:
    query = request.query_params
    target = (query.get("target") or "").strip()[:128] or None
    actor = (query.get("actor") or "").strip()[:64] or None
    since_text = (query.get("since") or "").strip()
    before = query.get("before") if ENTRY_ID.match(query.get("before") or "") else None
    try:
        since = parse_time(since_text) if since_text else None
    except ValueError as exc:
        return error_page(request, 400, "Bad filter", str(exc))
    try:
        entries = await read_audit(request.app.state.gateway.store.client, since=since, limit=PAGE_SIZE + 1,
                                   target=target, actor=actor, before=before)
    except (RedisError, OSError):
        return error_page(request, 503, "Store unavailable", "The console cannot reach Redis right now.")
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    filters = {"target": target or "", "actor": actor or "", "since": since_text}
    next_page = None
    if more:
        next_page = {**{name: value for name, value in filters.items() if value}, "before": entries[-1]["id"]}
    return render(request, "audit.html", entries=entries, filters=filters, next_page=next_page)
