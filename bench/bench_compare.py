"""Detection's costs for two trees side by side, in one run: this tree against `--base`.

On a shared machine the absolute figures move with other work by a factor of several, so
the figures that mean something are ratios between runs made at the same time. This runs
bench_features.py, bench_scorer.py and bench_offline.py (this tree's scripts) once with
`--code BASE` and once with this tree, alternating, for `--rounds` rounds, and prints the
median of each figure per tree and their ratio.

    python bench/bench_compare.py --base /work/main [--rounds 3] [--only features,scorer,offline]
                                  [--scorer-args "--keys 2000 --events 100000"] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
THIS_TREE = BENCH.parent
# figure -> (label, True when higher is better, how it is printed)
FIGURES: dict[str, tuple[str, bool, str]] = {
    "features_us_200": ("features, 200-character prompt (µs per call)", False, "{:.1f}"),
    "features_us_2000": ("features, 2,000-character prompt (µs per call)", False, "{:.1f}"),
    "features_us_8000": ("features, 8,000-character prompt (µs per call)", False, "{:.1f}"),
    "features_cpu_us_200": ("features, 200-character prompt (CPU µs per call)", False, "{:.1f}"),
    "features_cpu_us_2000": ("features, 2,000-character prompt (CPU µs per call)", False, "{:.1f}"),
    "features_cpu_us_8000": ("features, 8,000-character prompt (CPU µs per call)", False, "{:.1f}"),
    "scorer_events_per_s": ("one scorer process (events/s)", True, "{:,.0f}"),
    "offline_seconds_250k": ("offline `score_records`, seconds per 250,000 requests", False, "{:.1f}"),
    "offline_cpu_seconds_250k": ("offline `score_records`, CPU seconds per 250,000 requests", False, "{:.1f}"),
}


def run(script: str, code: Path, extra: list[str]) -> dict:
    """One benchmark run with one tree's code; the figures from its JSON line."""
    command = [sys.executable, str(BENCH / script), "--code", str(code), "--json", *extra]
    env = {**os.environ, "PYTHONPATH": str(code)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if "score_seconds" in figures:
        scale = 250_000 / figures["requests"]
        figures["offline_seconds_250k"] = figures["score_seconds"] * scale
        figures["offline_cpu_seconds_250k"] = figures["score_cpu_seconds"] * scale
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the tree to compare with, e.g. main's checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="features,scorer,offline", help="comma-separated benchmarks to run")
    parser.add_argument("--features-args", default="--runs 5 --calls 1000")
    parser.add_argument("--scorer-args", default="")
    parser.add_argument("--offline-args", default="--skip-cli --skip-breakdown")
    parser.add_argument("--out", type=Path, help="write every run's figures here as JSON")
    args = parser.parse_args()
    benchmarks = {
        "features": ("bench_features.py", shlex.split(args.features_args)),
        "scorer": ("bench_scorer.py", shlex.split(args.scorer_args)),
        "offline": ("bench_offline.py", shlex.split(args.offline_args)),
    }
    chosen = [name for name in args.only.split(",") if name]
    trees = {"base": args.base.resolve(), "this": THIS_TREE}
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    loads = []
    for round_number in range(args.rounds):
        order = ("base", "this") if round_number % 2 == 0 else ("this", "base")
        for side in order:
            figures: dict = {}
            for name in chosen:
                script, extra = benchmarks[name]
                figures.update(run(script, trees[side], extra))
            runs[side].append(figures)
            loads.append(os.getloadavg()[0])
            print(f"round {round_number + 1}, {side}: {json.dumps(figures)}", file=sys.stderr)

    print(f"base {trees['base']} against this tree {trees['this']}; {args.rounds} rounds, alternating; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, 1-minute load average "
          f"{min(loads):.1f}-{max(loads):.1f} after the runs\n")
    print("| figure | base (median; runs) | this tree (median; runs) | this / base | better |")
    print("|---|---:|---:|---:|---|")
    for key, (label, higher_better, shape) in FIGURES.items():
        base = [r[key] for r in runs["base"] if key in r]
        this = [r[key] for r in runs["this"] if key in r]
        if not base or not this:
            continue
        ratio = statistics.median(this) / statistics.median(base)
        better = (ratio >= 1) == higher_better
        cells = [f"{shape.format(statistics.median(values))}; " + ", ".join(shape.format(v) for v in values)
                 for values in (base, this)]
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio:.2f} | {'this tree' if better else 'base'} |")
    if args.out:
        args.out.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "runs": runs,
                                        "loads": loads}, indent=2) + "\n")


if __name__ == "__main__":
    main()
