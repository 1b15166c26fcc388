"""Who may use the console and the admin API, and how they prove it.

Reviewers are listed in config with the SHA-256 of their token. Tokens are 32 random bytes
(`distillguard admin hash-token` makes them), far beyond any guessing, so a slow password
hash would add nothing: plain SHA-256 keeps a leaked config useless and the check cheap.
Every comparison is constant-time and looks at every configured reviewer.

HTML pages use a session cookie (`console_viewer`, `console_reviewer`) and a CSRF token on
every state-changing POST (`check_csrf`); `/admin/api` takes the token as a bearer
(`api_viewer`, `api_reviewer`) and answers in OpenAI's error JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from redis.exceptions import RedisError

from ..errors import AdminForbidden, AdminUnauthorized, NotFound
from .render import error_page, secure
from .sessions import COOKIE, load_session

log = logging.getLogger("distillguard.console")

ROLES = ("viewer", "reviewer")
LEGACY_ADMIN = "admin"


@dataclass(frozen=True)
class Reviewer:
    name: str
    role: str  # "viewer" | "reviewer"

    @property
    def can_act(self) -> bool:
        return self.role == "reviewer"


class ConsoleResponse(Exception):
    """Raised by a console dependency to answer with a page or redirect instead of the route."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _settings(request: Request):
    return request.app.state.gateway.settings


def _client(request: Request):
    return request.app.state.gateway.store.client


def console_enabled(settings) -> bool:
    return bool(settings.admin.reviewers)


def api_enabled(settings) -> bool:
    return bool(settings.admin.reviewers) or bool(settings.admin_token)


def reviewer_for_token(settings, token: str) -> Reviewer | None:
    """The configured reviewer whose token this is; every entry is compared, in constant time."""
    presented = hash_token(token)
    found = None
    for entry in settings.admin.reviewers:
        if hmac.compare_digest(presented, entry.token_sha256):
            found = Reviewer(entry.name, entry.role)
    return found


def _current_role(settings, name: str) -> str | None:
    """A session's reviewer as configured now: removing someone from config ends their sessions."""
    for entry in settings.admin.reviewers:
        if entry.name == name:
            return entry.role
    return None


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def over_tls(request: Request) -> bool:
    """Whether the browser reached us over TLS (directly, or via a trusted X-Forwarded-Proto)."""
    if request.url.scheme == "https":
        return True
    if _settings(request).admin.trust_forwarded_proto:
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return forwarded == "https"
    return False


def require_console(request: Request) -> None:
    """The console does not exist (404, as before it existed) until reviewers are configured."""
    if not console_enabled(_settings(request)):
        raise NotFound("Unknown route; the API is served under /v1/.")


async def console_session(request: Request) -> dict | None:
    """The request's valid session (cached on the request), or None."""
    if hasattr(request.state, "console_session"):
        return request.state.console_session
    require_console(request)
    try:
        session = await load_session(_client(request), request.cookies.get(COOKIE))
    except (RedisError, OSError) as exc:
        log.warning("console session lookup failed: %s", exc)
        raise ConsoleResponse(error_page(request, 503, "Store unavailable",
                                         "The console cannot reach Redis right now; try again shortly.")) from None
    role = _current_role(_settings(request), session["name"]) if session else None
    if session is None or role is None:
        request.state.console_session = None
        return None
    session["role"] = role
    request.state.console_session = session
    request.state.reviewer = Reviewer(session["name"], role)
    return session


async def console_viewer(request: Request) -> Reviewer:
    """Any signed-in reviewer; otherwise a 303 to the sign-in page that comes back here."""
    if await console_session(request) is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise ConsoleResponse(secure(RedirectResponse(f"/admin/login?next={quote(target, safe='')}", status_code=303)))
    return request.state.reviewer


async def console_reviewer(request: Request) -> Reviewer:
    """A signed-in reviewer with role `reviewer`; a viewer gets a 403 page (and a log line)."""
    reviewer = await console_viewer(request)
    if not reviewer.can_act:
        log.warning("viewer %s refused %s %s (role viewer cannot act)", reviewer.name, request.method, request.url.path)
        raise ConsoleResponse(error_page(request, 403, "Not allowed",
                                         f"{reviewer.name} is a viewer; only reviewers can act."))
    return reviewer


async def check_csrf(request: Request) -> None:
    """The form field `csrf_token` (or header `X-CSRF-Token`) must be this session's token."""
    session = await console_session(request)
    presented = request.headers.get("x-csrf-token")
    if presented is None and request.method == "POST":
        form = await request.form()
        value = form.get("csrf_token")
        presented = value if isinstance(value, str) else None
    if session is None or not presented or not hmac.compare_digest(presented.encode(), session["csrf"].encode()):
        log.warning("console %s %s refused: missing or wrong CSRF token (from %s)",
                    request.method, request.url.path, client_ip(request))
        raise ConsoleResponse(error_page(request, 403, "Request refused",
                                         "This form expired or did not come from the console; reload and retry."))


def csrf_token_for(request: Request) -> str:
    session = getattr(request.state, "console_session", None)
    return session["csrf"] if session else ""


def api_viewer(request: Request) -> Reviewer:
    """`Authorization: Bearer <token>` of a configured reviewer (or the legacy `admin_token`)."""
    settings = _settings(request)
    if not api_enabled(settings):
        raise NotFound("Unknown route; the API is served under /v1/.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise AdminUnauthorized("Admin routes need 'Authorization: Bearer <admin token>'.", code="missing_admin_token")
    reviewer = reviewer_for_token(settings, presented)
    legacy = settings.admin_token
    if legacy and hmac.compare_digest(presented.encode(), legacy.encode()):
        reviewer = Reviewer(LEGACY_ADMIN, "reviewer")
    if reviewer is None:
        raise AdminUnauthorized("The admin token is not valid.")
    request.state.reviewer = reviewer
    return reviewer


def api_reviewer(request: Request) -> Reviewer:
    reviewer = api_viewer(request)
    if not reviewer.can_act:
        log.warning("viewer %s refused %s %s (role viewer cannot act)", reviewer.name, request.method, request.url.path)
        raise AdminForbidden(f"{reviewer.name} is a viewer; only reviewers can act.")
    return reviewer


def hash_token_command(token_source: str | None) -> None:
    """`distillguard admin hash-token`: a new token and its hash, or the hash of one read from stdin."""
    if token_source == "-":
        token = sys.stdin.readline().strip()
        if not token:
            sys.exit("distillguard admin hash-token: no token on stdin")
        print(f"token_sha256: {hash_token(token)}")
        return
    if token_source is not None:
        sys.exit("distillguard admin hash-token: --token takes only '-' (read from stdin); "
                 "a token on the command line would stay in the shell history")
    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print(f"token_sha256: {hash_token(token)}")
    print("# give the token to the reviewer; put only token_sha256 in admin.reviewers", file=sys.stderr)
