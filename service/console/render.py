"""Server-rendered console pages: one Jinja2 environment (autoescaped, so a prompt or reason
holding `<script>` is shown as text) and the security headers every `/admin` page carries.

The CSP allows nothing from another origin and no inline script or style: the console works
with its own static files only, so an injected tag has nothing to run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _utc(ts: float | None) -> str:
    """Unix seconds as `2026-11-24 19:40:31 UTC` (the console shows every time in UTC)."""
    if ts in (None, ""):
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


environment = Environment(
    loader=PackageLoader("service.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["utc"] = _utc


def secure(response: Response) -> Response:
    """Adds the console's security headers to any response (pages, redirects, static files)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """The template rendered with the signed-in reviewer and their CSRF token, with security headers."""
    session = getattr(request.state, "console_session", None)
    context.setdefault("reviewer", getattr(request.state, "reviewer", None))
    context.setdefault("csrf_token", session["csrf"] if session else "")
    context.setdefault("request", request)
    html = environment.get_template(template).render(**context)
    return secure(HTMLResponse(html, status_code=status_code))


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code=status_code, title=title, message=message)
