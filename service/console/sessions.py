"""Console sessions in Redis. The browser holds a random 32-byte cookie; Redis holds only
its SHA-256 as the key name, so a dump of Redis cannot be replayed as anyone's session."""

from __future__ import annotations

import hashlib
import secrets
import time

from ..store import session_key

COOKIE = "dg_session"
# The pre-session cookie that binds the sign-in form's CSRF token (login CSRF).
LOGIN_COOKIE = "dg_login"


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


async def create_session(client, *, name: str, role: str, ttl_seconds: float) -> str:
    """A new session for `name`; returns the cookie value (never stored)."""
    cookie = secrets.token_urlsafe(32)
    record = {"name": name, "role": role, "csrf": secrets.token_urlsafe(32), "created": repr(time.time())}
    pipe = client.pipeline(transaction=False)
    pipe.hset(session_key(_hash(cookie)), mapping=record)
    pipe.expire(session_key(_hash(cookie)), max(1, int(ttl_seconds)))
    await pipe.execute()
    return cookie


async def load_session(client, cookie: str | None) -> dict | None:
    """The session record ({name, role, csrf, created}) for a cookie, or None when unknown or expired."""
    if not cookie or len(cookie) > 128:
        return None
    record = await client.hgetall(session_key(_hash(cookie)))
    if not record:
        return None
    return {_text(name): _text(value) for name, value in record.items()}


async def delete_session(client, cookie: str | None) -> None:
    if cookie and len(cookie) <= 128:
        await client.delete(session_key(_hash(cookie)))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
