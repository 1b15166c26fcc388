"""An OpenAI-compatible upstream simulator for tests, the demo and benchmarks.

A raw ASGI app so that, as the upstream in a benchmark, it costs next to nothing and the
numbers measure the gateway. Answers are deterministic (seed + request body) so tests can
compare them, and request headers let a test slow it down, fail it or size its answers.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import math
import random
import struct
import time
import uuid
import zlib
from dataclasses import dataclass

import uvicorn

WORDS = (
    "the river runs north past old stone bridges while quiet towns wake and merchants open "
    "their doors to travellers who carry maps letters bread and stories from distant hills "
    "where shepherds watch the weather turn and bells ring across green valleys at noon"
).split()
MODELS = ("sim", "sim-large", "sim-embed")
ROUTES = (("/chat/completions", "chat", "POST"), ("/completions", "text", "POST"),
          ("/embeddings", "embeddings", "POST"), ("/models", "models", "GET"))
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True)
class MockSettings:
    seed: int = 0
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0
    default_completion_tokens: int = 16


class MockError(Exception):
    """Ends a request with an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _text_of(content: object) -> str:
    """Message content as text, whether a string or a list of typed parts."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _inputs(value: object) -> list:
    """`prompt` / `input` as a list: a string, a token array, or a list of either."""
    return value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]


def _count(item: object) -> int:
    return len(item) if isinstance(item, list) else len(str(item or "").split())


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
        default = self.settings.default_completion_tokens
        length = int(_float(headers, "x-mock-completion-tokens", min(limit or default, default)))
        completion = Completion(kind, request, body, self.settings.seed, max(length, 0), limit)
        if request.get("stream"):
            return await self._stream(completion, latency, rate, receive, send)
        await _sleep(latency + (completion.length / rate if rate > 0 else 0))
        await respond(send, 200, completion.whole())

    def _embeddings(self, request: dict) -> dict:
        items = _inputs(request.get("input", ""))
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
        tokens = sum(_count(item) for item in items)
        return {"object": "list", "data": data, "model": request.get("model", "sim-embed"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def _stream(self, completion: Completion, latency, rate, receive, send) -> None:
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

    async def _produce(self, completion: Completion, latency, rate, send) -> None:
        await _sleep(latency)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step, event in completion.events():
            if rate > 0 and step:
                await _sleep(start + step / rate - loop.time())
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Completion:
    """One request's deterministic answer, rendered whole or as server-sent events."""

    def __init__(self, kind: str, request: dict, body: bytes, seed: int, length: int, limit) -> None:
        self.kind, self.request, self.length = kind, request, length
        self.n = max(int(request.get("n") or 1), 1)
        self.finish = "length" if limit and length >= limit else "stop"
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = request.get("model", "sim")
        want = request.get("logprobs") if kind == "chat" else None
        self.top = int(request.get("top_logprobs") or 0) if want else -1
        rng = random.Random(seed ^ zlib.crc32(body))
        self.tokens = [[(" " if i else "") + rng.choice(WORDS) for i in range(length)] for _ in range(self.n)]
        self.logprobs = [[self._logprob(t, rng) for t in choice] for choice in self.tokens] if want else None
        if kind == "chat":
            messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
            prompt = sum(_count(_text_of(m.get("content"))) + 3 for m in messages)
        else:
            prompt = sum(_count(item) for item in _inputs(request.get("prompt", "")))
        total = length * self.n
        self.usage = {"prompt_tokens": prompt, "completion_tokens": total, "total_tokens": prompt + total}

    def _logprob(self, token: str, rng: random.Random) -> dict:
        """The chosen token ranks first; alternatives trail it, as a real top-k list would."""
        value = -round(rng.random() * 1.5, 4)
        top = [{"token": token, "logprob": value, "bytes": list(token.encode())}][:self.top]
        for rank in range(1, self.top):
            other = " " + rng.choice(WORDS)
            top.append({"token": other, "logprob": round(value - rank - rng.random(), 4),
                        "bytes": list(other.encode())})
        return {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": top}

    def _envelope(self, choices: list, chunk: bool) -> dict:
        if self.kind == "text":
            object_ = "text_completion"
        else:
            object_ = "chat.completion.chunk" if chunk else "chat.completion"
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model,
                "system_fingerprint": "fp_mock", "choices": choices}

    def whole(self) -> dict:
        choices = []
        for index, tokens in enumerate(self.tokens):
            text = "".join(tokens)
            if self.kind == "chat":
                logprobs = {"content": self.logprobs[index], "refusal": None} if self.logprobs else None
                message = {"role": "assistant", "content": text, "refusal": None}
                choice = {"message": message, "logprobs": logprobs}
            else:
                choice = {"text": text, "logprobs": None}
            choices.append({"index": index, **choice, "finish_reason": self.finish})
        return {**self._envelope(choices, chunk=False), "usage": self.usage}

    def events(self):
        """Yields (token step, SSE bytes); the sender spaces steps in time."""
        with_usage = bool((self.request.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if with_usage else {}
        for step in range(self.length):
            for index in range(self.n):
                choice = self._chunk_choice(index, step)
                yield step, _sse({**self._envelope([choice], chunk=True), **extra})
        end = max(self.length - 1, 0)
        for index in range(self.n):
            last = {"index": index, "finish_reason": self.finish, "logprobs": None}
            last.update({"delta": {}} if self.kind == "chat" else {"text": ""})
            yield end, _sse({**self._envelope([last], chunk=True), **extra})
        if with_usage:
            yield end, _sse({**self._envelope([], chunk=True), "usage": self.usage})
        yield end, b"data: [DONE]\n\n"

    def _chunk_choice(self, index: int, step: int) -> dict:
        token = self.tokens[index][step]
        if self.kind == "text":
            return {"index": index, "text": token, "logprobs": None, "finish_reason": None}
        delta = {"role": "assistant", "content": token} if step == 0 else {"content": token}
        logprobs = {"content": [self.logprobs[index][step]], "refusal": None} if self.logprobs else None
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


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
                            http="httptools", log_level="warning", access_log=False)
    await uvicorn.Server(config).serve()
