"""A webhook receiver on loopback, for the tests of alerts and of the decision door."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Self

from aiohttp import web

from tests.support.processes import LOOPBACK, free_port


class Receiver:
    """A webhook on loopback: answers `statuses` in turn (then 200), keeps what it was sent."""

    def __init__(self, statuses: tuple[int, ...] = (), hold: bool = False) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hooks/token-in-the-path"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        await self.released.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/hooks/{token}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, LOOPBACK, self.port).start()
        return self

    async def __aexit__(self, *_) -> None:
        self.released.set()
        await self.runner.cleanup()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


def verified(secret: str, headers: dict, body: bytes, tolerance: float = 300) -> bool:
    """What a receiver does (docs/review.md): HMAC over "<t>.<body>", constant-time compare, fresh t."""
    parts = dict(item.split("=", 1) for item in headers["X-Distillguard-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= tolerance
