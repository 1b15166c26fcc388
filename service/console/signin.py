"""Sign-in and sign-out of the review console.

The sign-in form carries a CSRF token bound to a pre-session cookie (so no other site can
sign a browser in as someone else). Failed attempts are counted per client IP in Redis;
past `admin.sign_in_attempts` within `admin.sign_in_window` the form answers 429 without
even looking at the token. Every failure is logged (the IP, never the token) and audited.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from redis.exceptions import RedisError

from .. import metrics
from ..records.audit import append_audit
from ..store import sign_in_failures_key
from .auth import (
    Reviewer,
    check_csrf,
    client_ip,
    console_viewer,
    over_tls,
    require_console,
    reviewer_for_token,
)
from .render import error_page, render, secure
from .sessions import COOKIE, LOGIN_COOKIE, create_session, delete_session

log = logging.getLogger("distillguard.console")

router = APIRouter()
LOGIN_COOKIE_SECONDS = 3600


def _gateway(request: Request):
    return request.app.state.gateway


def _login_csrf(request: Request, login_cookie: str) -> str:
    secret = _gateway(request).key_secret
    return hmac.new(secret, f"console-login:{login_cookie}".encode(), "sha256").hexdigest()


def _safe_next(target: str | None) -> str:
    """Only paths inside the console: never another site (`//evil`, `/\\evil`, `https://...`)."""
    if target and target.startswith("/admin") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/admin"


def _login_page(request: Request, *, status_code: int = 200, error: str | None = None) -> Response:
    login_cookie = request.cookies.get(LOGIN_COOKIE)
    if not login_cookie or len(login_cookie) > 128:
        login_cookie = secrets.token_urlsafe(32)
    response = render(request, "login.html", status_code=status_code, error=error,
                      csrf_token=_login_csrf(request, login_cookie),
                      next=_safe_next(request.query_params.get("next") or getattr(request.state, "login_next", None)))
    response.set_cookie(LOGIN_COOKIE, login_cookie, max_age=LOGIN_COOKIE_SECONDS, path="/admin/login",
                        httponly=True, samesite="strict", secure=over_tls(request))
    return response


@router.get("/admin/login", dependencies=[Depends(require_console)])
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/admin/login", dependencies=[Depends(require_console)])
async def login(request: Request) -> Response:
    form = await request.form()
    request.state.login_next = str(form.get("next") or "")
    login_cookie = request.cookies.get(LOGIN_COOKIE, "")
    presented_csrf = str(form.get("csrf_token") or "")
    expected = _login_csrf(request, login_cookie) if login_cookie else ""
    if not login_cookie or not hmac.compare_digest(presented_csrf.encode(), expected.encode()):
        log.warning("console sign-in from %s refused: missing or wrong sign-in CSRF token", client_ip(request))
        return error_page(request, 403, "Request refused", "This sign-in form expired; reload the page and retry.")
    try:
        return await _sign_in(request, str(form.get("token") or ""))
    except (RedisError, OSError) as exc:
        log.error("console sign-in from %s failed: Redis unavailable (%s)", client_ip(request), exc)
        return error_page(request, 503, "Sign-in unavailable",
                          "The console cannot reach its store (Redis) right now; try again shortly.")


async def _sign_in(request: Request, token: str) -> Response:
    gateway = _gateway(request)
    settings = gateway.settings
    client = gateway.store.client
    ip = client_ip(request)
    failures_key = sign_in_failures_key(ip)
    failures = int(await client.get(failures_key) or 0)
    if failures >= settings.admin.sign_in_attempts:
        metrics.SIGN_INS.labels("rate_limited").inc()
        log.warning("console sign-in from %s refused: %d failed attempts in the window", ip, failures)
        response = error_page(request, 429, "Too many attempts",
                              "Too many failed sign-ins from this address; wait a few minutes and retry.")
        response.headers["Retry-After"] = str(max(1, await client.ttl(failures_key)))
        return response
    reviewer = reviewer_for_token(settings, token) if token else None
    if reviewer is None:
        pipe = client.pipeline(transaction=False)
        pipe.incr(failures_key)
        pipe.expire(failures_key, max(1, int(settings.admin.sign_in_window)), nx=True)
        await pipe.execute()
        metrics.SIGN_INS.labels("wrong_token").inc()
        log.warning("console sign-in failed from %s: unknown token", ip)
        await append_audit(client, actor="anonymous", action="sign_in_failed", reason="unknown token",
                           details={"ip": ip}, retention_seconds=settings.admin.audit_retention)
        return _login_page(request, status_code=401, error="That token is not valid.")
    await delete_session(client, request.cookies.get(COOKIE))  # a browser holds one session at a time
    cookie = await create_session(client, name=reviewer.name, role=reviewer.role,
                                  ttl_seconds=settings.admin.session_ttl)
    metrics.SIGN_INS.labels("ok").inc()
    log.info("console sign-in: %s (%s) from %s", reviewer.name, reviewer.role, ip)
    await append_audit(client, actor=reviewer.name, action="sign_in", details={"ip": ip, "role": reviewer.role},
                       retention_seconds=settings.admin.audit_retention)
    response = secure(RedirectResponse(_safe_next(getattr(request.state, "login_next", None)), status_code=303))
    response.set_cookie(COOKIE, cookie, max_age=int(settings.admin.session_ttl), path="/admin",
                        httponly=True, samesite="strict", secure=over_tls(request))
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


@router.post("/admin/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request, reviewer: Annotated[Reviewer, Depends(console_viewer)]) -> Response:
    gateway = _gateway(request)
    try:
        await delete_session(gateway.store.client, request.cookies.get(COOKIE))
        await append_audit(gateway.store.client, actor=reviewer.name, action="sign_out",
                           details={"ip": client_ip(request)}, retention_seconds=gateway.settings.admin.audit_retention)
    except (RedisError, OSError) as exc:
        log.error("console sign-out of %s failed: Redis unavailable (%s)", reviewer.name, exc)
        return error_page(request, 503, "Sign-out unavailable", "The console cannot reach Redis; try again shortly.")
    response = secure(RedirectResponse("/admin/login", status_code=303))
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict", secure=over_tls(request))
    return response

