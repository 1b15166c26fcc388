#!/usr/bin/env python3
"""Replay throughput and memory: is `distillguard replay` ever the bottleneck?

One run, side by side on the same machine:

1. **Ceiling**: `distillguard replay --speed max` against a no-op target (nginx answering
   a fixed chat.completion, bench/nginx/direct.conf), so the replayer's own work is the
   whole cost.
2. **Gateway**: the gateway (`distillguard serve --workers 2` with a redis-server child,
   nginx as its zero-latency upstream, detection events on) driven first by wrk (its
   closed-loop maximum, as in bench/proxy_bench.py) and then by `distillguard replay
   --speed max` with the same concurrency. If the replayer keeps up, the two rates match,
   and the ceiling divided by the gateway's rate says how much room is left.
3. **Memory**: a 1,000,000-line file replayed against the no-op target, the replayer's
   resident memory sampled every half second. Flat means the peak equals the peak of the
   shorter ceiling run, which has the same keys.

Files are generated (once, cached) under --cache-dir, never in the repository: lines 1 ms
apart rotating over --keys raw keys, with the bodies of bench/request_mix.jsonl.

    python bench/bench_replay.py [--requests 200000] [--gateway-requests 60000]
                                 [--big 1000000] [--keys 2000] [--concurrency 64]
                                 [--skip-big] [--out bench/results/replay.json]

Needs nginx, wrk and redis-server (Debian packages). All traffic goes to 127.0.0.1; every
child runs in its own session and is stopped by its process-group id. Nothing here asserts
a figure: they are printed, with the machine's load, for the reader to judge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import proxy_bench as pb  # noqa: E402  (its process, nginx and wrk helpers)

SAMPLE_S = 0.5
QUIET_PCT, QUIET_WAIT_S = 15.0, 60.0  # before each run, wait (at most this long) for others' work to calm


def generate(path: Path, lines: int, keys: int) -> Path:
    """A traffic file of `lines` requests 1 ms apart over `keys` keys (cached by name)."""
    if path.exists():
        return path
    bodies = [json.loads(line) for line in pb.MIX.read_text().splitlines() if line.strip()]
    partial = path.with_suffix(".partial")
    with open(partial, "w") as out:
        for i in range(lines):
            record = {"ts": 1.7e9 + i / 1000, "key": f"sk-replay-bench-{i % keys}", "ip": "192.0.2.10",
                      "method": "POST", "path": "/v1/chat/completions",
                      "headers": {"user-agent": "bench-replay/1.0", "content-type": "application/json"},
                      "body": bodies[i % len(bodies)], "label": "benign", "scenario": "bench"}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    partial.rename(path)
    return path


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def replay(command: list[str], path: Path, target: str, concurrency: int, tmp: Path, name: str) -> dict:
    """`distillguard replay --speed max` as a child: its report, CPU and sampled memory."""
    busy_before, waited = pb.wait_quiet(QUIET_PCT, QUIET_WAIT_S)
    report_path = tmp / f"{name}.json"
    argv = command + ["replay", str(path), "--target", target, "--speed", "max", "--concurrency",
                      str(concurrency), "--quiet", "--report", str(report_path)]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = pb.cpu_times()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=pb.child_env(), cwd=pb.ROOT, start_new_session=True)
    samples: list[tuple[float, int]] = []
    try:
        while proc.poll() is None:
            kib = rss_kib(proc.pid)
            if kib and time.monotonic() - started > 1.0:  # past exec and imports
                samples.append((round(time.monotonic() - started, 1), kib))
            time.sleep(SAMPLE_S)
        stderr = proc.stderr.read()
    except BaseException:
        os.killpg(proc.pid, 15)
        proc.wait(10)
        raise
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = pb.cpu_times()
    if proc.returncode != 0:
        raise RuntimeError(f"replay {name} exited {proc.returncode}: {stderr[-500:]}")
    report = json.loads(report_path.read_text())
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    rss = [kib for _, kib in samples]
    return {
        "command": " ".join(shlex.quote(a) for a in argv),
        "requests": report["requests_sent"],
        "statuses": report["statuses"],
        "errors": report["errors"],
        "throughput_rps": report["throughput_rps"],
        "latency_ms": report["latency_ms"],
        "wall_s": round(wall, 1),
        "replayer_cpu_pct": round(100 * cpu / wall, 1),  # of one core
        "machine_busy_pct": round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
        "rss_peak_mib": round(max(rss) / 1024, 1) if rss else None,
        "rss_mib_by_decile": _deciles(samples),
        "machine_busy_before_pct": busy_before,
        "waited_for_quiet_s": waited,
    }


def _deciles(samples: list[tuple[float, int]]) -> list[float]:
    """Resident memory at 10 %, 20 %, ... 100 % of the run (the sample nearest each point)."""
    if not samples:
        return []
    return [round(samples[min(len(samples) - 1, int(len(samples) * tenth / 10))][1] / 1024, 1)
            for tenth in range(1, 11)]


def start_noop(children: pb.Children, tmp: Path) -> str:
    port = pb.free_port()
    run_dir = tmp / "nginx-noop"
    run_dir.mkdir()
    proc = pb.start_nginx(children, "nginx-noop", "direct.conf", run_dir, LISTEN_PORT=port)
    url = f"http://{pb.LOOPBACK}:{port}"
    pb.wait_ready("no-op target", url, proc, run_dir / "error.log", 15)
    return url


def markdown(result: dict) -> str:
    ceiling, gateway = result["ceiling"], result.get("gateway") or {}
    rows = [
        "| run | requests | req/s | p50 / p99 ms | replayer CPU (1 core = 100 %) | peak RSS MiB | machine busy before |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, run: dict) -> str:
        lat = run["latency_ms"]
        return (f"| {name} | {run['requests']:,} | {run['throughput_rps']:,.0f} | {lat['p50']} / {lat['p99']} | "
                f"{run['replayer_cpu_pct']} % | {run['rss_peak_mib']} | {run['machine_busy_before_pct']} % |")

    rows.append(row("replay → no-op (ceiling)", ceiling))
    if gateway:
        rows.append(row("replay → gateway", gateway["replay"]))
        wrk = gateway["wrk"]
        rows.append(f"| wrk → gateway | {wrk['requests']:,} | {wrk['ok_rps']:,.0f} | – | – | – | "
                    f"{wrk['machine_busy_before_pct']} % |")
    if result.get("big"):
        rows.append(row(f"replay {result['big']['requests']:,} → no-op (memory)", result["big"]))
    lines = ["\n".join(rows), ""]
    ratios = result["ratios"]
    if "ceiling_over_gateway" in ratios:
        lines.append(f"- replayer ceiling ÷ gateway throughput under replay: **{ratios['ceiling_over_gateway']}×**")
        lines.append(f"- gateway under replay ÷ gateway under wrk: **{ratios['replay_over_wrk']}**")
    if result.get("big"):
        lines.append(f"- {result['big']['requests']:,}-line RSS by decile (MiB): {result['big']['rss_mib_by_decile']}; "
                     f"peak {result['big']['rss_peak_mib']} vs {ceiling['rss_peak_mib']} for "
                     f"{ceiling['requests']:,} lines")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000, help="lines of the ceiling run")
    p.add_argument("--gateway-requests", type=int, default=60_000, help="lines replayed through the gateway")
    p.add_argument("--big", type=int, default=1_000_000, help="lines of the memory run")
    p.add_argument("--keys", type=int, default=2000, help="distinct keys in every file")
    p.add_argument("--concurrency", type=int, default=64, help="replay --concurrency and wrk -c")
    p.add_argument("--wrk-seconds", type=float, default=10.0)
    p.add_argument("--skip-big", action="store_true", help="leave out the 1M-line memory run")
    p.add_argument("--cache-dir", default="/tmp/distillguard-bench-replay")
    p.add_argument("--dg-cmd", default=None, help="command that runs distillguard (default: on PATH)")
    p.add_argument("--out", default=str(BENCH / "results" / "replay.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dg-replay-bench-"))
    children = pb.Children()
    ctx_args = argparse.Namespace(dg_cmd=args.dg_cmd, threads=1, connections=args.concurrency, keys=args.keys,
                                  wrk_nice=0, loadgen_cpus="")
    ctx = pb.Context(children, tmp, ctx_args)
    command = ctx.dg_command[0]
    if command is None:
        raise SystemExit(ctx.dg_command[1])
    result: dict = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
                    "settings": vars(args), "ratios": {}}
    try:
        print("# generating files (cached)", file=sys.stderr)
        ceiling_file = generate(cache / f"replay-{args.requests}-{args.keys}.jsonl", args.requests, args.keys)
        gateway_file = generate(cache / f"replay-{args.gateway_requests}-{args.keys}.jsonl", args.gateway_requests,
                                args.keys)
        noop = start_noop(children, tmp)
        ctx.upstream_url = noop
        print(f"# 1. ceiling: {args.requests:,} requests -> no-op {noop}", file=sys.stderr)
        result["ceiling"] = replay(command, ceiling_file, noop, args.concurrency, tmp, "ceiling")
        print(f"#    {result['ceiling']['throughput_rps']:,.0f} req/s", file=sys.stderr)

        print("# 2. gateway: 2 workers + redis, nginx upstream", file=sys.stderr)
        target = pb.Distillguard(ctx, workers=2, redis=True)
        url = target.start()
        try:
            pb.run_wrk(url, 2, ctx_args)  # warm-up
            wrk_busy_before, _ = pb.wait_quiet(QUIET_PCT, QUIET_WAIT_S)
            wrk = pb.run_wrk(url, args.wrk_seconds, ctx_args)
            wrk["machine_busy_before_pct"] = wrk_busy_before
            print(f"#    wrk {wrk['ok_rps']:,.0f} req/s", file=sys.stderr)
            gateway_replay = replay(command, gateway_file, url, args.concurrency, tmp, "gateway")
            print(f"#    replay {gateway_replay['throughput_rps']:,.0f} req/s", file=sys.stderr)
        finally:
            target.stop()
        result["gateway"] = {"command": target.info.get("command"), "wrk": wrk, "replay": gateway_replay}
        result["ratios"] = {
            "ceiling_over_gateway": round(result["ceiling"]["throughput_rps"] / gateway_replay["throughput_rps"], 2),
            "replay_over_wrk": round(gateway_replay["throughput_rps"] / wrk["ok_rps"], 2),
        }
        if not args.skip_big:
            big_file = generate(cache / f"replay-{args.big}-{args.keys}.jsonl", args.big, args.keys)
            print(f"# 3. memory: {args.big:,} requests -> no-op", file=sys.stderr)
            result["big"] = replay(command, big_file, noop, args.concurrency, tmp, "big")
            print(f"#    {result['big']['throughput_rps']:,.0f} req/s, RSS by decile "
                  f"{result['big']['rss_mib_by_decile']} MiB", file=sys.stderr)
    finally:
        children.stop_all()
    table = markdown(result)
    print(table)
    pb.write_report(args.out, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
