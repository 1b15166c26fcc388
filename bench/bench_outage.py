#!/usr/bin/env python3
"""Detection events across a Redis outage: a gateway under open-loop load while its Redis
is killed (SIGKILL) and, some seconds later, restarted on the same port with its data.

One run: a redis-server child with an append-only file (`appendfsync everysec`: a killed
process loses nothing it has acknowledged; only a machine crash could lose the last
second), the upstream simulator (`distillguard mock-upstream`), and `distillguard serve`
with --workers workers. bench/openloop.py sends --rate requests/s for --duration seconds
(after --warmup); --kill-at seconds into the measured phase Redis is killed, and --outage
seconds later started again. Meanwhile the gateway's /metrics is read every 0.2 s for the
spool's depth. At the end, once the spool is empty (or --settle seconds passed):

  requests served  the gateway's own count (distillguard_requests_total, every worker;
                   warm-up and readiness requests included), and how many of them while
                   Redis was down (as read every 0.2 s: approximate)
  events appended  entries in the event streams (XLEN over every shard)
  events lost      served - appended (positive: lost; negative would be appended twice)
  spool peak       most events (and bytes) the gateway's workers held at once
  answered / offered  requests the client got an answer to within its 10 s timeout, over
                   those the load generator scheduled
  CPU ms/request   CPU time of the gateway's process group and of the upstream simulator
                   during the load, per served request, and how busy the machine was: where
                   the time went when fewer were served than offered

Each of --spools (`memory`: the spool in memory only; `disk`: with detection.spool.disk on)
is run in turns, --rounds times, so the variants share the machine's state in one run.
With --py-spy (pip install py-spy), every gateway worker is sampled during the load and the
report gives each distillguard function's share of the samples (where the gateway's CPU goes).

    python bench/bench_outage.py [--workers 2] [--rate 500] [--duration 20] [--kill-at 5]
                                 [--outage 10] [--spools memory,disk] [--rounds 1] [--py-spy]
                                 [--out bench/results/outage.json]

Needs redis-server. All traffic stays on 127.0.0.1; every child runs in its own session
and is stopped by its process-group id. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import proxy_bench as pb  # noqa: E402  (its process, readiness and environment helpers)

STREAMS = 8


class Redis:
    """redis-server with an append-only file in `run_dir`, killable and restartable on one port."""

    def __init__(self, children: pb.Children, run_dir: Path) -> None:
        self.children, self.run_dir, self.port = children, run_dir, pb.free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{pb.LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.proc = pb.start_redis(self.children, self.run_dir, self.port, appendonly=True)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.children.procs = [(n, p) for n, p in self.children.procs if p is not self.proc]
        self.proc = None

    def stream_entries(self) -> int:
        import redis

        client = redis.Redis(host=pb.LOOPBACK, port=self.port)
        try:
            return sum(client.xlen(f"dg:{{events:{shard}}}") for shard in range(STREAMS))
        finally:
            client.close()


def gateway_config(upstream: str, args: argparse.Namespace, disk_dir: Path | None) -> dict:
    spool = {"max_events": args.spool_events, **({"disk": {"directory": str(disk_dir)}} if disk_dir else {})}
    return pb.gateway_config(upstream, redis_timeout="250ms", detection={"streams": STREAMS, "spool": spool})


class SpoolWatch:
    """Reads the gateway's spool gauges every 0.2 s; keeps the peak."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak_events = 0.0
        self.peak_bytes = 0.0
        self.requests = 0.0  # the gateway's request count at the last read
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                text = pb.scrape(self.url, attempts=1, timeout=2.0)
            except OSError:
                continue
            self.peak_events = max(self.peak_events, pb.metric_sum(text, "distillguard_events_spool_entries"))
            self.peak_bytes = max(self.peak_bytes, pb.metric_sum(text, "distillguard_events_spool_bytes"))
            self.requests = pb.metric_sum(text, "distillguard_requests_total")


def start_py_spy(pgid: int, run_dir: Path, args: argparse.Namespace) -> list[tuple[subprocess.Popen, Path]]:
    """py-spy sampling every gateway worker (on-CPU stacks) over the whole load."""
    pids = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    spies = []
    for pid in pids:
        out = run_dir / f"py-spy-{pid}.txt"
        spies.append((subprocess.Popen(["py-spy", "record", "--pid", pid, "--duration", f"{args.warmup + args.duration:.0f}",
                                        "--rate", "50", "--format", "raw", "--nonblocking", "--output", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return spies


def py_spy_profile(spies: list[tuple[subprocess.Popen, Path]], top: int = 14) -> dict:
    """Share of the workers' CPU samples in each distillguard function (inclusive), largest first."""
    inclusive: dict[str, int] = {}
    total = 0
    for spy, out in spies:
        spy.wait(60)
        if not out.exists():
            continue
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            total += int(count)
            names = {frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0] + ")"
                     for frame in stack.split(";") if " (" in frame}
            for name in names:
                if ("service/" in name or "detectors/" in name) and "service/cli" not in name:
                    inclusive[name] = inclusive.get(name, 0) + int(count)
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return {"samples": total, "share": {name: round(count / max(total, 1), 3) for name, count in ranked}}


def run(ctx_dir: Path, children: pb.Children, args: argparse.Namespace, spool: str) -> dict:
    """One run with the spool in memory only (`memory`) or with its disk part (`disk`)."""
    ctx_dir.mkdir(parents=True)
    dg = [sys.executable, "-m", "service.cli"]
    env = pb.gateway_env(ctx_dir / "home")
    redis = Redis(children, ctx_dir)
    redis.start()
    upstream_port = pb.free_port()
    upstream_log = ctx_dir / "upstream.log"
    upstream = children.start("mock-upstream", dg + ["mock-upstream", "--port", str(upstream_port)], upstream_log,
                              env=env)
    pb.wait_ready("mock-upstream", f"http://{pb.LOOPBACK}:{upstream_port}", upstream, upstream_log, 60)
    config_path = ctx_dir / "distillguard.yaml"
    disk_dir = ctx_dir / "spool" if spool == "disk" else None
    config_path.write_text(json.dumps(gateway_config(f"http://{pb.LOOPBACK}:{upstream_port}/v1", args, disk_dir),
                                      indent=2))
    port = pb.free_port()
    serve = dg + ["serve", "--config", str(config_path), "--host", pb.LOOPBACK, "--port", str(port),
                  "--workers", str(args.workers), "--redis-url", redis.url]
    gateway_log = ctx_dir / "gateway.log"
    gateway = children.start("gateway", serve, gateway_log, env=env)
    url = f"http://{pb.LOOPBACK}:{port}"
    pb.wait_ready("gateway", url, gateway, gateway_log, 90)

    openloop = [sys.executable, str(pb.OPENLOOP), "--url", url, "--rates", f"{args.rate:g}",
                "--duration", f"{args.duration:g}", "--warmup", f"{args.warmup:g}", "--keys", str(args.keys),
                "--timeout", "10"]
    watch = SpoolWatch(url)
    watch.thread.start()
    load = subprocess.Popen(openloop, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=pb.child_env(), start_new_session=True)
    parts = {"gateway": gateway.pid, "upstream simulator": upstream.pid, "load generator": load.pid}
    cpu_before = {name: pb.group_cpu_seconds(pgid) for name, pgid in parts.items()}
    busy_before = pb.cpu_times()
    spies = start_py_spy(gateway.pid, ctx_dir, args) if args.py_spy else []
    time.sleep(args.warmup + args.kill_at)
    redis.kill()
    killed, served_at_kill = time.monotonic(), watch.requests
    time.sleep(args.outage)
    redis.start()
    outage, served_during_outage = time.monotonic() - killed, watch.requests - served_at_kill
    out, err = load.communicate(timeout=args.duration + args.warmup + 120)
    profile = py_spy_profile(spies) if spies else None
    cpu = {name: pb.group_cpu_seconds(pgid) - cpu_before[name] for name, pgid in parts.items() if name != "load generator"}
    busy_after = pb.cpu_times()
    if load.returncode != 0:
        raise SystemExit(f"openloop failed: {err[-400:]}")
    client = json.loads(out.strip().splitlines()[-1])["results"][0]
    # Until every served request's event is in a stream, or --settle passes: a saturated
    # machine may take a while to flush what the workers held (what is left is spool_left).
    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline and (
            redis.stream_entries() < pb.metric_sum(pb.scrape(url), "distillguard_requests_total")
            or pb.metric_sum(pb.scrape(url), "distillguard_events_spool_entries") > 0):
        time.sleep(0.5)
    time.sleep(0.5)  # the last flush's reply, then one more scrape
    watch.stop.set()
    watch.thread.join(5)
    text = pb.scrape(url)
    served = pb.metric_sum(text, "distillguard_requests_total")
    appended = redis.stream_entries()
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "redis": pb.version_of(["redis-server", "--version"]),
        "spool": spool,
        "workers": args.workers,
        "rate": args.rate,
        "duration_s": args.duration,
        "outage_s": round(outage, 2),
        "requests_served": int(served),
        "requests_served_during_outage": int(served_during_outage),
        "events_appended": appended,
        "events_appended_metric": int(pb.metric_sum(text, "distillguard_events_appended_total")),
        "events_lost": int(served) - appended,
        "events_dropped_metric": {reason: int(pb.metric_sum(text, "distillguard_events_dropped_total",
                                                         f'reason="{reason}"'))
                                  for reason in ("spool_full", "redis_refused", "shutdown", "disk_full", "disk_failed")},
        "spool_left": int(pb.metric_sum(text, "distillguard_events_spool_entries")),
        "spool_peak_events": int(watch.peak_events),
        "spool_peak_bytes": int(watch.peak_bytes),
        "redis_errors_events": int(pb.metric_sum(text, "distillguard_redis_errors_total", 'operation="events"')),
        "served_over_offered": round(client["ok"] / max(client["scheduled"], 1), 3),
        # CPU per request the gateway served (those the client gave up on included) while the
        # load ran, and how busy the whole machine was meanwhile.
        "cpu_ms_per_request": {name: round(seconds * 1000 / max(served, 1), 2) for name, seconds in cpu.items()},
        "machine_busy_pct": round(100 * (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9), 1),
        "profile": profile,
        "client": {k: client[k] for k in ("scheduled", "ok", "errors", "error_kinds", "achieved_ok_rps",
                                          "p50_ms", "p99_ms", "max_ms", "send_behind_s")},
        "command": " ".join(["python", "bench/bench_outage.py", *sys.argv[1:]]),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s, open loop")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds of load")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--kill-at", type=float, default=5.0, help="seconds into the measured phase")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--spool-events", type=int, default=50_000, help="detection.spool.max_events")
    parser.add_argument("--settle", type=float, default=120.0, help="most seconds to wait for the spool to empty")
    parser.add_argument("--spools", default="memory,disk",
                        help="spool variants run in turns: memory (in memory only), disk (detection.spool.disk on)")
    parser.add_argument("--rounds", type=int, default=1, help="turns over the variants")
    parser.add_argument("--py-spy", action="store_true",
                        help="profile the gateway's workers with py-spy (pip install py-spy) during the load")
    parser.add_argument("--out", help="also write the JSON report here (and its table as .md)")
    args = parser.parse_args(argv)
    if args.kill_at + args.outage >= args.duration:
        parser.error("--kill-at + --outage must end before --duration: the flush is measured under load")
    return args


def markdown(runs: list[dict]) -> str:
    rows = ["| spool | offered | Redis down | answered within 10 s / offered | served (gateway count) "
            "| served while down | events appended | lost | spool peak (events) | gateway CPU ms/req | simulator CPU ms/req | machine busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        cpu = run["cpu_ms_per_request"]
        rows.append(f"| {run['spool']} | {run['rate']:g} req/s | {run['outage_s']} s | {run['served_over_offered']} "
                    f"| {run['requests_served']:,} | {run['requests_served_during_outage']:,} "
                    f"| {run['events_appended']:,} | **{run['events_lost']}** | {run['spool_peak_events']:,} "
                    f"| {cpu['gateway']} | {cpu['upstream simulator']} | {run['machine_busy_pct']} % |")
    for run in runs:
        if run.get("profile"):
            rows += ["", f"Gateway workers' CPU samples by function (inclusive), spool {run['spool']}, "
                         f"{run['profile']['samples']:,} samples:", ""]
            rows += [f"- {share:.1%} {name}" for name, share in run["profile"]["share"].items()]
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    spools = [name for name in args.spools.split(",") if name]
    if not set(spools) <= {"memory", "disk"}:
        raise SystemExit("--spools takes memory and/or disk")
    children = pb.Children()
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="dg-bench-outage-") as tmp:
            for round_ in range(args.rounds):
                for spool in spools:
                    print(f"# round {round_ + 1}, spool {spool}", file=sys.stderr, flush=True)
                    runs.append(run(Path(tmp) / f"{spool}-{round_}", children, args, spool))
                    children.stop_all()
                    children.procs.clear()
    finally:
        children.stop_all()
    report = {"command": " ".join(["python", "bench/bench_outage.py", *sys.argv[1:]]), "runs": runs}
    table = markdown(runs)
    print(json.dumps(report, indent=2))
    print(table)
    if args.out:
        pb.write_report(args.out, report, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
