"""The security review console, served by the gateway under `/admin` (docs/review.md).

`router` gathers every console page; each route carries its full path (`/admin/...`) and
its own sign-in dependency (`auth.console_viewer` / `console_reviewer` + `check_csrf`).
`install` adds the router and the handler that turns console refusals into pages.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request

from . import audit_page, pages, signin, static_files
from .auth import ConsoleResponse

log = logging.getLogger("distillguard.console")

router = APIRouter()
router.include_router(signin.router)
router.include_router(audit_page.router)
router.include_router(static_files.router)
router.include_router(pages.router)


def install(api: FastAPI, settings) -> None:
    """Adds the console to the gateway's app; warns about the legacy plaintext admin token."""
    api.include_router(router)

    @api.exception_handler(ConsoleResponse)
    async def console_response(_: Request, exc: ConsoleResponse):
        return exc.response

    if settings.admin_token:
        log.warning("admin_token is deprecated: it opens /admin/api only, as reviewer 'admin'; "
                    "list people under admin.reviewers (distillguard admin hash-token)")
