"""The `evaluate --networks` flags and that run's output, kept here so the CLI module only
wires them in (docs/evaluation.md#randomised-networks)."""

from __future__ import annotations

import argparse
import json
import sys

DEFAULT_DRAWS = 2


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    group = evaluate.add_argument_group(
        "networks", "--networks measures randomised harvesting networks of 10 to 5,000 keys among honest "
        "look-alikes, per-key detection and linkage as the live scorer runs them (docs/evaluation.md#randomised-networks); "
        "--seed, --draws (default 2), --hours (default 26), --benign (default 100) and --report apply")
    group.add_argument("--networks", action="store_true", help="run the randomised-network evaluation")
    group.add_argument("--max-network-size", type=int, default=400, metavar="N",
                       help="size bands 10-19, 20-49, 50-199, 200-999, 1000-5000 up to N keys (default: 400)")
    group.add_argument("--networks-per-band", type=int, default=1, metavar="N", help="networks per size band a draw")
    group.add_argument("--lookalikes", type=int, default=1500, metavar="N",
                       help="honest look-alike keys a draw, over seven classes (default: 1000)")
    group.add_argument("--network-style", action="append", default=[], metavar="NAME=VALUE",
                       help="pin one choice every network would draw, e.g. timing=staggered, wrappers=1, "
                            "per_day=[45,50] (JSON values; names in traffic/networks.py STYLE); repeatable")


def parse_style(items: list[str]) -> tuple[tuple[str, object], ...]:
    """NAME=VALUE pins, each VALUE read as JSON (a list becomes a tuple) or else as text."""
    from traffic.networks import STYLE

    pinned = []
    for item in items:
        name, equals, text = item.partition("=")
        if not equals or name not in STYLE:
            raise ValueError(f"--network-style {item!r}: expected NAME=VALUE with NAME one of {', '.join(STYLE)}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        pinned.append((name, tuple(value) if isinstance(value, list) else value))
    return tuple(pinned)


def run(args: argparse.Namespace, settings) -> None:
    from .network_evaluation import NetworkPlan, command_line, run_networks
    from .network_report import format_networks

    try:
        plan = NetworkPlan(seed=args.seed, draws=DEFAULT_DRAWS if args.draws is None else args.draws,
                           hours=26.0 if args.hours is None else args.hours, max_size=args.max_network_size,
                           networks_per_band=args.networks_per_band, lookalikes=args.lookalikes,
                           benign=100 if args.benign is None else args.benign,
                           style=parse_style(args.network_style))
        result = run_networks(plan, settings, progress=lambda message: print(message, file=sys.stderr, flush=True))
    except ValueError as exc:
        sys.exit(f"distillguard evaluate: {exc}")
    print(format_networks(result, command_line(result["plan"])))
    for path in (args.report, args.json):
        if path:
            with open(path, "w") as handle:
                json.dump(result, handle, indent=1)
