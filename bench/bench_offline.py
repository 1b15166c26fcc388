"""Offline scoring throughput: requests per second of `distillguard score` over a simulated day.

Generates (once, cached under /tmp) a labelled traffic file of about 250,000 requests with
`traffic.scenarios.generate`: one simulated day (24 h, seed 1) of many honest keys of every
honest scenario plus a few keys of every attack scenario (the mix is in MIX below). Then:

1. `distillguard score FILE` end to end, as a subprocess: interpreter start, imports, model
   load, reading and validating every line, features, windows, detectors, ladder, summary;
2. in process, `service.offline.scoring.score_records` with the default pipeline (the shipped
   rules and the shipped isolation forest, as `distillguard score` builds it), preceded by
   two partial passes over the same file that show where the time goes: reading and
   validating only, then reading plus per-request features.

The goal is 250,000 requests in under 2 minutes. Nothing here asserts a time: the figures
are printed, with the machine's load, for the reader to judge.

    python bench/bench_offline.py [--cache-dir /tmp/distillguard-bench] [--regenerate]
                                  [--skip-cli] [--skip-breakdown] [--gzip] [--code PATH] [--json]

`--code PATH` scores with another tree's code (bench/code_tree.py) on the same cached file;
`--json` adds one JSON line with the figures, for bench/bench_compare.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from code_tree import use_code_tree  # noqa: E402

CODE = use_code_tree()

from service.config import Settings  # noqa: E402
from service.keys import KeyHasher  # noqa: E402
from service.offline.scoring import record_features, score_records  # noqa: E402
from service.scoring.detection import build_pipeline  # noqa: E402
from traffic.format import TrafficWriter, read_traffic  # noqa: E402
from traffic.scenarios import SCENARIOS, generate  # noqa: E402

HOURS = 24.0
SEED = 1  # the shipped model was fitted on seed 0 (models/train_default.sh): keep its keys out
KEY_SECRET = "bench-offline"

# name -> number of keys. Honest keys dominate, as on a real API: thousands of people,
# hundreds of developers and office users, a few dozen machine clients (chatbot backends,
# RAG services, nightly batch jobs, benchmark runs). Then a few keys of every attack.
MIX: dict[str, int] = {
    "casual_user": 3000,
    "office_nat": 480,          # 40 offices of 12 colleagues behind one NAT address
    "heavy_developer": 300,
    "support_chatbot": 9,
    "rag_service": 10,
    "batch_document_job": 7,
    "benchmark_run": 40,
    "burst_harvester": 1,
    "logprob_harvester": 1,
    "topic_sweep": 1,
    "reasoning_harvester": 2,
    "paraphrase_harvester": 2,
    "low_and_slow": 2,
    "human_timing_harvester": 4,
    "hydra": 20,                # one network of 20 keys
    # The harvesting families and the honest automation of issue #13, a few keys each.
    "evol_instruct": 1,
    "synthetic_dialogues": 1,
    "reward_grading": 1,
    "reasoning_trace_distillation": 1,
    "sequence_logprob_harvester": 1,
    "code_harvest": 1,
    "agent_trajectory_harvester": 1,
    "api_customer": 30,
    "intent_classifier": 2,
    "llm_judge_eval": 2,
    "agent_product": 2,
    "document_pipeline": 2,
    "prompt_optimisation": 2,
    "content_writer": 2,
}
# The fastest harvesters run at 0.5-5 requests/s by default: one such key would send
# 40,000-400,000 requests in the day and make the file mostly one key. These rates keep
# every attack key to a few thousand requests, so the file stays mostly honest traffic.
PARAMS: dict[str, dict] = {
    "burst_harvester": {"rate_per_s": (0.05, 0.1)},
    "logprob_harvester": {"rate_per_s": (0.05, 0.1)},
    "topic_sweep": {"rate_per_s": (0.02, 0.05)},
    "reasoning_harvester": {"rate_per_s": (0.02, 0.05)},
    "paraphrase_harvester": {"rate_per_s": (0.02, 0.05)},
    **{name: {"rate_per_s": (0.02, 0.05)} for name in (
        "evol_instruct", "synthetic_dialogues", "reward_grading", "reasoning_trace_distillation",
        "sequence_logprob_harvester", "code_harvest", "agent_trajectory_harvester")},
}


def machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}"


def traffic_file(cache_dir: Path, gzip: bool, regenerate: bool) -> tuple[Path, dict]:
    """The cached file for this mix (its name carries a hash of the mix), written if missing."""
    spec = {"mix": MIX, "params": PARAMS, "hours": HOURS, "seed": SEED}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"offline-{digest}.jsonl{'.gz' if gzip else ''}"
    meta_path = path.with_name(path.name + ".meta.json")
    if path.exists() and meta_path.exists() and not regenerate:
        return path, json.loads(meta_path.read_text())
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with TrafficWriter(partial) as writer:
        for record in generate(MIX, HOURS, SEED, params=PARAMS):
            writer.write(record)
            counts[record["scenario"]] = counts.get(record["scenario"], 0) + 1
    elapsed = time.perf_counter() - started
    partial.replace(path)
    meta = {"spec": spec, "requests": sum(counts.values()), "per_scenario": counts,
            "generate_seconds": round(elapsed, 1), "bytes": path.stat().st_size}
    meta_path.write_text(json.dumps(meta, indent=2))
    return path, meta


def print_mix(path: Path, meta: dict) -> None:
    counts = meta["per_scenario"]
    total = meta["requests"]
    print(f"traffic: {path} ({meta['bytes'] / 1e6:,.0f} MB), {total:,} requests, {sum(MIX.values()):,} keys, "
          f"{HOURS:g} h, seed {SEED} (generated in {meta['generate_seconds']} s)\n")
    print("| scenario | label | keys | requests | share |")
    print("|---|---|---:|---:|---:|")
    for name in sorted(MIX, key=lambda n: (SCENARIOS[n].label, n)):
        requests = counts.get(name, 0)
        print(f"| {name} | {SCENARIOS[name].label} | {MIX[name]:,} | {requests:,} | {requests / total:.1%} |")
    print()


def run_cli(path: Path) -> tuple[float, str]:
    """`distillguard score FILE` as a subprocess, timed from spawn to exit."""
    command = [sys.executable, "-m", "service.cli", "score", str(path)]
    env = {**os.environ, "DISTILLGUARD_KEY_SECRET": KEY_SECRET, "PYTHONPATH": str(CODE)}
    env.pop("DISTILLGUARD_CONFIG", None)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=CODE, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"distillguard score failed ({result.returncode}):\n{result.stderr}")
    return elapsed, result.stdout


def timed(label: str, total: int, run) -> float:
    started = time.perf_counter()
    cpu_started = time.process_time()
    run()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(f"| {label} | {elapsed:.1f} | {total / elapsed:,.0f} | {cpu:.1f} |")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/distillguard-bench"))
    parser.add_argument("--regenerate", action="store_true", help="write the traffic file even if cached")
    parser.add_argument("--gzip", action="store_true", help="use a gzip-compressed traffic file")
    parser.add_argument("--skip-cli", action="store_true", help="skip the `distillguard score` subprocess")
    parser.add_argument("--skip-breakdown", action="store_true", help="skip the read-only and features passes")
    parser.add_argument("--code", help="the distillguard tree to score with (default: this one)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()

    path, meta = traffic_file(args.cache_dir, args.gzip, args.regenerate)
    total = meta["requests"]
    print_mix(path, meta)

    os.environ.pop("DISTILLGUARD_CONFIG", None)
    settings = Settings(key_secret=KEY_SECRET)
    secret = KEY_SECRET.encode()
    print(f"{machine()}; code {CODE}\n")
    print("| pass | seconds | requests/s | CPU seconds |")
    print("|---|---:|---:|---:|")
    cli_stdout = ""
    figures: dict[str, float] = {"requests": total}
    if not args.skip_cli:
        elapsed, cli_stdout = run_cli(path)
        figures["cli_seconds"] = elapsed
        print(f"| `distillguard score FILE` (subprocess, end to end) | {elapsed:.1f} | {total / elapsed:,.0f} | – |")
    if not args.skip_breakdown:
        figures["read_seconds"], _ = timed("read + validate only (`read_traffic`)", total,
                                           lambda: sum(1 for _ in read_traffic(path, KeyHasher(secret).key_id)))
        figures["features_seconds"], _ = timed(
            "read + per-request features", total,
            lambda: sum(1 for r in read_traffic(path, KeyHasher(secret).key_id) if record_features(r, secret)))
    pipeline = build_pipeline(settings)
    detectors = "rules + isolation forest" if pipeline.forest is not None else "rules only (no model found)"
    report = None

    def score() -> None:
        nonlocal report
        report = score_records(read_traffic(path, KeyHasher(secret).key_id), secret, pipeline)

    figures["score_seconds"], figures["score_cpu_seconds"] = timed(
        f"`score_records`, default pipeline ({detectors})", total, score)
    summary = report.summary()
    print(f"\nin-process result: {summary['requests']:,} requests, {summary['keys']:,} keys, "
          f"{summary['flagged_keys']} flagged; precision {summary['precision']}, recall {summary['recall']}, "
          f"false-positive rate {summary['false_positive_rate']}")
    if cli_stdout:
        print("\n`distillguard score` said:\n" + cli_stdout.rstrip())
    if args.json:
        figures["flagged_keys"] = summary["flagged_keys"]
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
