"""The long-running commands: serve (the gateway), scorer, demo, mock-upstream."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile

from ._common import export_flags, settings_from, uvicorn_options


def cmd_serve(args: argparse.Namespace) -> None:
    export_flags(args)
    settings = settings_from(args)
    if settings.workers > 1 and settings.redis_url is None:
        sys.exit(
            "distillguard: --workers > 1 needs --redis-url: the embedded store lives in one process, "
            "so separate workers would each count separately"
        )
    from ..keys import resolve_key_secret

    resolve_key_secret(settings)
    import uvicorn

    if settings.workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="distillguard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    print(
        f"distillguard: serving on http://{settings.host}:{settings.port} -> {settings.upstream.base_url} "
        f"({settings.workers} worker(s), store: {'redis' if settings.redis_url else 'embedded'})",
        flush=True,
    )
    try:
        uvicorn.run(
            "service.app:create_app", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, **uvicorn_options(),
        )
    finally:
        if settings.workers > 1:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def cmd_scorer(args: argparse.Namespace) -> None:
    """The detection worker: consumes the gateway's event streams (see service/scoring/scorer.py)."""
    settings = settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `scorer` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    import logging

    from ..scoring.scorer import run_scorer

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.host)
    asyncio.run(run_scorer(settings, args.name))


def cmd_mock_upstream(args: argparse.Namespace) -> None:
    from ..upstream_sim import MockSettings, serve_mock

    settings = MockSettings(seed=args.seed, latency_ms=args.latency_ms, tokens_per_second=args.tokens_per_second,
                            answers=args.answers)
    print(f"distillguard mock-upstream: http://{args.host}:{args.port}/v1", flush=True)
    asyncio.run(serve_mock(args.host, args.port, settings))


def cmd_demo(args: argparse.Namespace) -> None:
    """The gateway on embedded defaults in front of the simulator, in one process."""
    import uvicorn

    from ..app import create_app
    from ..upstream_sim import MockSettings, create_mock_app

    upstream_url = f"http://127.0.0.1:{args.upstream_port}/v1"
    settings = settings_from(args, upstream={"base_url": upstream_url})
    gateway = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, **uvicorn_options())
    )
    mock = uvicorn.Server(
        uvicorn.Config(
            create_mock_app(MockSettings(seed=0, latency_ms=20, tokens_per_second=200)),
            host="127.0.0.1", port=args.upstream_port, **uvicorn_options(),
        )
    )
    print(
        f"distillguard demo: gateway http://{settings.host}:{settings.port}/v1 -> simulator {upstream_url}\n"
        f"  try: curl -s http://{settings.host}:{settings.port}/v1/chat/completions "
        "-H 'Authorization: Bearer sk-demo' -H 'Content-Type: application/json' "
        "-d '{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
        "  detection runs in-process: flags are logged here; to review them in the console at "
        f"http://{settings.host}:{settings.port}/admin, add a reviewer (distillguard admin hash-token, "
        "docs/review.md)",
        flush=True,
    )

    async def both() -> None:
        await asyncio.gather(mock.serve(), gateway.serve())

    asyncio.run(both())
