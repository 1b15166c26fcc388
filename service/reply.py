"""The client's side of one exchange: how an answer, or a failure, reaches the client.

ASGI allows one `http.response.start` and then body parts; a failure must take whichever
way is still open, and any failure not already a GatewayError is still OpenAI's error JSON.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import GatewayError

log = logging.getLogger("distillguard.proxy")


class Reply:
    """The client's side of one exchange: sends, and knows how far the answer got, so that a
    failure never sends a second start nor a body before the start."""

    __slots__ = ("answered", "finished", "send", "started")

    def __init__(self, send) -> None:
        self.send = send
        self.started = self.finished = False
        self.answered = asyncio.Event()  # set once the whole answer is out

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body"):
            self.finished = True
        await self.send(message)
        if self.finished:
            self.answered.set()


async def cancel_on_disconnect(
    receive, task: asyncio.Task, disconnected: asyncio.Event, answered: asyncio.Event
) -> None:
    """Waits for the client's disconnect and, unless the answer was already sent whole,
    cancels the forwarding task, whose upstream connection then closes too."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not answered.is_set():
                disconnected.set()
                task.cancel()
            return


def internal_error(stage: str, exc: Exception) -> GatewayError:
    log.error("%s failed", stage, exc_info=exc)
    return GatewayError("The gateway failed on this request; it has been logged.")


async def send_error(send, error: GatewayError, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *error.headers,
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
