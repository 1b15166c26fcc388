"""`python -m traffic`: check a traffic file, or list the simulator's scenarios.

    python -m traffic check recorded.jsonl.gz
    python -m traffic scenarios
    python -m traffic simulate --benign 2000 --attacks 10 --hours 24 --seed 1 --out sim.jsonl.gz

(`simulate` is `distillguard simulate`; docs/scenarios.md describes every scenario.)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter

from . import simulate
from .format import TrafficFormatError, read_traffic
from .scenarios import SCENARIOS


def _placeholder_key_id(raw_key: str) -> str:
    """Unsalted key_id, only to check files that carry raw keys; the gateway's are HMACs."""
    return hashlib.sha256(raw_key.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m traffic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a traffic file and count its records by label")
    check.add_argument("path")
    commands.add_parser("scenarios", help="list the simulator's scenarios")
    simulate.add_arguments(commands.add_parser("simulate", help="write labelled simulated traffic"))
    args = parser.parse_args(argv)

    if args.command == "simulate":
        try:
            print(simulate.run(args))
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
        return 0

    if args.command == "scenarios":
        for name, scenario in SCENARIOS.items():
            print(f"{name:24} {scenario.label:7} {scenario.description}")
        return 0
    labels: Counter = Counter()
    try:
        for record in read_traffic(args.path, _placeholder_key_id):
            labels[record.label or "unlabelled"] += 1
    except TrafficFormatError as error:
        print(error, file=sys.stderr)
        return 1
    counts = ", ".join(f"{label} {count}" for label, count in sorted(labels.items()))
    print(f"{args.path}: {sum(labels.values())} valid records ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
