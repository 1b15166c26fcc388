#!/usr/bin/env python3
"""What recording costs the gateway: throughput and added latency with recording off, with
`bodies: features` and with `bodies: full`, measured side by side in one run.

Each variant is the same `distillguard serve` (a redis-server child, detection events on,
nginx as a zero-latency upstream answering a fixed chat.completion); only `recording`
differs. Variants run in turns (off, features, full, off, features, full, ...) for
--rounds rounds so that a burst of other work on the machine lands on all of them. For
each run: maximum throughput (wrk, closed loop, as bench/proxy_bench.py) and latency at
fixed rates (bench/openloop.py, open loop). After each run the gateway's own metrics say
whether the recorder kept up: every answered request written, none dropped.

    python bench/bench_recording.py [--rounds 2] [--workers 1] [--duration 8] [--rates 200,500]
                                    [--out bench/results/recording.json]

Needs nginx, wrk and redis-server (Debian packages). All traffic stays on 127.0.0.1; every
child runs in its own session and is stopped by its process-group id. Nothing here asserts
a figure: they are printed, with the machine's load, for the reader to judge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import proxy_bench as pb  # noqa: E402  (its process, nginx, wrk and open-loop helpers)

VARIANTS = {"off": None, "features": "features", "full": "full"}
BIG = 1_000_000_000


def gateway_config(upstream: str, bodies: str | None, directory: Path) -> dict:
    config = {
        "log_level": "warning",
        "key_secret": "bench-key-secret-not-for-production",
        "upstream": {"base_url": upstream},
        "limits": {"tiers": {
            "default": {"requests": {"limit": BIG, "window": 60}, "tokens": {"limit": BIG * 1000, "window": 60},
                        "concurrency": BIG},
            "throttled": {"requests": {"limit": 10, "window": 60}},
        }},
    }
    if bodies:
        config["recording"] = {"enabled": True, "bodies": bodies, "directory": str(directory), "gzip": True}
    return config


def start_gateway(ctx: pb.Context, name: str, bodies: str | None, workers: int) -> tuple[str, list]:
    """redis-server + `distillguard serve` with the variant's config; (url, processes)."""
    run_dir = ctx.tmp / name
    run_dir.mkdir(parents=True)
    redis_port, port = pb.free_port(), pb.free_port()
    redis_log = run_dir / "redis.log"
    redis = ctx.children.start("redis-server", [
        "redis-server", "--bind", pb.LOOPBACK, "--port", str(redis_port), "--save", "", "--appendonly", "no",
        "--dir", str(run_dir), "--logfile", ""], redis_log, cwd=run_dir)
    pb.wait_redis(redis_port, redis, redis_log)
    config_path = run_dir / "distillguard.yaml"
    config_path.write_text(json.dumps(gateway_config(f"{ctx.upstream_url}/v1", bodies, run_dir / "recordings")))
    command, _ = ctx.dg_command
    argv = command + ["serve", "--config", str(config_path), "--host", pb.LOOPBACK, "--port", str(port),
                      "--workers", str(workers), "--redis-url", f"redis://{pb.LOOPBACK}:{redis_port}/0"]
    env = {k: v for k, v in pb.child_env(PYTHONPATH=str(pb.ROOT), DISTILLGUARD_HOME=str(run_dir / "home")).items()
           if not k.startswith("DISTILLGUARD_") or k == "DISTILLGUARD_HOME"}
    log = run_dir / "distillguard.log"
    gateway = ctx.children.start(name, argv, log, env=env, cwd=pb.ROOT)
    url = f"http://{pb.LOOPBACK}:{port}"
    pb.wait_ready(name, url, gateway, log, 60)
    return url, [gateway, redis]


def metric_totals(url: str) -> dict[str, float]:
    """Sums of the counters that say whether the recorder kept up (all labels added)."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    names = ("distillguard_requests_total", "distillguard_recording_records_total",
             "distillguard_recording_dropped_total", "distillguard_recording_written_bytes_total")
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def measure(ctx: pb.Context, name: str, bodies: str | None, args: argparse.Namespace) -> dict:
    busy_before = pb.idle_busy_pct()
    url, procs = start_gateway(ctx, name, bodies, args.workers)
    try:
        pb.run_wrk(url, args.warmup, args)
        wrk = pb.run_wrk(url, args.duration, args)
        openloop = pb.run_openloop(url, args)
        time.sleep(2.5)  # the recorder's last lines reach the file (tick + flush)
        totals = metric_totals(url)
    finally:
        for proc in procs:
            ctx.children.stop(proc)
    recorded = totals["distillguard_recording_records_total"]
    answered = totals["distillguard_requests_total"]
    result = {
        "variant": name.split("-")[0], "busy_before_pct": busy_before, "wrk_rps": wrk["ok_rps"],
        "wrk_errors": wrk["errors"], "wrk_machine_busy_pct": wrk["machine_busy_pct"],
        "latency": {r["rate"]: {"p50": r["p50_all_ms"], "p99": r["p99_all_ms"], "errors": r["errors"]}
                    for r in openloop["results"]},
        "answered": int(answered), "recorded": int(recorded),
        "dropped": int(totals["distillguard_recording_dropped_total"]),
        "bytes_per_record": round(totals["distillguard_recording_written_bytes_total"] / recorded, 1)
        if recorded else None,
    }
    print(f"# {name}: {result['wrk_rps']:,.0f} req/s; latency {result['latency']}; recorded "
          f"{result['recorded']:,} of {result['answered']:,}, dropped {result['dropped']}", file=sys.stderr)
    return result


def summarise(runs: list[dict], rates: list[float]) -> dict:
    """Per variant: mean throughput and median latencies over the rounds, and both as
    ratios / differences against `off` from the same rounds."""
    summary = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        summary[variant] = {
            "wrk_rps": [r["wrk_rps"] for r in mine],
            "wrk_rps_mean": round(statistics.mean(r["wrk_rps"] for r in mine), 1),
            "latency_ms": {rate: {q: round(statistics.median(r["latency"][rate][q] for r in mine), 3)
                                  for q in ("p50", "p99")} for rate in rates},
            "recorded_share": round(sum(r["recorded"] for r in mine) / max(sum(r["answered"] for r in mine), 1), 4),
            "dropped": sum(r["dropped"] for r in mine),
            "bytes_per_record": mine[-1]["bytes_per_record"],
        }
    off = summary.get("off")
    for entry in summary.values():
        if off:
            entry["rps_vs_off"] = round(entry["wrk_rps_mean"] / off["wrk_rps_mean"], 3)
            entry["added_ms_vs_off"] = {rate: {q: round(entry["latency_ms"][rate][q] - off["latency_ms"][rate][q], 3)
                                               for q in ("p50", "p99")} for rate in rates}
    return summary


def markdown(summary: dict, rates: list[float]) -> str:
    head = "| recording | max req/s (wrk, per round) | × off | " + " | ".join(
        f"{rate:g} req/s p50 / p99 ms (vs off)" for rate in rates) + " | recorded | bytes/line (gzip) |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(rates) + "---:|---:|"]
    for variant, entry in summary.items():
        cells = []
        for rate in rates:
            lat, added = entry["latency_ms"][rate], entry.get("added_ms_vs_off", {}).get(rate)
            extra = f" ({added['p50']:+.2f} / {added['p99']:+.2f})" if added and variant != "off" else ""
            cells.append(f"{lat['p50']:.2f} / {lat['p99']:.2f}{extra}")
        rounds = ", ".join(f"{rps:,.0f}" for rps in entry["wrk_rps"])
        recorded = "–" if variant == "off" else f"{entry['recorded_share']:.1%} ({entry['dropped']} dropped)"
        lines.append(f"| {variant} | {entry['wrk_rps_mean']:,.0f} ({rounds}) | {entry.get('rps_vs_off', 1):.3f} | "
                     + " | ".join(cells) + f" | {recorded} | {entry['bytes_per_record'] or '–'} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="turns of off, features, full")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--duration", type=float, default=8.0, help="seconds of wrk and of each open-loop rate")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rates", default="200,500", help="open-loop rates, req/s")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--keys", type=int, default=300)
    p.add_argument("--dg-cmd", default=None, help="command that runs distillguard (default: on PATH)")
    p.add_argument("--out", default=str(BENCH / "results" / "recording.json"))
    args = p.parse_args(argv)
    args.rates = [float(rate) for rate in args.rates.split(",") if rate.strip()]
    # What proxy_bench's wrk and open-loop helpers read.
    args.threads, args.loadgen_cpus, args.wrk_nice, args.openloop_nice, args.request_timeout = 2, "", 0, -5, 10.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="dg-recording-bench-"))
    children = pb.Children()
    ctx = pb.Context(children, tmp, args)
    if ctx.dg_command[0] is None:
        raise SystemExit(ctx.dg_command[1])
    report: dict = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
                    "settings": {k: v for k, v in vars(args).items()}, "runs": []}
    try:
        ctx.upstream_port = pb.free_port()
        run_dir = tmp / "nginx-upstream"
        run_dir.mkdir()
        upstream = pb.start_nginx(children, "nginx-upstream", "direct.conf", run_dir, LISTEN_PORT=ctx.upstream_port)
        ctx.upstream_url = f"http://{pb.LOOPBACK}:{ctx.upstream_port}"
        pb.wait_ready("upstream", ctx.upstream_url, upstream, run_dir / "error.log", 15)
        for round_ in range(args.rounds):
            for variant, bodies in VARIANTS.items():
                report["runs"].append(measure(ctx, f"{variant}-{round_}", bodies, args))
    finally:
        children.stop_all()
    report["summary"] = summarise(report["runs"], args.rates)
    table = markdown(report["summary"], args.rates)
    report["markdown"] = table
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
