"""API keys: where a request carries one, and the key_id that stands for it everywhere.

A raw key never leaves this module: logs, metrics, Redis and traffic files see only
`key_id = HMAC-SHA256(secret, raw key)[:16 hex]`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from .config import Settings

KEY_HEADERS = (b"authorization", b"x-api-key", b"api-key")
SECRET_FILE_ENV = "DISTILLGUARD_HOME"


def state_dir() -> Path:
    """Where one installation keeps its generated state (the key secret)."""
    explicit = os.environ.get(SECRET_FILE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "distillguard"


def resolve_key_secret(settings: Settings) -> bytes:
    """The configured secret, else the one this installation generated on first use."""
    if settings.key_secret:
        return settings.key_secret.encode()
    path = state_dir() / "key_secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(candidate)
    return candidate


class KeyHasher:
    """Turns raw keys into key_ids; caches recent keys since a gateway sees the same few often."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.key_id = lru_cache(maxsize=65536)(self._compute)

    def _compute(self, raw_key: str) -> str:
        return hmac.new(self._secret, raw_key.encode(), hashlib.sha256).hexdigest()[:16]


def raw_key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key from `Authorization: Bearer`, `x-api-key` or `api-key`, in that order."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in KEY_HEADERS and lowered not in found:
            found[lowered] = value
    auth = found.get(b"authorization")
    if auth:
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip().decode("latin-1")
    for name in (b"x-api-key", b"api-key"):
        value = found.get(name)
        if value and value.strip():
            return value.strip().decode("latin-1")
    return None
