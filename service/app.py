"""Builds the gateway: the `/v1/` proxy on the hot path, the FastAPI app for everything
else (health, metrics, admin), and the lifespan that connects Redis and the upstream.

Requests under `/v1/` go straight to the proxy's ASGI callable; only the rest pays for
FastAPI's routing and middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import admin, console, metrics
from .alerts.sender import AlertSender, public_url_of
from .config import Settings, load_settings
from .errors import GatewayError, error_body
from .events import EventSink
from .keys import KeyHasher, resolve_key_secret
from .limits import Limiter
from .proxy import Proxy
from .recording import PromptSamples, Recorder
from .scoring.scorer import Scorer, default_name
from .store import Store, connect

log = logging.getLogger("distillguard.app")


class GatewayState:
    """What the lifespan builds and the routes use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.key_secret = resolve_key_secret(settings)
        self.hasher = KeyHasher(self.key_secret)
        self.store: Store | None = None
        self.limiter: Limiter | None = None
        self.proxy: Proxy | None = None
        self.events: EventSink | None = None
        self.recorder: Recorder | None = None
        self.prompt_samples: PromptSamples | None = None  # for the review console, with `bodies: full`
        self.v1 = None  # the ASGI app `/v1/` goes to: the proxy, watched by the recorder if on
        self.scorer: Scorer | None = None
        self.scorer_task: asyncio.Task | None = None
        # Alert queues to the configured webhooks; a no-op without any. `await alerts.notify(event)`.
        self.alerts = AlertSender(settings.alerts, public_url_of(settings))
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.store = await connect(self.settings.redis_url, timeout=self.settings.redis_timeout)
        self.alerts.start()
        self.limiter = Limiter(self.store, self.settings)
        self.proxy = Proxy(self.settings, self.limiter, self.hasher)
        await self.proxy.start()
        self.v1 = self.proxy
        if self.settings.recording.enabled:
            self._start_recording()
        self.tasks.append(asyncio.create_task(self.proxy.renew_leases_forever()))
        if self.settings.detection.enabled:
            self._start_detection()

    def _start_detection(self) -> None:
        """Events always; the scorer too when there is no separate one (the embedded store)."""
        self.events = EventSink(self.store, self.settings, self.key_secret)
        self.proxy.on_finished.append(self.events.listen)
        self.events.start()
        if self.store.embedded or self.settings.detection.embedded_scorer:
            self.scorer = Scorer(self.store, self.settings, name=f"gateway-{default_name()}", alerts=self.alerts)
            self.scorer_task = asyncio.create_task(self.scorer.run())

    def _start_recording(self) -> None:
        settle = max(self.settings.redis_timeout, 1.0) + 1.0  # accounting runs before listeners
        self.recorder = Recorder(self.settings.recording, settle_seconds=settle)
        self.proxy.on_finished.append(self.recorder.listen)
        self.recorder.start()
        self.v1 = self.recorder.watch(self.proxy)
        if self.settings.recording.bodies == "full":
            self.prompt_samples = PromptSamples(self.store, self.settings.redis_timeout)
            self.proxy.on_finished.append(self.prompt_samples.listen)
            self.prompt_samples.start()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.proxy is not None:
            await self.proxy.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self.prompt_samples is not None:
            await self.prompt_samples.close()
        if self.events is not None:
            await self.events.close()
        if self.scorer is not None:
            self.scorer.stop()
            await asyncio.gather(self.scorer_task, return_exceptions=True)
        await self.alerts.close()  # after the scorer: its last alerts get the grace period too
        if self.store is not None:
            await self.store.close()


def openai_error(status: int, message: str, type_: str, code: str | None) -> Response:
    return Response(error_body(message, type_, code), status_code=status, media_type="application/json")


def build_api(state: GatewayState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    api = FastAPI(title="distillguard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.gateway = state

    @api.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> Response:
        return openai_error(exc.status, exc.message, exc.type, exc.code)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        message = f"{'.'.join(str(part) for part in first.get('loc', ()))}: {first.get('msg', 'invalid')}"
        return openai_error(400, message, "invalid_request_error", "invalid_request")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return openai_error(404, "Unknown route; the API is served under /v1/.", "invalid_request_error", "not_found")
        return openai_error(exc.status_code, str(exc.detail), "invalid_request_error", None)

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "pid": os.getpid()}

    @api.get("/readyz")
    async def readyz() -> Response:
        checks = {"redis": await _redis_ready(state), "upstream": await _upstream_ready(state)}
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @api.get("/metrics")
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    api.include_router(admin.router)
    console.install(api, state.settings)
    return api


async def _redis_ready(state: GatewayState) -> bool:
    try:
        async with asyncio.timeout(max(state.settings.redis_timeout, 0.5)):
            return await state.store.ping()
    except Exception:
        return False


async def _upstream_ready(state: GatewayState) -> bool:
    """The upstream answers HTTP at all (any status: a 401 on /models still means it is up)."""
    try:
        async with asyncio.timeout(max(state.settings.upstream.connect_timeout, 1.0)):
            async with state.proxy.session.get(state.settings.upstream.base_url + "/models") as response:
                await response.read()
                return True
    except Exception:
        return False


class Gateway:
    """The ASGI entry point: `/v1/` to the proxy, everything else to FastAPI."""

    def __init__(self, state: GatewayState, api: FastAPI) -> None:
        self.state = state
        self.api = api

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.state.v1(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_app(settings: Settings | None = None) -> Gateway:
    """The gateway app; with no settings, they are read from `$DISTILLGUARD_CONFIG` and the env."""
    settings = settings or load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    state = GatewayState(settings)
    return Gateway(state, build_api(state))
