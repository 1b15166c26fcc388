"""The console's own CSS and JavaScript, served from the installed package (no build step,
nothing from another site) with the same security headers as the pages."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ..errors import NotFound
from .auth import require_console
from .render import secure

router = APIRouter()
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".svg": "image/svg+xml", ".png": "image/png"}


def _static_file(name: str) -> tuple[bytes, str] | None:
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in MEDIA_TYPES or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = resources.files("service.console").joinpath("static", name)
    if not path.is_file():
        return None
    return path.read_bytes(), MEDIA_TYPES[suffix]


@router.get("/admin/static/{name}", dependencies=[Depends(require_console)])
async def static_file(name: str) -> Response:
    found = _static_file(name)
    if found is None:
        raise NotFound(f"No console file {name!r}.")
    body, media_type = found
    response = secure(Response(body, media_type=media_type))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
