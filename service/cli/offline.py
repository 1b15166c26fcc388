"""The commands over traffic files: train, score, evaluate, simulate, replay."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import parse_duration
from ._common import hasher_and_secret, settings_from


def cmd_train(args: argparse.Namespace) -> None:
    """Fit the isolation forest on the benign keys of a traffic file (and reviewers' labels)."""
    from traffic.format import TrafficFormatError, read_traffic

    from ..offline.scoring import train_forest
    from ..review.label_training import describe, train_command

    settings = settings_from(args)
    hasher, secret = hasher_and_secret(settings)
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

    from ..offline.linkage import linkage_run
    from ..offline.scoring import format_summary, score_records
    from ..scoring.detection import build_pipeline

    settings = settings_from(args)
    hasher, secret = hasher_and_secret(settings)
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

    from ..offline import generalisation_cli, network_cli
    from ..offline.evaluation import Plan, format_table, run_evaluation

    settings = settings_from(args)
    if args.networks:
        network_cli.run(args, settings)
        return
    if generalisation_cli.wanted(args):
        generalisation_cli.run(args, settings)
        return
    try:
        plan = Plan.given(benign=args.benign, attacks_per_scenario=args.attacks_per_scenario, hours=args.hours,
                          seed=args.seed, train_share=args.train_share, target_fpr=args.target_fpr,
                          scenarios=tuple(args.scenario), param_items=tuple(args.param),
                          linkage=not args.no_linkage)
        result = run_evaluation(plan, settings, progress=lambda message: print(message, file=sys.stderr, flush=True))
    except ValueError as exc:
        sys.exit(f"distillguard evaluate: {exc}")
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    if args.html:
        from ..offline.report_html import render

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
    """Send a traffic file's requests to a running gateway (see service/replay/replayer.py)."""
    from ..keys import state_dir
    from ..replay.replayer import (
        DetectionOptions,
        ReplayOptions,
        parse_shard,
        parse_speed,
        run_replay,
    )

    settings = settings_from(args)
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
