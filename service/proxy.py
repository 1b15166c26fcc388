"""Forwards `/v1/*` to the upstream: admission first, then the request, then the response
relayed as it arrives (streams chunk by chunk), then accounting off the client's path.

A raw ASGI app rather than a FastAPI route: the hot path needs no routing, validation or
response classes, and every microsecond here is added to every LLM call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from detectors.features import RequestFeatures

from . import metrics
from .config import Settings
from .errors import (
    BadRequest,
    GatewayError,
    KeyBlocked,
    MissingKey,
    RateLimited,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .keys import KeyHasher, raw_key_from_headers
from .limits import Admission, Limiter
from .reply import Reply, cancel_on_disconnect, internal_error, send_error
from .request_body import parse_json_body, read_body
from .usage import (
    STREAMABLE_PATHS,
    StreamAccountant,
    UnreadableBody,
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


# A `.` or `..` segment (after percent-decoding): an upstream that normalizes paths would
# take `/v1/../admin` out of the API the gateway guards.
DOT_SEGMENT = re.compile(r"/\.{1,2}(?:/|$)")


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
            limit=self.settings.upstream.max_connections,
            keepalive_timeout=self.settings.upstream.keepalive_timeout,
            ttl_dns_cache=300,
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
        except Exception as exc:  # noqa: BLE001 - nothing is sent yet: every failure is answered in OpenAI's shape
            error = exc if isinstance(exc, GatewayError) else internal_error("admission", exc)
            await send_error(send, error)
            metrics.REQUESTS.labels(route_label(path), str(error.status), getattr(error, "tier", "")).inc()
            return
        await self._forward_watching_disconnect(exchange, receive, send)

    async def _admit(self, scope, receive, started: float) -> Exchange:
        received_at = time.time()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        check_headers(headers, self.settings.max_header_bytes)
        raw_key = raw_key_from_headers(headers)
        if raw_key is None:
            raise MissingKey(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."
            )
        key_id = self.hasher.key_id(raw_key)
        self.limiter.tier_block(key_id)
        method: str = scope["method"]
        path: str = scope["path"]
        if DOT_SEGMENT.search(path):
            raise BadRequest("The path has '.' or '..' segments.", code="invalid_path")
        body = await read_body(receive, headers, self.settings.max_body_bytes)
        request = parse_json_body(method, headers, body, self.settings.max_json_depth)
        strip_usage = False
        if request is not None and request.get("stream") is True and path.endswith(STREAMABLE_PATHS):
            options = request.get("stream_options")
            if options is None or (isinstance(options, dict) and not options.get("include_usage")):
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
        reply = Reply(send)
        disconnected = asyncio.Event()
        watcher = asyncio.ensure_future(cancel_on_disconnect(receive, forwarding, disconnected, reply.answered))
        self.in_flight[admission.request_id] = admission
        metrics.IN_FLIGHT.inc()
        try:
            await self._forward(exchange, reply)
        except asyncio.CancelledError:
            if not disconnected.is_set():
                raise
            forwarding.uncancel()
            exchange.status = exchange.status or 499
        except Exception as exc:  # noqa: BLE001 - a bug of ours: still an answer in OpenAI's shape, never uvicorn's
            await self._fail(exchange, reply, internal_error("forwarding", exc))
        finally:
            watcher.cancel()
            metrics.IN_FLIGHT.dec()
            self.in_flight.pop(admission.request_id, None)
            exchange.finished = time.perf_counter()
            self._after(exchange)

    async def _forward(self, exchange: Exchange, reply: Reply) -> None:
        admission = exchange.admission
        url = URL(self.base_url + exchange.upstream_target, encoded=True)
        upstream_headers = self._upstream_headers(exchange.headers)
        sent_at = time.perf_counter()
        try:
            response = await self.session.request(
                exchange.method, url, headers=upstream_headers, data=exchange.body or None,
                timeout=self.timeout, allow_redirects=False,
            )
        except TimeoutError:  # aiohttp's ServerTimeoutError is one too
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
            await self._fail(exchange, reply, UpstreamTimeout("The upstream did not answer in time."))
            return
        except aiohttp.ClientResponseError as exc:  # it answered, but not in HTTP we can read
            metrics.UPSTREAM_ERRORS.labels("broken_response").inc()
            log.warning("upstream answer unreadable: %s", type(exc).__name__)
            await self._fail(exchange, reply, UpstreamBadResponse("The upstream's answer could not be read."))
            return
        except aiohttp.ClientError as exc:
            metrics.UPSTREAM_ERRORS.labels("unreachable").inc()
            log.warning("upstream unreachable: %s", type(exc).__name__)
            await self._fail(exchange, reply, UpstreamUnreachable("The upstream could not be reached."))
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
                    await self._relay_stream(exchange, response, headers, reply)
                else:
                    await self._relay_body(exchange, response, headers, reply)
            except TimeoutError:
                metrics.UPSTREAM_ERRORS.labels("timeout").inc()
                log.warning("upstream stalled mid-answer")
                await self._fail(exchange, reply, UpstreamTimeout("The upstream stopped sending its answer."))
            except (aiohttp.ClientError, UnreadableBody) as exc:
                metrics.UPSTREAM_ERRORS.labels("broken_response").inc()
                log.warning("upstream answer broke off or is unreadable: %s", exc if isinstance(
                    exc, UnreadableBody) else type(exc).__name__)
                await self._fail(exchange, reply, UpstreamBadResponse("The upstream's answer broke off or is unreadable."))

    async def _relay_body(self, exchange: Exchange, response, headers, send) -> None:
        """Read whole before anything is sent, so a body that breaks off or does not parse
        is still answered with an error rather than relayed as if whole."""
        read_at = time.perf_counter()
        body = await response.read()
        exchange.upstream_seconds += time.perf_counter() - read_at
        if response.headers.get("content-type", "").startswith("application/json"):
            encoding = response.headers.get("content-encoding", "").strip().lower()
            exchange.usage = usage_from_body(body, encoding)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _relay_stream(self, exchange: Exchange, response, headers, send) -> None:
        accountant = exchange.accountant = StreamAccountant(strip_usage_chunk=exchange.strip_usage)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        upstream_wait = 0.0
        try:
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
        finally:
            exchange.upstream_seconds += upstream_wait
            exchange.usage = accountant.usage
        await send({"type": "http.response.body", "body": accountant.flush(), "more_body": False})

    async def _fail(self, exchange: Exchange, reply: Reply, error: GatewayError) -> None:
        """Tell the client the one way still open: an error response if nothing was sent yet,
        else a last error event on a stream, else just the end of the body."""
        if not reply.started:
            exchange.status = error.status
            await send_error(reply, error, exchange.admission.headers)
        elif not reply.finished:
            last = error.event() if exchange.accountant is not None else b""
            await reply({"type": "http.response.body", "body": last, "more_body": False})

    def _upstream_headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        out = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP or (self.upstream_auth and lowered in KEY_HEADERS):
                continue
            out.append((name.decode("ascii"), value.decode("utf-8")))  # as checked at admission
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


def check_headers(headers: list[tuple[bytes, bytes]], max_bytes: int) -> None:
    """Headers within `max_bytes`, with names in ASCII and values in UTF-8: the upstream
    client writes UTF-8, so any other bytes could not reach the upstream as they came."""
    if sum(len(name) + len(value) for name, value in headers) > max_bytes:
        raise BadRequest("Request headers are too large.", code="headers_too_large")
    for name, value in headers:
        if not (name.isascii() and value.isascii()):
            try:
                name.decode("ascii"), value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("Header names must be ASCII and values UTF-8.", code="invalid_header") from None


def upstream_target(scope) -> str:
    """The part after `/v1`, kept byte for byte (percent-encoding and query intact)."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    target = raw_path.decode("latin-1")[3:]
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target
