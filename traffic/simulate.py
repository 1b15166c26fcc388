"""The simulate command, shared by `distillguard simulate` and `python -m traffic simulate`:
which keys (a realistic benign mix, N of every attack, or named scenarios), with what
parameter overrides, written to one labelled traffic file."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from .format import TrafficWriter
from .scenarios import BENIGN_MIX, SCENARIOS, attack_mix, benign_mix, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="traffic file to write (.gz compresses)")
    parser.add_argument("--benign", type=int, default=0, metavar="N",
                        help="N honest keys from the default benign mix: "
                             + ", ".join(f"{name} {share * 100:.0f}%%" for name, share in BENIGN_MIX.items()))
    parser.add_argument("--attacks", type=int, default=0, metavar="N", help="N keys of every attack scenario")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME=N",
                        help="N keys of one scenario, repeatable; added to --benign/--attacks "
                             "(`python -m traffic scenarios` lists them)")
    parser.add_argument("--param", action="append", default=[], metavar="SCENARIO.NAME=VALUE",
                        help="override a scenario parameter, e.g. hydra.network_size=50 or "
                             "burst_harvester.rate_per_s=0.5,1 (a range); repeatable")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--randomise", action="store_true",
                        help="every key also re-draws how it sends (caps, sampling, placement, language, pace)")


def parse_mix(benign: int, attacks: int, items: list[str]) -> dict[str, int]:
    """Keys per scenario: the benign mix, the attacks, then each NAME=N added on top."""
    mix: Counter = Counter(benign_mix(benign))
    mix.update(attack_mix(attacks))
    for item in items:
        name, _, count = item.partition("=")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        try:
            mix[name] += int(count or 1)
        except ValueError:
            raise ValueError(f"--scenario {item!r}: the number of keys must be an integer") from None
    if not mix:
        raise ValueError("nothing to simulate: give --benign N, --attacks N or --scenario NAME=N")
    return dict(mix)


def parse_value(text: str) -> object:
    """JSON (`50`, `0.5`, `[1, 3]`, `null`, `"x"`), or comma-separated numbers for a range."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            return tuple(float(part) for part in text.split(","))
        except ValueError:
            return text
    return tuple(value) if isinstance(value, list) else value


def parse_params(items: list[str]) -> dict[str, dict]:
    """`scenario.name=value` items as generate()'s params (checked there against each scenario)."""
    params: dict[str, dict] = {}
    for item in items:
        target, equals, value = item.partition("=")
        scenario, dot, name = target.partition(".")
        if not (equals and dot and scenario and name):
            raise ValueError(f"--param {item!r}: expected SCENARIO.NAME=VALUE, e.g. hydra.network_size=50")
        params.setdefault(scenario, {})[name] = parse_value(value)
    return params


def run(args: argparse.Namespace) -> str:
    """Writes the file; returns the one-line summary to print."""
    mix = parse_mix(args.benign, args.attacks, args.scenario)
    labels: Counter = Counter()
    with TrafficWriter(args.out) as writer:
        for record in generate(mix, args.hours, args.seed, params=parse_params(args.param),
                               randomise=getattr(args, "randomise", False)):
            writer.write(record)
            labels[record["label"]] += 1
    return (f"wrote {sum(labels.values())} requests ({labels['benign']} benign, {labels['attack']} attack) "
            f"from {sum(mix.values())} keys to {args.out}")
