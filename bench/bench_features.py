"""Microseconds per `request_features()` call for short, typical and long prompts.

The gateway computes features for every request it forwards, so this cost is paid once per
LLM call; the goal is under 100 µs for a 2,000-character prompt.

    python bench/bench_features.py [--calls 2000] [--runs 7] [--code PATH] [--json]

Each run's wall time and CPU time (of this thread) are both printed: they agree on a quiet
machine, and the CPU time is the one to read when other work shares the cores.

`--code PATH` times another tree's `request_features` (bench/code_tree.py); `--json` adds
one line of JSON with every figure, for bench/bench_compare.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from code_tree import use_code_tree  # noqa: E402

CODE = use_code_tree()

from detectors.features import request_features  # noqa: E402

SIZES = (200, 2_000, 8_000)
SALT = b"bench-salt"
HEADERS = {"user-agent": "python-requests/2.31.0", "content-type": "application/json"}

SENTENCES = (
    "The committee met on 14 March 2023 to review the budget of 1,250,000 dollars.",
    "Alice Moreau argued that the proposal from Northwind Traders was too expensive.",
    "See https://example.com/reports/q3?id=42 or write to finance@example.org for details.",
    "Our tests show a latency of 35.7 ms at the 99th percentile under 'normal' load.",
    "Please keep the tone friendly, and avoid jargon where a plain word will do.",
    "In the second quarter, revenue grew by 12% while costs fell slightly.",
    "He said \"we will ship on Friday\" but the release slipped by two weeks.",
    "The river floods every spring, so the village built a wall along its bank.",
    "Students in Lisbon and Porto compared their results with those from Madrid.",
    "A short summary at the top helps readers decide whether to read the rest.",
)


def prompt_of(chars: int, rng: random.Random) -> str:
    """Realistic English with numbers, names, quotes, URLs and e-mails, cut to `chars`."""
    parts = ["Summarise the following notes for a busy manager in five bullet points."]
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(rng.choice(SENTENCES))
    return " ".join(parts)[:chars]


def body_of(prompt: str) -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": 512,
        "temperature": 0.7,
        "logprobs": True,
        "top_logprobs": 5,
    }


def per_call_us(body: dict, calls: int) -> tuple[float, float]:
    """Wall and CPU (this thread's) microseconds per call: on a shared machine other work
    inflates the wall time, much less the CPU time."""
    started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
    for i in range(calls):
        request_features(
            ts=1_700_000_000.0 + i,
            key_id="k_bench",
            path="/v1/chat/completions",
            body=body,
            headers=HEADERS,
            client_ip="203.0.113.7",
            status=200,
            latency_ms=812.5,
            usage={"prompt_tokens": 500, "completion_tokens": 200},
            salt=SALT,
        )
    return (time.perf_counter_ns() - started) / calls / 1_000, (time.thread_time_ns() - cpu_started) / calls / 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--code", help="the distillguard tree to time (default: this one)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    rng = random.Random(7)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"request_features(): median of {args.runs} runs of {args.calls} calls; Python {sys.version.split()[0]}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {load}; code {CODE}\n"
    )
    print("| prompt chars | µs per call (median) | min | max | CPU µs per call (median) | min | max |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    figures = {}
    for size in SIZES:
        body = body_of(prompt_of(size, rng))
        per_call_us(body, 50)
        runs = [per_call_us(body, args.calls) for _ in range(args.runs)]
        wall, cpu = [run[0] for run in runs], [run[1] for run in runs]
        figures[f"features_us_{size}"] = statistics.median(wall)
        figures[f"features_cpu_us_{size}"] = statistics.median(cpu)
        print(f"| {size:,} | {statistics.median(wall):.1f} | {min(wall):.1f} | {max(wall):.1f} "
              f"| {statistics.median(cpu):.1f} | {min(cpu):.1f} | {max(cpu):.1f} |")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
