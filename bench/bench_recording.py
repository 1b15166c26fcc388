#!/usr/bin/env python3
"""What recording costs the gateway: throughput and added latency with recording off, with
`bodies: features` and with `bodies: full`, measured side by side in one run.

Each variant is the same `distillguard serve` (a redis-server child, detection events on,
nginx as a zero-latency upstream answering a fixed chat.completion); only `recording`
differs. Variants run in turns (off, features, full, off, features, full, ...) for
--rounds rounds so that a burst of other work on the machine lands on all of them. For
each run: the gateway's CPU time per request during a wrk run (from /proc, recorder thread
included; other work on a shared machine moves it far less than it moves throughput),
maximum throughput (wrk, closed loop, as bench/proxy_bench.py) and latency at fixed rates
(bench/openloop.py, open loop). After each run the gateway's own metrics say whether the
recorder kept up: every answered request written, none dropped.

    python bench/bench_recording.py [--rounds 2] [--workers 1] [--duration 8] [--rates 200,500]
                                    [--micro-only] [--out bench/results/recording.json]

First, in this process, the CPU time each part of the recorder spends per request in each
body mode (thread CPU time: the figure other processes on a busy machine disturb least).

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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import proxy_bench as pb  # noqa: E402  (its process, nginx, wrk and open-loop helpers)

VARIANTS = {"off": None, "features": "features", "full": "full"}


def gateway_config(upstream: str, bodies: str | None, directory: Path) -> dict:
    if not bodies:
        return pb.gateway_config(upstream)
    return pb.gateway_config(upstream, recording={"enabled": True, "bodies": bodies, "directory": str(directory),
                                                  "gzip": True})


def start_gateway(ctx: pb.Context, name: str, bodies: str | None, workers: int) -> tuple[str, list]:
    """redis-server + `distillguard serve` with the variant's config; (url, processes)."""
    run_dir = ctx.tmp / name
    run_dir.mkdir(parents=True)
    redis_port, port = pb.free_port(), pb.free_port()
    redis = pb.start_redis(ctx.children, run_dir, redis_port)
    config_path = run_dir / "distillguard.yaml"
    config_path.write_text(json.dumps(gateway_config(f"{ctx.upstream_url}/v1", bodies, run_dir / "recordings")))
    command, _ = ctx.dg_command
    argv = command + ["serve", "--config", str(config_path), "--host", pb.LOOPBACK, "--port", str(port),
                      "--workers", str(workers), "--redis-url", f"redis://{pb.LOOPBACK}:{redis_port}/0"]
    env = pb.gateway_env(run_dir / "home")
    log = run_dir / "distillguard.log"
    gateway = ctx.children.start(name, argv, log, env=env, cwd=pb.ROOT)
    url = f"http://{pb.LOOPBACK}:{port}"
    pb.wait_ready(name, url, gateway, log, 60)
    return url, [gateway, redis]


def metric_totals(url: str) -> dict[str, float]:
    """Sums of the counters that say whether the recorder kept up (all labels added)."""
    text = pb.scrape(url)
    names = ("distillguard_requests_total", "distillguard_recording_records_total",
             "distillguard_recording_dropped_total", "distillguard_recording_written_bytes_total")
    return {name: pb.metric_sum(text, name) for name in names}


def measure(ctx: pb.Context, name: str, bodies: str | None, args: argparse.Namespace) -> dict:
    busy_before, _ = pb.wait_quiet(args.quiet_threshold, args.quiet_wait)
    url, procs = start_gateway(ctx, name, bodies, args.workers)
    try:
        pb.run_wrk(url, args.warmup, args)
        cpu_before = pb.group_cpu_seconds(procs[0].pid)
        wrk = pb.run_wrk(url, args.duration, args)
        time.sleep(1.5)  # the recorder's lines of the wrk run are written (tick + flush)
        cpu_per_request_us = (pb.group_cpu_seconds(procs[0].pid) - cpu_before) / max(wrk["requests"], 1) * 1e6
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
        "cpu_per_request_us": round(cpu_per_request_us, 1),
        "wrk_errors": wrk["errors"], "wrk_machine_busy_pct": wrk["machine_busy_pct"],
        "latency": {r["rate"]: {"p50": r["p50_all_ms"], "p99": r["p99_all_ms"], "errors": r["errors"]}
                    for r in openloop["results"]},
        "answered": int(answered), "recorded": int(recorded),
        "dropped": int(totals["distillguard_recording_dropped_total"]),
        "bytes_per_record": round(totals["distillguard_recording_written_bytes_total"] / recorded, 1)
        if recorded else None,
    }
    print(f"# {name}: {result['wrk_rps']:,.0f} req/s, {result['cpu_per_request_us']} µs CPU/request; latency {result['latency']}; recorded "
          f"{result['recorded']:,} of {result['answered']:,}, dropped {result['dropped']}", file=sys.stderr)
    return result


def micro(records: int, repeats: int) -> dict:
    """CPU time per recorded request of each part of the recorder, in this process, per body
    mode: the listener (on the event loop), the line (writer thread: the record, its JSON,
    the text features in `features` mode) and gzip (zlib, which runs without the GIL).
    Thread CPU time, so time other processes take from this core is not counted; the median
    of `repeats` runs. Detection's own `request_features` call is measured alongside."""
    import gzip

    from detectors.features import request_features
    from service.config import RecordingConfig
    from service.proxy import Exchange
    from service.recording.lines import HeaderNames, encode_line, traffic_record
    from service.recording.recorder import Recorder
    from service.usage import Usage

    bodies = [json.loads(line) for line in pb.MIX.read_text().splitlines() if line.strip()]
    headers = [(b"host", b"127.0.0.1:8000"), (b"accept-encoding", b"gzip, deflate"), (b"connection", b"keep-alive"),
               (b"accept", b"application/json"), (b"content-type", b"application/json"),
               (b"user-agent", b"OpenAI/Python 1.54.4"), (b"x-stainless-lang", b"python"),
               (b"x-stainless-package-version", b"1.54.4"), (b"authorization", b"Bearer sk-bench-0"),
               (b"content-length", b"240")]
    exchanges = [Exchange("POST", "/v1/chat/completions", "/chat/completions", "/v1/chat/completions",
                          "0123456789abcdef", "192.0.2.10", headers, json.dumps(bodies[i % len(bodies)]).encode(),
                          bodies[i % len(bodies)], 0.0, received_at=1.7e9 + i / 1000, status=200,
                          usage=Usage(40, 32), finished=0.003) for i in range(records)]
    kept = HeaderNames.of(RecordingConfig().headers)

    def per_record(seconds: float) -> float:
        return round(seconds / records * 1e6, 2)

    result = {}
    for mode in ("none", "features", "full"):
        runs = []
        for _ in range(repeats):
            config = RecordingConfig(enabled=True, directory="/nonexistent", bodies=mode, queue_size=10**9,
                                     queue_bytes=10**15)
            recorder = Recorder(config)
            start = time.thread_time()
            for exchange in exchanges:
                recorder.listen(exchange)
            recorder._release(everything=True)
            listen = time.thread_time() - start
            batch = recorder.files.inbox.get_nowait()
            start = time.thread_time()
            data = b"".join(encode_line(traffic_record(finished, mode, kept)) for finished in batch)
            line = time.thread_time() - start
            start = time.thread_time()
            packed = gzip.compress(data, compresslevel=6, mtime=0)
            runs.append((listen, line, time.thread_time() - start, len(data), len(packed)))
        result[mode] = {
            "listen_us": per_record(statistics.median(r[0] for r in runs)),
            "line_us": per_record(statistics.median(r[1] for r in runs)),
            "gzip_us": per_record(statistics.median(r[2] for r in runs)),
            "bytes_per_line": round(runs[0][3] / records, 1), "gzip_bytes_per_line": round(runs[0][4] / records, 1),
        }
    runs = []
    for _ in range(repeats):
        start = time.thread_time()
        for exchange in exchanges:
            request_features(ts=0.0, key_id="", path=exchange.path, body=exchange.request, headers=None,
                             client_ip=None, status=200, latency_ms=0.0, usage=None, salt=b"")
        runs.append(time.thread_time() - start)
    result["detection_request_features_us"] = per_record(statistics.median(runs))
    return result


def micro_markdown(result: dict) -> str:
    lines = ["| bodies | listener (event loop) µs | line (writer thread) µs | gzip (no GIL) µs | bytes/line | gzip bytes/line |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode in ("none", "features", "full"):
        r = result[mode]
        lines.append(f"| {mode} | {r['listen_us']:.2f} | {r['line_us']:.2f} | {r['gzip_us']:.2f} | "
                     f"{r['bytes_per_line']:,.0f} | {r['gzip_bytes_per_line']:,.1f} |")
    lines.append(f"\nDetection's `request_features` on the same bodies: {result['detection_request_features_us']:.2f} µs.")
    return "\n".join(lines)


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
            "cpu_per_request_us": [r["cpu_per_request_us"] for r in mine],
            "cpu_per_request_us_median": round(statistics.median(r["cpu_per_request_us"] for r in mine), 1),
            "latency_ms": {rate: {q: _median([r["latency"][rate][q] for r in mine]) for q in ("p50", "p99")}
                           for rate in rates},
            "recorded_share": round(sum(r["recorded"] for r in mine) / max(sum(r["answered"] for r in mine), 1), 4),
            "dropped": sum(r["dropped"] for r in mine),
            "bytes_per_record": mine[-1]["bytes_per_record"],
        }
    off = summary.get("off")
    for entry in summary.values():
        if off:
            entry["rps_vs_off"] = round(entry["wrk_rps_mean"] / off["wrk_rps_mean"], 3)
            entry["cpu_vs_off"] = round(entry["cpu_per_request_us_median"] / off["cpu_per_request_us_median"], 3)
            entry["added_ms_vs_off"] = {rate: {q: _difference(entry["latency_ms"][rate][q], off["latency_ms"][rate][q])
                                               for q in ("p50", "p99")} for rate in rates}
    return summary


def _median(values: list) -> float | None:
    """Median of the rounds that measured one (a percentile that fell on a failed request is "error")."""
    numbers = [value for value in values if isinstance(value, int | float)]
    return round(statistics.median(numbers), 3) if numbers else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(summary: dict, rates: list[float]) -> str:
    head = "| recording | gateway CPU µs/request (per round) | × off | max req/s (wrk, per round) | × off | " + " | ".join(
        f"{rate:g} req/s p50 / p99 ms (vs off)" for rate in rates) + " | recorded | bytes/line (gzip) |"
    lines = [head, "|---|---:|---:|---:|---:|" + "---:|" * len(rates) + "---:|---:|"]
    for variant, entry in summary.items():
        cells = []
        for rate in rates:
            lat, added = entry["latency_ms"][rate], entry.get("added_ms_vs_off", {}).get(rate)
            extra = ""
            if added and variant != "off":
                extra = " (" + " / ".join("–" if d is None else f"{d:+.2f}" for d in (added["p50"], added["p99"])) + ")"
            cells.append(f"{_ms(lat['p50'])} / {_ms(lat['p99'])}{extra}")
        rounds = ", ".join(f"{rps:,.0f}" for rps in entry["wrk_rps"])
        recorded = "–" if variant == "off" else f"{entry['recorded_share']:.1%} ({entry['dropped']} dropped)"
        cpu = ", ".join(f"{us:,.0f}" for us in entry["cpu_per_request_us"])
        lines.append(f"| {variant} | {entry['cpu_per_request_us_median']:,.0f} ({cpu}) | {entry.get('cpu_vs_off', 1):.3f} | "
                     f"{entry['wrk_rps_mean']:,.0f} ({rounds}) | {entry.get('rps_vs_off', 1):.3f} | "
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
    p.add_argument("--quiet-threshold", type=float, default=15.0,
                   help="before each run, wait until the idle machine is less busy than this %% ...")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="... for at most this many seconds")
    p.add_argument("--dg-cmd", default=None, help="command that runs distillguard (default: on PATH)")
    p.add_argument("--micro-records", type=int, default=20_000, help="requests per in-process measurement")
    p.add_argument("--micro-repeats", type=int, default=5)
    p.add_argument("--micro-only", action="store_true", help="only the in-process CPU figures, no gateway")
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
    print("# in-process CPU per recorded request", file=sys.stderr)
    report["micro"] = micro(args.micro_records, args.micro_repeats)
    print(micro_markdown(report["micro"]))
    if args.micro_only:
        return _write(report, micro_markdown(report["micro"]), args.out)
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
    print(table)
    return _write(report, micro_markdown(report["micro"]) + "\n\n" + table, args.out)


def _write(report: dict, tables: str, path: str) -> int:
    report["markdown"] = tables
    pb.write_report(path, report, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
