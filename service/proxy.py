"""Forwards `/v1/*` to the upstream: admission first, then the request, then the response
relayed as it arrives (streams chunk by chunk), then accounting off the client's path.

A raw ASGI app rather than a FastAPI route: the hot path needs no routing, validation or
response classes, and every microsecond here is added to every LLM call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from detectors.features import RequestFeatures

from . import metrics
from .config import Settings
from .errors import (
    BadRequest,
    BodyTooLarge,
    GatewayError,
    KeyBlocked,
    MissingKey,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .keys import KeyHasher, raw_key_from_headers
from .limits import Admission, Limiter
from .usage import (
    STREAMABLE_PATHS,
    StreamAccountant,
    Usage,
    estimate_prompt_tokens,
    reservation,
    usage_from_body,
)

log = logging.getLogger("distillguard.proxy")

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
    }
)
KEY_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})
KNOWN_ROUTES = frozenset(
    {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/responses",
        "/v1/moderations", "/v1/images/generations", "/v1/audio/transcriptions", "/v1/audio/speech",
    }
)


def route_label(path: str) -> str:
    """A bounded label for metrics: known routes by name, others by their first segment."""
    if path in KNOWN_ROUTES:
        return path
    first = path[4:].split("/", 1)[0]
    return f"/v1/{first}" if first else "/v1/"


@dataclass(slots=True)
class Exchange:
    """One request's life in the gateway; later stages (features, recording) read it."""

    method: str
    path: str
    upstream_target: str
    route: str
    key_id: str
    client_ip: str | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    request: dict | None
    started: float
    received_at: float = 0.0  # wall-clock arrival (Unix seconds), the event's time for detection
    status: int = 0
    usage: Usage | None = None
    upstream_seconds: float = 0.0
    first_chunk_at: float | None = None
    finished: float = 0.0
    strip_usage: bool = False
    accountant: StreamAccountant | None = None
    admission: Admission | None = field(default=None, repr=False)
    # Detection's features of this request, once its listener ran (recording reuses them).
    features: RequestFeatures | None = field(default=None, repr=False)


class Proxy:
    """The ASGI app behind `/v1/`."""

    def __init__(self, settings: Settings, limiter: Limiter, hasher: KeyHasher) -> None:
        self.settings = settings
        self.limiter = limiter
        self.hasher = hasher
        self.base_url = settings.upstream.base_url
        self.upstream_auth = (
            (b"authorization", f"Bearer {settings.upstream.api_key}".encode())
            if settings.upstream.api_key
            else None
        )
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.upstream.connect_timeout, sock_read=settings.upstream.timeout
        )
        self.session: aiohttp.ClientSession | None = None
        self.in_flight: dict[str, Admission] = {}
        self.on_finished: list = []
        self._background: set[asyncio.Task] = set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.settings.upstream.max_connections, keepalive_timeout=60, ttl_dns_cache=300
        )
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
        )

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope, receive, send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        try:
            exchange = await self._admit(scope, receive, started)
        except GatewayError as error:
            await send_error(send, error)
            metrics.REQUESTS.labels(route_label(path), str(error.status), getattr(error, "tier", "")).inc()
            return
        await self._forward_watching_disconnect(exchange, receive, send)

    async def _admit(self, scope, receive, started: float) -> Exchange:
        received_at = time.time()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(name) + len(value) for name, value in headers) > self.settings.max_header_bytes:
            raise BadRequest("Request headers are too large.", code="headers_too_large")
        raw_key = raw_key_from_headers(headers)
        if raw_key is None:
            raise MissingKey(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."
            )
        key_id = self.hasher.key_id(raw_key)
        self.limiter.tier_block(key_id)
        body = await read_body(receive, headers, self.settings.max_body_bytes)
        method: str = scope["method"]
        path: str = scope["path"]
        request = parse_json_body(method, headers, body)
        strip_usage = False
        if request is not None and request.get("stream") is True and path.endswith(STREAMABLE_PATHS):
            options = request.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                request["stream_options"] = {**(options or {}), "include_usage": True}
                body = json.dumps(request).encode()
                strip_usage = True
        client = scope.get("client")
        client_ip = client[0] if client else None
        ip_id = self.hasher.key_id("ip:" + client_ip) if client_ip else None
        cost = reservation(path, body, request, self.settings.limits.default_max_tokens)
        exchange = Exchange(
            method, path, upstream_target(scope), route_label(path), key_id, client_ip, headers, body,
            request, started, received_at=received_at, strip_usage=strip_usage,
        )
        try:
            exchange.admission = await self.limiter.admit(key_id, ip_id, cost)
        except (RateLimited, KeyBlocked) as refusal:
            # A refused request is behaviour too (pushing against limits): detection hears of it.
            exchange.status, exchange.finished = refusal.status, time.perf_counter()
            self._notify(exchange)
            raise
        return exchange

    async def _forward_watching_disconnect(self, exchange: Exchange, receive, send) -> None:
        """Forward in this task, with a watcher that cancels it the moment the client goes
        away (one extra task per request, not two)."""
        admission = exchange.admission
        forwarding = asyncio.current_task()
        disconnected, answered = asyncio.Event(), asyncio.Event()

        async def send_tracked(message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        watcher = asyncio.ensure_future(cancel_on_disconnect(receive, forwarding, disconnected, answered))
        self.in_flight[admission.request_id] = admission
        metrics.IN_FLIGHT.inc()
        try:
            await self._forward(exchange, send_tracked)
        except asyncio.CancelledError:
            if not disconnected.is_set():
                raise
            forwarding.uncancel()
            exchange.status = exchange.status or 499
        finally:
            watcher.cancel()
            metrics.IN_FLIGHT.dec()
            self.in_flight.pop(admission.request_id, None)
            exchange.finished = time.perf_counter()
            self._after(exchange)

    async def _forward(self, exchange: Exchange, send) -> None:
        admission = exchange.admission
        url = URL(self.base_url + exchange.upstream_target, encoded=True)
        upstream_headers = self._upstream_headers(exchange.headers)
        sent_at = time.perf_counter()
        try:
            response = await self.session.request(
                exchange.method, url, headers=upstream_headers, data=exchange.body or None,
                timeout=self.timeout, allow_redirects=False,
            )
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
            await self._fail(exchange, send, UpstreamTimeout("The upstream did not answer in time."))
            return
        except aiohttp.ClientError as exc:
            metrics.UPSTREAM_ERRORS.labels("unreachable").inc()
            log.warning("upstream unreachable: %s", type(exc).__name__)
            await self._fail(exchange, send, UpstreamUnreachable("The upstream could not be reached."))
            return
        exchange.upstream_seconds = time.perf_counter() - sent_at
        async with response:
            exchange.status = response.status
            if response.status >= 500:
                metrics.UPSTREAM_ERRORS.labels(f"status_{response.status}").inc()
            headers = [
                (name, value) for name, value in response.raw_headers if name.lower() not in HOP_BY_HOP
            ] + admission.headers
            content_type = response.headers.get("content-type", "")
            try:
                if content_type.startswith("text/event-stream"):
                    await self._relay_stream(exchange, response, headers, send)
                else:
                    await self._relay_body(exchange, response, headers, send)
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                metrics.UPSTREAM_ERRORS.labels("broken_response").inc()
                log.warning("upstream response broke off: %s", type(exc).__name__)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_body(self, exchange: Exchange, response, headers, send) -> None:
        read_at = time.perf_counter()
        body = await response.read()
        exchange.upstream_seconds += time.perf_counter() - read_at
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if response.headers.get("content-type", "").startswith("application/json"):
            exchange.usage = usage_from_body(body, response.headers.get("content-encoding"))

    async def _relay_stream(self, exchange: Exchange, response, headers, send) -> None:
        accountant = exchange.accountant = StreamAccountant(strip_usage_chunk=exchange.strip_usage)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        upstream_wait = 0.0
        while True:
            read_at = time.perf_counter()
            chunk = await response.content.readany()
            upstream_wait += time.perf_counter() - read_at
            if not chunk:
                break
            events = accountant.feed(chunk)
            if events:
                if exchange.first_chunk_at is None:
                    exchange.first_chunk_at = time.perf_counter()
                await send({"type": "http.response.body", "body": events, "more_body": True})
        exchange.upstream_seconds += upstream_wait
        await send({"type": "http.response.body", "body": accountant.flush(), "more_body": False})
        exchange.usage = accountant.usage

    async def _fail(self, exchange: Exchange, send, error: GatewayError) -> None:
        exchange.status = error.status
        await send_error(send, error, exchange.admission.headers)

    def _upstream_headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        out = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP or (self.upstream_auth and lowered in KEY_HEADERS):
                continue
            out.append((name.decode("latin-1"), value.decode("latin-1")))
        if self.upstream_auth:
            out.append((self.upstream_auth[0].decode(), self.upstream_auth[1].decode()))
        return out

    def _after(self, exchange: Exchange) -> None:
        """Metrics now; Redis accounting and listeners in the background."""
        status = exchange.status
        total = exchange.finished - exchange.started
        metrics.REQUESTS.labels(exchange.route, str(status), exchange.admission.tier).inc()
        metrics.GATEWAY_LATENCY.labels(exchange.route).observe(max(total - exchange.upstream_seconds, 0.0))
        if status not in (0, 499, 502, 504):
            metrics.UPSTREAM_LATENCY.labels(exchange.route).observe(exchange.upstream_seconds)
        if exchange.first_chunk_at is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(exchange.route).observe(exchange.first_chunk_at - exchange.started)
        tokens_used = self._tokens_used(exchange)
        task = asyncio.ensure_future(self._account(exchange, tokens_used))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _tokens_used(self, exchange: Exchange) -> int:
        usage = exchange.usage
        if usage is not None:
            metrics.TOKENS.labels("prompt").inc(usage.prompt_tokens)
            metrics.TOKENS.labels("completion").inc(usage.completion_tokens)
            return usage.total
        accountant = exchange.accountant
        if exchange.status in (0, 499, 502, 504) and accountant is None:
            return 0
        prompt = estimate_prompt_tokens(exchange.body) if exchange.body else 0
        return prompt + (accountant.content_events if accountant else 0)

    async def _account(self, exchange: Exchange, tokens_used: int) -> None:
        try:
            await self.limiter.settle(exchange.admission, tokens_used)
        finally:  # listeners (detection) hear of every request, whatever befell accounting
            self._notify(exchange)

    def _notify(self, exchange: Exchange) -> None:
        for listener in self.on_finished:
            try:
                listener(exchange)
            except Exception:  # a listener's bug must not break the request or accounting
                log.exception("request listener failed")

    async def renew_leases_forever(self) -> None:
        """Every third of a lease, extend the leases of requests still running."""
        interval = self.settings.limits.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if self.in_flight:
                await self.limiter.renew(list(self.in_flight.values()))


def upstream_target(scope) -> str:
    """The part after `/v1`, kept byte for byte (percent-encoding and query intact)."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    target = raw_path.decode("latin-1")[3:]
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def read_body(receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it passes `limit`."""
    for name, value in headers:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge(f"Request body is larger than the {limit}-byte maximum.")
            except ValueError:
                raise BadRequest("Content-Length is not a number.", code="invalid_header") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client disconnected while sending the body.", code="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body is larger than the {limit}-byte maximum.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json_body(method: str, headers: list[tuple[bytes, bytes]], body: bytes) -> dict | None:
    """The JSON request, or None for bodies that are not JSON; malformed JSON is refused
    with 400 here, so upstream and limits always agree on what was asked."""
    if not body or method in ("GET", "HEAD", "DELETE"):
        return None
    content_type = next((value for name, value in headers if name == b"content-type"), b"")
    if content_type and not content_type.startswith(b"application/json"):
        return None
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(request, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return request


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
