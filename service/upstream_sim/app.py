"""The simulator's ASGI app: routes, test-control headers, stats, streaming pace.

A raw ASGI app so that, as the upstream in a benchmark, it costs next to nothing and the
numbers measure the gateway. Answers are deterministic (seed + request body) so tests can
compare them, and request headers let a test slow it down, fail it or size its answers.
`answers="model"` answers like a model (answers.py); `"fixed"` keeps the short fixed answer.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import math
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import uvicorn

from .fixed import FixedCompletion, inputs, word_count
from .render import ModelCompletion

MODELS = ("sim", "sim-large", "sim-reasoning", "sim-embed")
ROUTES = (("/chat/completions", "chat", "POST"), ("/completions", "text", "POST"),
          ("/embeddings", "embeddings", "POST"), ("/models", "models", "GET"))
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
ANSWER_MODES = ("model", "fixed")
# Idle keep-alive connections stay open this long, as a hosted API's do (nginx's default is
# 75 s): uvicorn's 5 s would close connections a client pool still holds and reuses.
KEEP_ALIVE_S = 75


@dataclass(frozen=True)
class MockSettings:
    seed: int = 0
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0
    default_completion_tokens: int = 16
    answers: Literal["model", "fixed"] = "model"


class MockError(Exception):
    """Ends a request with an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _float(headers: dict, name: str, default: float) -> float:
    raw = headers.get(name)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise MockError(400, f"header {name} must be a number", "invalid_mock_header") from None


class Stats:
    """Counters and the last request seen, for tests to assert on what reached the upstream."""

    def __init__(self) -> None:
        self.reset()
        self.last_headers: dict[str, str] = {}
        self.last_body = ""
        self.last_path = ""

    def reset(self) -> None:
        self.requests = self.streams_started = self.streams_completed = self.streams_cancelled = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


class MockUpstream:
    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.stats = Stats()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path, method = scope["path"], scope["method"]
        if path == "/mock/stats":
            return await respond(send, 200, self.stats.as_dict())
        if path == "/mock/reset" and method == "POST":
            self.stats.reset()
            return await respond(send, 200, {"reset": True})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = bytes(body)
        self.stats.requests += 1
        self.stats.last_headers, self.stats.last_body = headers, body.decode("utf-8", "replace")
        raw_path = (scope.get("raw_path") or path.encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        self.stats.last_path = f"{raw_path}?{query}" if query else raw_path
        try:
            await self._route(path, method, headers, body, receive, send)
        except MockError as exc:
            await respond(send, exc.status, exc.body)
        except (ValueError, TypeError, AttributeError) as exc:
            await respond(send, 400, MockError(400, f"Invalid request: {exc}", "invalid_request").body)

    async def _route(self, path, method, headers, body, receive, send) -> None:
        route = next((r for r in ROUTES if path.endswith(r[0])), None)
        if route is None:
            raise MockError(404, f"Unknown request URL: {method} {path}", "unknown_url")
        _, kind, allowed = route
        if method != allowed:
            raise MockError(405, f"Method {method} not allowed on {path}", "method_not_allowed")
        latency = _float(headers, "x-mock-latency-ms", self.settings.latency_ms) / 1000
        rate = _float(headers, "x-mock-tokens-per-second", self.settings.tokens_per_second)
        status = int(_float(headers, "x-mock-status", 200))
        if not 200 <= status < 600:
            raise MockError(400, "header x-mock-status must be an HTTP status", "invalid_mock_header")
        request = {}
        if kind != "models":
            try:
                request = json.loads(body)
            except ValueError as exc:
                raise MockError(400, f"Request body is not valid JSON: {exc}", "invalid_json") from None
            if not isinstance(request, dict):
                raise MockError(400, "Request body must be a JSON object", "invalid_json")
        if status != 200 or kind in ("models", "embeddings"):
            await _sleep(latency)
        if status != 200:
            raise MockError(status, f"Simulated upstream failure with status {status}", "mock_status")
        if kind == "models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "distillguard"}
                    for m in MODELS]
            return await respond(send, 200, {"object": "list", "data": data})
        if kind == "embeddings":
            return await respond(send, 200, self._embeddings(request))
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise MockError(400, "max_tokens must be a positive integer", "invalid_max_tokens")
        mode = headers.get("x-mock-answers", self.settings.answers)
        if mode not in ANSWER_MODES:
            raise MockError(400, "header x-mock-answers must be model or fixed", "invalid_mock_header")
        forced = headers.get("x-mock-completion-tokens")
        forced_length = None if forced is None else max(int(_float(headers, "x-mock-completion-tokens", 0)), 0)
        if mode == "fixed":
            default = self.settings.default_completion_tokens
            length = min(limit or default, default) if forced_length is None else forced_length
            completion = FixedCompletion(kind, request, body, self.settings.seed, length, limit)
        else:
            completion = ModelCompletion(kind, request, body, self.settings.seed, forced_length)
        if request.get("stream"):
            return await self._stream(completion, latency, rate, receive, send)
        await _sleep(latency + (completion.length / rate if rate > 0 else 0))
        await respond(send, 200, completion.whole())

    def _embeddings(self, request: dict) -> dict:
        items = inputs(request.get("input", ""))
        size = int(request.get("dimensions") or 64)
        data = []
        for index, item in enumerate(items):
            rng = random.Random(self.settings.seed ^ zlib.crc32(json.dumps(item).encode()))
            vector = [rng.gauss(0, 1) for _ in range(size)]
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vector = [v / norm for v in vector]
            if request.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(word_count(item) for item in items)
        return {"object": "list", "data": data, "model": request.get("model", "sim-embed"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def _stream(self, completion, latency, rate, receive, send) -> None:
        """Runs the stream against a disconnect watcher: whichever ends first decides the count."""
        stats = self.stats
        stats.streams_started += 1
        producer = asyncio.ensure_future(self._produce(completion, latency, rate, send))
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        await asyncio.wait((producer, watcher), return_when=asyncio.FIRST_COMPLETED)
        completed = producer.done() and not producer.cancelled() and producer.exception() is None
        for task in (producer, watcher):
            task.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        if completed:
            stats.streams_completed += 1
        else:
            stats.streams_cancelled += 1

    async def _produce(self, completion, latency, rate, send) -> None:
        await _sleep(latency)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step, event in completion.events():
            if rate > 0 and step:
                await _sleep(start + step / rate - loop.time())
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def respond(send, status: int, payload: dict) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_mock_app(settings: MockSettings) -> MockUpstream:
    """The simulator as an ASGI callable; its `stats` are also served at GET /mock/stats."""
    return MockUpstream(settings)


async def serve_mock(host: str, port: int, settings: MockSettings) -> None:
    """Serves on the running event loop; `loop` only matters if uvicorn sets one up itself."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    config = uvicorn.Config(create_mock_app(settings), host=host, port=port, loop=loop,
                            http="httptools", log_level="warning", access_log=False,
                            timeout_keep_alive=KEEP_ALIVE_S)
    await uvicorn.Server(config).serve()
