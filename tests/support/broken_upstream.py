"""A misbehaving upstream for the tests: a raw asyncio TCP server on loopback, in its own
thread, that answers each request the way its `x-break` header asks (reset, stall, garbage),
and keeps every request it received byte for byte.

It speaks just enough HTTP/1.1 by hand to break it on purpose; the real simulator
(`distillguard mock-upstream`) is for upstreams that behave.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
from dataclasses import dataclass

from tests.support.processes import LOOPBACK

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
COMPLETION = json.dumps(
    {"id": "chatcmpl-broken", "object": "chat.completion", "model": "sim",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
     "usage": USAGE}
).encode()
SSE_CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'


@dataclass
class ReceivedRequest:
    """One request as it reached the upstream: the request line's parts, headers, body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name), None)


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class BrokenUpstream:
    """`base_url` for the gateway's config; `received` for what arrived; `stop()` when done."""

    def __init__(self) -> None:
        self.received: list[ReceivedRequest] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._stalled: list[asyncio.StreamWriter] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            for writer in self._stalled:
                writer.transport.abort()
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                self.received.append(request)
                if not await self._answer(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> ReceivedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [tuple(part.strip(" \t") for part in line.split(":", 1)) for line in header_lines]
        length = int(next((value for name, value in headers if name.lower() == "content-length"), "0"))
        body = await reader.readexactly(length) if length else b""
        return ReceivedRequest(method, target, headers, body)

    async def _answer(self, request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
        """Sends the answer `x-break` names; False when the connection is done with."""
        mode = request.header("x-break") or "ok"
        if mode == "reset-before-headers":
            _reset(writer)
            return False
        if mode == "reset-mid-body":
            writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")]))
            writer.write(COMPLETION[:16])
            await writer.drain()
            _reset(writer)
            return False
        if mode == "close-mid-body":
            writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")]))
            writer.write(COMPLETION[:16])
            await writer.drain()
            return False
        if mode in ("reset-mid-stream", "stall-stream"):
            writer.write(_head("200 OK", [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]))
            writer.write(_chunk(SSE_CHUNK) + _chunk(SSE_CHUNK))
            await writer.drain()
            if mode == "stall-stream":
                self._stalled.append(writer)
                await asyncio.sleep(3600)
            _reset(writer)
            return False
        if mode == "stall-body":
            writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")]))
            writer.write(COMPLETION[:16])
            await writer.drain()
            self._stalled.append(writer)
            await asyncio.sleep(3600)
            return False
        if mode == "invalid-json":
            body = COMPLETION[:-7] + b"]]"
            writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]))
            writer.write(body)
        elif mode == "bad-gzip":
            body = gzip.compress(COMPLETION)[:-12] + b"\x00" * 12  # a corrupt trailer: CRC and size wrong
            writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                                          ("Content-Length", str(len(body)))]))
            writer.write(body)
        else:
            writer.write(_head("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(COMPLETION)))]))
            writer.write(COMPLETION)
        await writer.drain()
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0), as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def start_broken_upstream() -> BrokenUpstream:
    return BrokenUpstream()
