"""The `distillguard` command: serve, scorer, demo, mock-upstream, key-id, keys, replay, evaluate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile

from .config import CONFIG_PATH_ENV, ConfigError, Settings, load_settings, parse_duration


def _settings_from(args: argparse.Namespace, **extra) -> Settings:
    """Validate the config now, with CLI flags on top, so errors show before anything starts."""
    flags = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "redis_url": getattr(args, "redis_url", None),
        **extra,
    }
    upstream = getattr(args, "upstream", None)
    if upstream:
        flags["upstream"] = {"base_url": upstream}
    try:
        return load_settings(getattr(args, "config", None), **flags)
    except ConfigError as exc:
        sys.exit(f"distillguard: {exc}")


def _export(args: argparse.Namespace) -> None:
    """Hand CLI flags to worker processes through the environment they inherit."""
    if getattr(args, "config", None):
        os.environ[CONFIG_PATH_ENV] = os.path.abspath(args.config)
    for flag, env in (
        ("host", "DISTILLGUARD_HOST"),
        ("port", "DISTILLGUARD_PORT"),
        ("workers", "DISTILLGUARD_WORKERS"),
        ("redis_url", "DISTILLGUARD_REDIS_URL"),
        ("upstream", "DISTILLGUARD_UPSTREAM__BASE_URL"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[env] = str(value)


def _uvicorn_options() -> dict:
    options = {
        "http": "httptools", "access_log": False, "log_level": "warning", "lifespan": "on",
        "proxy_headers": False,  # client addresses are the socket's; X-Forwarded-For is not trusted
    }
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options


def cmd_serve(args: argparse.Namespace) -> None:
    _export(args)
    settings = _settings_from(args)
    if settings.workers > 1 and settings.redis_url is None:
        sys.exit(
            "distillguard: --workers > 1 needs --redis-url: the embedded store lives in one process, "
            "so separate workers would each count separately"
        )
    from .keys import resolve_key_secret

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
            workers=settings.workers, **_uvicorn_options(),
        )
    finally:
        if settings.workers > 1:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def cmd_scorer(args: argparse.Namespace) -> None:
    """The detection worker: consumes the gateway's event streams (see service/scorer.py)."""
    settings = _settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `scorer` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    import logging

    from .scorer import run_scorer

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.host)
    asyncio.run(run_scorer(settings, args.name))


def cmd_mock_upstream(args: argparse.Namespace) -> None:
    from .mock_upstream import MockSettings, serve_mock

    settings = MockSettings(seed=args.seed, latency_ms=args.latency_ms, tokens_per_second=args.tokens_per_second)
    print(f"distillguard mock-upstream: http://{args.host}:{args.port}/v1", flush=True)
    asyncio.run(serve_mock(args.host, args.port, settings))


def cmd_demo(args: argparse.Namespace) -> None:
    """The gateway on embedded defaults in front of the simulator, in one process."""
    import uvicorn

    from .app import create_app
    from .mock_upstream import MockSettings, create_mock_app

    upstream_url = f"http://127.0.0.1:{args.upstream_port}/v1"
    settings = _settings_from(args, upstream={"base_url": upstream_url})
    gateway = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, **_uvicorn_options())
    )
    mock = uvicorn.Server(
        uvicorn.Config(
            create_mock_app(MockSettings(seed=0, latency_ms=20, tokens_per_second=200)),
            host="127.0.0.1", port=args.upstream_port, **_uvicorn_options(),
        )
    )
    print(
        f"distillguard demo: gateway http://{settings.host}:{settings.port}/v1 -> simulator {upstream_url}\n"
        f"  try: curl -s http://{settings.host}:{settings.port}/v1/chat/completions "
        "-H 'Authorization: Bearer sk-demo' -H 'Content-Type: application/json' "
        "-d '{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
        "  detection runs in-process: flags are logged here, and listed at /admin/api/flags "
        "when DISTILLGUARD_ADMIN_TOKEN is set",
        flush=True,
    )

    async def both() -> None:
        await asyncio.gather(mock.serve(), gateway.serve())

    asyncio.run(both())


def cmd_key_id(args: argparse.Namespace) -> None:
    from .keys import KeyHasher, resolve_key_secret

    hasher = KeyHasher(resolve_key_secret(_settings_from(args)))
    raw_keys = args.raw_keys or (line.rstrip("\r\n") for line in sys.stdin)
    for raw_key in raw_keys:
        if raw_key:
            print(hasher.key_id(raw_key), flush=not args.raw_keys)


def cmd_keys(args: argparse.Namespace) -> None:
    settings = _settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `keys` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    asyncio.run(_keys(args, settings))


async def _keys(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from .decisions import get_decision, set_decision
    from .store import connect

    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 2.0))
    try:
        who = os.environ.get("USER", "cli")
        if args.keys_command == "block":
            ttl = parse_duration(args.ttl) if args.ttl else None
            await set_decision(store.client, args.key_id, "block", reason=args.reason, note=args.note or "",
                               set_by=f"cli:{who}", ttl_seconds=ttl)
        elif args.keys_command == "throttle":
            if args.tier not in settings.limits.tiers:
                sys.exit(f"distillguard: tier {args.tier!r} is not one of {sorted(settings.limits.tiers)}")
            ttl = parse_duration(args.ttl) if args.ttl else None
            await set_decision(store.client, args.key_id, "throttle", tier=args.tier, reason=args.reason or "",
                               note=args.note or "", set_by=f"cli:{who}", ttl_seconds=ttl)
        elif args.keys_command == "allow":
            await set_decision(store.client, args.key_id, "allow", set_by=f"cli:{who}")
        if args.keys_command != "show":
            from .audit import append_audit

            await append_audit(store.client, actor=f"cli:{who}", target=args.key_id,
                               action="unblock" if args.keys_command == "allow" else args.keys_command,
                               reason=getattr(args, "reason", None) or "",
                               details={"tier": getattr(args, "tier", None), "ttl": getattr(args, "ttl", None),
                                        "note": getattr(args, "note", None)},
                               retention_seconds=settings.admin.audit_retention)
        decision = await get_decision(store.client, args.key_id)
        print(json.dumps({"key_id": args.key_id, **decision.as_dict()}, indent=2))
    finally:
        await store.close()


def _hasher_and_secret(settings: Settings):
    from .keys import KeyHasher, resolve_key_secret

    secret = resolve_key_secret(settings)
    return KeyHasher(secret), secret


def cmd_train(args: argparse.Namespace) -> None:
    """Fit the isolation forest on the benign keys of a traffic file (and reviewers' labels)."""
    from traffic.format import TrafficFormatError, read_traffic

    from .label_training import describe, train_command
    from .offline import train_forest

    settings = _settings_from(args)
    hasher, secret = _hasher_and_secret(settings)
    try:
        if args.labels:
            model = train_command(args.traffic, args.labels, key_id_of=hasher.key_id, salt=secret,
                                  target_fpr=args.target_fpr, seed=args.seed)
        else:
            model = train_forest(read_traffic(args.traffic, hasher.key_id), secret, target_fpr=args.target_fpr,
                                 seed=args.seed, source=os.path.basename(args.traffic))
    except (TrafficFormatError, ValueError, OSError) as exc:
        sys.exit(f"distillguard train: {exc}")
    path = model.save(args.out)
    card = model.card
    print(f"wrote {path}.skops and {path}.json: {card['training_rows']} training windows, "
          f"threshold {card['threshold']:.4f}, held-out FPR {card['validation']['holdout_fpr_at_threshold']:.4f}"
          f"{describe(card)}")


def cmd_score(args: argparse.Namespace) -> None:
    """Run features, detectors and ladder over a traffic file, as fast as it goes."""
    import json
    import time

    from traffic.format import TrafficFormatError, read_traffic

    from .detection import build_pipeline
    from .offline import format_summary, score_records
    from .offline_linkage import linkage_run

    settings = _settings_from(args)
    hasher, secret = _hasher_and_secret(settings)
    linkage = None if args.no_linkage else linkage_run(settings)
    started = time.perf_counter()
    try:
        report = score_records(read_traffic(args.file, hasher.key_id), secret, build_pipeline(settings), linkage)
    except TrafficFormatError as exc:
        sys.exit(f"distillguard score: {exc}")
    elapsed = time.perf_counter() - started
    summary = report.summary()
    print(format_summary(summary))
    print(f"\nscored {report.requests} requests in {elapsed:.1f}s ({report.requests / max(elapsed, 1e-9):,.0f}/s)")
    if args.report:
        with open(args.report, "w") as handle:
            json.dump({"flags": report.flags(), "summary": summary}, handle, indent=2)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Simulate a mixed population, train on part of the honest keys, score the rest: the table."""
    import json

    from .evaluation import Plan, format_table, run_evaluation

    settings = _settings_from(args)
    try:
        plan = Plan(benign=args.benign, attacks_per_scenario=args.attacks_per_scenario, hours=args.hours,
                    seed=args.seed, train_share=args.train_share, target_fpr=args.target_fpr,
                    scenarios=tuple(args.scenario), param_items=tuple(args.param), linkage=not args.no_linkage)
        result = run_evaluation(plan, settings, progress=lambda message: print(message, file=sys.stderr, flush=True))
    except ValueError as exc:
        sys.exit(f"distillguard evaluate: {exc}")
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    if args.html:
        from .report_html import render

        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(render(result))
        print(f"wrote {args.html}")


def cmd_simulate(args: argparse.Namespace) -> None:
    """Write labelled simulated traffic (see traffic/simulate.py)."""
    from traffic.simulate import run

    try:
        print(run(args))
    except ValueError as exc:
        sys.exit(f"distillguard simulate: {exc}")


def cmd_replay(args: argparse.Namespace) -> None:
    """Send a traffic file's requests to a running gateway (see traffic/replay.py)."""
    from traffic.replay import DetectionOptions, ReplayOptions, parse_shard, parse_speed, run_replay

    from .keys import state_dir

    settings = _settings_from(args)
    secret = settings.key_secret.encode() if settings.key_secret else None
    if secret is None and (state_dir() / "key_secret").exists():  # the local gateway's; never created here
        secret = (state_dir() / "key_secret").read_bytes().strip()
    admin_token = args.admin_token or settings.admin_token
    detection = None
    if args.admin_url or args.admin_token:
        if not admin_token:
            sys.exit("distillguard replay: --admin-url needs --admin-token (or admin_token in the config)")
        if secret is None:
            sys.exit("distillguard replay: reading flags needs the gateway's key secret to name the replayed "
                     "keys as it does: set key_secret in --config or DISTILLGUARD_KEY_SECRET")
        detection = DetectionOptions(args.admin_url or args.target, admin_token, parse_duration(args.settle))
    try:
        options = ReplayOptions(
            target=args.target, speed=parse_speed(args.speed), concurrency=args.concurrency,
            read_ahead=args.read_ahead, timeout_s=parse_duration(args.timeout),
            progress=False if args.quiet else None, key_secret=secret,
            shard=parse_shard(args.shard) if args.shard else None,
        )
    except ValueError as exc:
        sys.exit(f"distillguard replay: {exc}")
    if not os.path.exists(args.file):
        sys.exit(f"distillguard replay: no such file: {args.file}")
    sys.exit(run_replay(args.file, options, args.report, detection))


def cmd_admin_hash_token(args: argparse.Namespace) -> None:
    from .console.auth import hash_token_command

    hash_token_command(args.token)


def cmd_audit(args: argparse.Namespace) -> None:
    """`audit export`: the audit stream as JSON Lines (see service/audit.py)."""
    from .audit import export_command

    settings = _settings_from(args)
    try:
        with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout) as out:
            written = asyncio.run(export_command(settings, out, since=args.since, until=args.until))
    except ValueError as exc:
        sys.exit(f"distillguard audit export: {exc}")
    print(f"{written} audit entries", file=sys.stderr)


def cmd_labels(args: argparse.Namespace) -> None:
    """`labels export`: reviewers' verdicts as JSON Lines (see service/labels.py)."""
    from .labels import export_command

    settings = _settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `labels` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    print(f"{export_command(settings, out=args.out)} labels", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillguard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="YAML config file (default: $DISTILLGUARD_CONFIG)")
        return p

    serve = with_config(commands.add_parser("serve", help="run the gateway"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--redis-url", help="redis://, rediss://, unix:// (cluster detected); none = embedded")
    serve.add_argument("--upstream", help="upstream base URL that /v1 maps to")
    serve.set_defaults(func=cmd_serve)

    scorer = with_config(commands.add_parser("scorer", help="run a detection worker on the event streams"))
    scorer.add_argument("--redis-url", help="the gateway's Redis (cluster detected)")
    scorer.add_argument("--name", help="unique among scorers (default: host-pid)")
    scorer.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off)")
    scorer.set_defaults(func=cmd_scorer)

    demo = with_config(commands.add_parser("demo", help="gateway + simulator, embedded store, one process"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--upstream-port", type=int, default=8001)
    demo.set_defaults(func=cmd_demo)

    mock = commands.add_parser("mock-upstream", help="run the OpenAI-compatible upstream simulator")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8001)
    mock.add_argument("--seed", type=int, default=0)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--tokens-per-second", type=float, default=0.0)
    mock.set_defaults(func=cmd_mock_upstream)

    key_id = with_config(commands.add_parser("key-id", help="print the key_id of raw keys (args or stdin)"))
    key_id.add_argument("raw_keys", nargs="*")
    key_id.set_defaults(func=cmd_key_id)

    train = with_config(commands.add_parser("train", help="fit the isolation forest on benign traffic"))
    train.add_argument("--traffic", required=True, help="traffic file (JSON Lines, .gz ok)")
    train.add_argument("--out", default="models/default", help="model path without suffix")
    train.add_argument("--target-fpr", type=float, default=0.001)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--labels", help="reviewers' verdicts (`labels export`): dismissed keys train as honest, "
                                        "confirmed keys calibrate the threshold")
    train.set_defaults(func=cmd_train)

    score = with_config(commands.add_parser("score", help="score a traffic file offline"))
    score.add_argument("file")
    score.add_argument("--report", help="write flags and summary as JSON")
    score.add_argument("--no-linkage", action="store_true",
                       help="skip the cross-key clustering passes (per-key detection only)")
    score.set_defaults(func=cmd_score)

    evaluate = with_config(commands.add_parser(
        "evaluate", help="simulate honest and attack keys, train, score, print the per-scenario table"))
    evaluate.add_argument("--benign", type=int, default=2000, help="honest keys (default: 2000)")
    evaluate.add_argument("--attacks-per-scenario", type=int, default=10, help="keys of every attack (default: 10)")
    evaluate.add_argument("--hours", type=float, default=24.0)
    evaluate.add_argument("--seed", type=int, default=1)
    evaluate.add_argument("--train-share", type=float, default=0.5, help="share of honest keys that train the forest")
    evaluate.add_argument("--target-fpr", type=float, default=0.001, help="the forest's calibration target")
    evaluate.add_argument("--scenario", action="append", default=[], metavar="NAME=N",
                          help="N more keys of one scenario, on top of the mix; repeatable")
    evaluate.add_argument("--param", action="append", default=[], metavar="SCENARIO.NAME=VALUE",
                          help="override a scenario parameter, as `simulate --param` takes it; repeatable")
    evaluate.add_argument("--no-linkage", action="store_true",
                          help="skip the cross-key clustering passes (per-key detection only)")
    evaluate.add_argument("--html", help="also write the self-contained report page here")
    evaluate.add_argument("--json", help="also write every figure as JSON here")
    evaluate.set_defaults(func=cmd_evaluate)

    simulate = commands.add_parser("simulate", help="write labelled simulated traffic")
    from traffic.simulate import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    replay = with_config(commands.add_parser("replay", help="send a traffic file's requests to a running gateway"))
    replay.add_argument("file")
    replay.add_argument("--target", required=True, help="the gateway's URL, e.g. http://127.0.0.1:8000")
    replay.add_argument("--speed", default="1", help="divide recorded gaps by this, or 'max' (default: 1)")
    replay.add_argument("--concurrency", type=int, default=64, help="requests in flight at most (default: 64)")
    replay.add_argument("--read-ahead", type=int, default=10_000, help="records read but unanswered, at most")
    replay.add_argument("--timeout", default="120s", help="per request, to the end of its answer")
    replay.add_argument("--report", help="write the report as JSON")
    replay.add_argument("--admin-url", help="read the gateway's flags here (default: --target)")
    replay.add_argument("--admin-token", help="admin token (default: admin_token of the config)")
    replay.add_argument("--settle", default="3s", help="wait until the flags are unchanged this long")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.add_argument("--shard", help="I/N: replay only the I-th of N disjoint sets of keys (run N replayers)")
    replay.set_defaults(func=cmd_replay)

    keys = with_config(commands.add_parser("keys", help="set and read per-key decisions"))
    keys.add_argument("--redis-url")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    block = keys_commands.add_parser("block")
    block.add_argument("key_id")
    block.add_argument("--reason", required=True, help="reason code returned to the client")
    block.add_argument("--ttl", help="e.g. 1h; default: until allowed again")
    block.add_argument("--note")
    throttle = keys_commands.add_parser("throttle")
    throttle.add_argument("key_id")
    throttle.add_argument("--tier", required=True)
    throttle.add_argument("--reason")
    throttle.add_argument("--ttl")
    throttle.add_argument("--note")
    keys_commands.add_parser("allow").add_argument("key_id")
    keys_commands.add_parser("show").add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    admin = commands.add_parser("admin", help="review console administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    hash_token = admin_commands.add_parser("hash-token", help="new reviewer token + the hash for admin.reviewers")
    hash_token.add_argument("--token", help="'-': hash a token read from stdin instead of making one")
    hash_token.set_defaults(func=cmd_admin_hash_token)

    audit = with_config(commands.add_parser("audit", help="the audit trail"))
    audit.add_argument("--redis-url")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="write the audit trail as JSON Lines, oldest first")
    export.add_argument("--since", help="ISO time (2026-11-01T00:00:00Z) or a duration ago (7d)")
    export.add_argument("--until", help="ISO time or a duration ago")
    export.add_argument("--out", help="file to write (default: stdout)")
    audit.set_defaults(func=cmd_audit)

    labels = with_config(commands.add_parser("labels", help="reviewers' verdicts, for `train --labels`"))
    labels.add_argument("--redis-url")
    labels_export = labels.add_subparsers(dest="labels_command", required=True).add_parser(
        "export", help="write every label as JSON Lines (key_id, label, action, reviewer, reason, ts)")
    labels_export.add_argument("--out", help="file to write (default: stdout)")
    labels.set_defaults(func=cmd_labels)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
