"""The `evaluate` flags that turn it into a generalisation run, and that run's output:
kept here so the CLI module only wires them in."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    group = evaluate.add_argument_group(
        "generalisation", "any of these measures every family on traffic it was not fitted to "
        "(docs/evaluation.md#generalisation): honest keys split evenly over the honest families, "
        "--attacks-per-scenario keys of every harvesting family, per-key detection")
    group.add_argument("--randomise", action="store_true",
                       help="every key re-draws caps, lengths, sampling, placement, language, tools and pace")
    group.add_argument("--draws", type=int, metavar="K", help="K populations, seeds SEED..SEED+K-1 (default: 1)")
    group.add_argument("--hold-out-families", action="store_true",
                       help="fit without family F, then measure F (every family, attack and honest)")
    group.add_argument("--drop-usage", action="store_true", help="also measure with `usage` removed from every line")
    group.add_argument("--features-mode", action="store_true",
                       help="also measure the lines as a `bodies: features` recording keeps them")
    group.add_argument("--max-requests-per-key", type=int, default=1000, metavar="N",
                       help="a key not flagged within its first N requests is missed (default: 1000)")
    group.add_argument("--families", default="", metavar="A,B,...",
                       help="only these families (default: every single-key family)")
    group.add_argument("--report", help="write the generalisation report as JSON here")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a generalisation run."""
    return bool(args.randomise or args.hold_out_families or args.drop_usage or args.features_mode
                or args.draws not in (None, 1) or args.report or args.families)


def run(args: argparse.Namespace, settings) -> None:
    from .generalisation import GeneralisationPlan, command_line, run_generalisation
    from .generalisation_report import format_generalisation

    try:
        plan = GeneralisationPlan.given(
            benign=args.benign, attacks_per_family=args.attacks_per_scenario, hours=args.hours, seed=args.seed,
            draws=args.draws, train_share=args.train_share, target_fpr=args.target_fpr, randomise=args.randomise,
            hold_out_families=args.hold_out_families, drop_usage=args.drop_usage, features_mode=args.features_mode,
            max_requests_per_key=args.max_requests_per_key, scenarios=tuple(args.scenario),
            param_items=tuple(args.param), families=tuple(f for f in args.families.split(",") if f))
        result = run_generalisation(plan, settings, progress=lambda message: print(message, file=sys.stderr,
                                                                                     flush=True))
    except ValueError as exc:
        sys.exit(f"distillguard evaluate: {exc}")
    print(format_generalisation(result, command_line(result["plan"])))
    for path in (args.report, args.json):
        if path:
            with open(path, "w") as handle:
                json.dump(result, handle, indent=1)
