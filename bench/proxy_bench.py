#!/usr/bin/env python3
"""Proxy overhead and throughput: distillguard against a bare upstream, nginx and LiteLLM.

One run starts a zero-latency OpenAI-compatible upstream (nginx returning a fixed
chat.completion) and drives the same non-streaming request mix against each target:

  direct         the upstream itself (the floor)
  nginx          nginx proxy_pass to the upstream, keepalive pool
  litellm        LiteLLM proxy (2 workers, no database) with the upstream as an openai/ model
  dg1, dg2       distillguard serve, 1 or 2 workers, Redis store (a redis-server child)
  dg1-embedded   distillguard serve, 1 worker, embedded store (no Redis)
  dg2-embedded   distillguard serve, 2 workers, embedded store (the gateway may refuse this)

For each target: maximum throughput (closed loop, wrk) and latency at fixed rates (open
loop, bench/openloop.py). Prints markdown tables and writes JSON.

    python bench/proxy_bench.py [--targets direct,nginx,litellm,dg1,dg2,dg1-embedded,dg2-embedded]
                                [--duration S] [--out bench/results/proxy.json]

All traffic stays on 127.0.0.1. Every child process is started in its own session and
stopped by its process-group id at the end, on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MIX = BENCH / "request_mix.jsonl"
WRK_SCRIPT = BENCH / "wrk_chat.lua"
OPENLOOP = BENCH / "openloop.py"
LITELLM_VENV = Path(os.environ.get("LITELLM_VENV", "/tmp/dg-bench/litellm-venv"))
MODEL = "bench-model"
ALL_TARGETS = ["direct", "nginx", "litellm", "dg1", "dg2", "dg1-embedded", "dg2-embedded"]
LOOPBACK = "127.0.0.1"


class TargetUnavailable(Exception):
    """A target that cannot be measured; the message says why."""


# --------------------------------------------------------------------------- processes


def child_env(**extra: str) -> dict[str, str]:
    """The environment for children: no HTTP proxies (all traffic is loopback)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


class Children:
    """Every process this run starts, each in its own session (process group = its pid)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        handle = open(log, "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    env=env or child_env(), cwd=str(cwd or ROOT), start_new_session=True)
        finally:
            handle.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM the child's process group (its pid), then SIGKILL it if it lingers."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            if _wait_group_gone(proc, wait):
                break
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            self.stop(proc)


def _wait_group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Until no process of the child's group is left (the leader reaped by us, others by init)."""
    deadline = time.monotonic() + timeout
    while True:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def chat_ok(base_url: str, timeout: float = 5.0) -> tuple[bool, str]:
    body = MIX.read_text().splitlines()[0].encode()
    request = urllib.request.Request(
        base_url + "/v1/chat/completions", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench-0"},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            payload = response.read()
            ok = response.status == 200 and b'"choices"' in payload
            return ok, f"HTTP {response.status}: {payload[:200]!r}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read()[:300]!r}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def wait_ready(name: str, base_url: str, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Until a real chat completion through the target succeeds, or the target dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TargetUnavailable(f"{name} exited with code {proc.returncode} before ready: {tail(log, 6)}")
        ok, last = chat_ok(base_url)
        if ok:
            # A few more, so every worker process has answered at least once.
            for _ in range(20):
                chat_ok(base_url)
            return
        time.sleep(0.25)
    raise TargetUnavailable(f"{name} not ready after {timeout:.0f}s (last: {last}); log: {tail(log, 6)}")


def wait_redis(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetUnavailable(f"redis-server exited with code {proc.returncode}: {tail(log, 6)}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TargetUnavailable(f"redis-server not answering PING after {timeout:.0f}s")


def start_redis(children: Children, run_dir: Path, port: int, appendonly: bool = False) -> subprocess.Popen:
    """redis-server on `port`, its files in `run_dir`; with `appendonly`, an append-only file
    synced every second, so a killed (not crashed) server restarts with what it acknowledged."""
    log = run_dir / "redis.log"
    durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if appendonly else ["--appendonly", "no"]
    proc = children.start("redis-server", [
        "redis-server", "--bind", LOOPBACK, "--port", str(port), "--save", "", *durability, "--dir", str(run_dir),
        "--protected-mode", "yes", "--logfile", ""], log, cwd=run_dir)
    wait_redis(port, proc, log, timeout=60)
    return proc


BIG = 1_000_000_000


def gateway_config(upstream: str, **sections) -> dict:
    """A benchmark gateway's config (JSON is YAML): limits far above anything a benchmark can
    send, and `sections` (detection, recording, ...) on top."""
    return {
        "log_level": "warning",
        "key_secret": "bench-key-secret-not-for-production",
        "upstream": {"base_url": upstream},
        "limits": {"tiers": {
            "default": {"requests": {"limit": BIG, "window": 60}, "tokens": {"limit": BIG * 1000, "window": 60},
                        "concurrency": BIG},
            "throttled": {"requests": {"limit": 10, "window": 60}, "tokens": {"limit": 20000, "window": 60},
                          "concurrency": 2},
        }},
        **sections,
    }


def gateway_env(home: Path, **extra: str) -> dict[str, str]:
    """A gateway child's environment: this checkout's code first, its own DISTILLGUARD_HOME, and
    no stray DISTILLGUARD_* settings from the caller's shell (only `extra`)."""
    path = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    env = {name: value for name, value in child_env(PYTHONPATH=path).items() if not name.startswith("DISTILLGUARD_")}
    env.update(DISTILLGUARD_HOME=str(home), **extra)
    return env


_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$")


def scrape(url: str, attempts: int = 3, timeout: float = 15.0) -> str:
    """A gateway's /metrics, tried again on a timeout (a busy shared machine can be slow to answer)."""
    for attempt in range(attempts):
        try:
            with _opener.open(f"{url}/metrics", timeout=timeout) as response:
                return response.read().decode()
        except OSError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def metric_sum(text: str, name: str, labels: str = "") -> float:
    """Sum of every sample of `name` in a /metrics text whose labels contain `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name and labels in (match.group(2) or ""):
            total += float(match.group(3))
    return total


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (the gateway and its
    workers, the recorder's thread included), from /proc."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def write_report(path: str, report: dict, tables: str) -> None:
    """The JSON report at `path` and its tables next to it (.md)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(tables + "\n")


# --------------------------------------------------------------------------- nginx


def render_nginx(template: str, run_dir: Path, **values: int) -> Path:
    text = (BENCH / "nginx" / template).read_text().replace("@RUN_DIR@", str(run_dir))
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"unrendered placeholder {leftover.group(0)} in {template}")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(text)
    return conf


def start_nginx(children: Children, name: str, template: str, run_dir: Path, **ports: int) -> subprocess.Popen:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = render_nginx(template, run_dir, **ports)
    log = run_dir / "stdout.log"
    test = subprocess.run([nginx, "-t", "-q", "-p", str(run_dir), "-c", str(conf)], capture_output=True, text=True)
    if test.returncode != 0:
        raise TargetUnavailable(f"nginx -t failed for {template}: {test.stderr.strip()}")
    return children.start(name, [nginx, "-p", str(run_dir), "-c", str(conf)], log)


# --------------------------------------------------------------------------- targets


class Target:
    name = ""
    description = ""
    ready_timeout = 30.0

    def __init__(self, ctx: "Context") -> None:
        self.ctx = ctx
        self.procs: list[subprocess.Popen] = []
        self.info: dict = {}

    def prerequisite(self) -> str | None:
        """None when the target can run, else why not."""
        return None

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self.ctx.children.stop(proc)
        self.procs = []


class Direct(Target):
    name = "direct"
    description = "nginx upstream itself: fixed chat.completion JSON, no proxy hop"

    def start(self) -> str:
        return self.ctx.upstream_url


class NginxProxy(Target):
    name = "nginx"
    description = "nginx proxy_pass to the upstream (keepalive pool, 2 workers)"

    def start(self) -> str:
        port = free_port()
        run_dir = self.ctx.tmp / "nginx-proxy"
        run_dir.mkdir(exist_ok=True)
        proc = start_nginx(self.ctx.children, "nginx-proxy", "proxy.conf", run_dir,
                           LISTEN_PORT=port, UPSTREAM_PORT=self.ctx.upstream_port)
        self.procs.append(proc)
        url = f"http://{LOOPBACK}:{port}"
        wait_ready(self.name, url, proc, run_dir / "error.log", self.ready_timeout)
        return url


class LiteLLM(Target):
    name = "litellm"
    description = "LiteLLM proxy, 2 uvicorn workers, no database, openai/ model -> upstream"
    ready_timeout = 180.0

    def prerequisite(self) -> str | None:
        if not (LITELLM_VENV / "bin" / "litellm").exists():
            return f"LiteLLM not installed in {LITELLM_VENV}: run `bash bench/setup_litellm.sh`"
        return None

    def start(self) -> str:
        port = free_port()
        run_dir = self.ctx.tmp / "litellm"
        run_dir.mkdir(exist_ok=True)
        config = run_dir / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {self.ctx.upstream_url}/v1\n"
            "      api_key: sk-upstream-bench\n"
            # As LiteLLM's own proxy-overhead benchmark config: no callbacks, no retries.
            "litellm_settings:\n"
            "  drop_params: true\n"
            "  set_verbose: false\n"
            "  callbacks: []\n"
            "  num_retries: 0\n"
            "  request_timeout: 30\n"
            "general_settings:\n"
            # No auth, so clients send the same sk-bench-<n> keys as to every other target
            # (virtual keys would need LiteLLM's database).
            "  dangerously_permit_weak_or_unset_master_key: true\n"
        )
        log = run_dir / "litellm.log"
        env = child_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", DISABLE_ADMIN_UI="True",
                        HOME=str(run_dir))
        for var in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
            env.pop(var, None)
        argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", LOOPBACK,
                "--port", str(port), "--num_workers", "2"]
        self.info["command"] = " ".join(shlex.quote(a) for a in argv)
        proc = self.ctx.children.start("litellm", argv, log, env=env, cwd=run_dir)
        self.procs.append(proc)
        url = f"http://{LOOPBACK}:{port}"
        wait_ready(self.name, url, proc, log, self.ready_timeout)
        return url


def distillguard_command(override: str | None) -> tuple[list[str] | None, str]:
    """How to run `distillguard`: --dg-cmd, the installed CLI, or `python -m service.cli` from the tree."""
    if override:
        return shlex.split(override), f"--dg-cmd {override}"
    exe = shutil.which("distillguard")
    if exe:
        return [exe], exe
    if (ROOT / "service" / "cli" / "__init__.py").exists():
        probe = subprocess.run([sys.executable, "-c", "import service.cli, service.app"], cwd=ROOT,
                               env=child_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        if probe.returncode == 0:
            return [sys.executable, "-m", "service.cli"], f"{sys.executable} -m service.cli (CLI not installed)"
        return None, f"`distillguard` not on PATH and service.cli not importable: {probe.stderr.strip()[-300:]}"
    return None, "`distillguard` not on PATH (pip install -e .) and no service/cli/"


class Distillguard(Target):
    ready_timeout = 60.0

    def __init__(self, ctx: "Context", workers: int, redis: bool) -> None:
        super().__init__(ctx)
        self.workers = workers
        self.redis = redis
        self.name = f"dg{workers}" + ("" if redis else "-embedded")
        store = "Redis store (redis-server child)" if redis else "embedded store, no Redis"
        self.description = f"distillguard serve, {workers} worker(s), {store}"

    def prerequisite(self) -> str | None:
        command, how = self.ctx.dg_command
        if command is None:
            return how
        if self.redis and not shutil.which("redis-server"):
            return "redis-server not installed (apt-get install redis-server)"
        return None

    def start(self) -> str:
        run_dir = self.ctx.tmp / self.name
        run_dir.mkdir(exist_ok=True)
        redis_url = None
        if self.redis:
            redis_port = free_port()
            self.procs.append(start_redis(self.ctx.children, run_dir, redis_port))
            redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
        port = free_port()
        upstream = f"{self.ctx.upstream_url}/v1"
        config_path = run_dir / "distillguard.yaml"
        config_path.write_text(json.dumps(gateway_config(upstream), indent=2) + "\n")
        command, _ = self.ctx.dg_command
        argv = command + ["serve", "--config", str(config_path), "--host", LOOPBACK, "--port", str(port),
                          "--workers", str(self.workers)]
        if redis_url:
            argv += ["--redis-url", redis_url]
        env = gateway_env(run_dir / "home", DISTILLGUARD_UPSTREAM__BASE_URL=upstream)
        self.info["command"] = " ".join(shlex.quote(a) for a in argv)
        log = run_dir / "distillguard.log"
        proc = self.ctx.children.start(self.name, argv, log, env=env, cwd=ROOT)
        self.procs.append(proc)
        url = f"http://{LOOPBACK}:{port}"
        wait_ready(self.name, url, proc, log, self.ready_timeout)
        return url


def make_target(ctx: "Context", name: str) -> Target:
    simple = {"direct": Direct, "nginx": NginxProxy, "litellm": LiteLLM}
    if name in simple:
        return simple[name](ctx)
    dg = {"dg1": (1, True), "dg2": (2, True), "dg1-embedded": (1, False), "dg2-embedded": (2, False)}
    if name in dg:
        return Distillguard(ctx, *dg[name])
    raise SystemExit(f"unknown target {name!r}; choose from {','.join(ALL_TARGETS)}")


# --------------------------------------------------------------------------- load generators


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return total - idle, total


def idle_busy_pct(seconds: float = 1.0) -> float:
    """How busy the machine is with nothing of ours under load (other users' work shows here)."""
    busy0, total0 = cpu_times()
    time.sleep(seconds)
    busy1, total1 = cpu_times()
    return round(100.0 * (busy1 - busy0) / max(total1 - total0, 1.0), 1)


def wait_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Until the machine is idle below `threshold`% (others' jobs share it), at most `max_wait` s."""
    started = time.monotonic()
    busy = idle_busy_pct()
    while busy >= threshold and time.monotonic() - started < max_wait:
        busy = idle_busy_pct()
    waited = round(time.monotonic() - started - 1.0, 1)
    if busy >= threshold:
        print(f"# warning: machine {busy:.0f}% busy before this target (other work); measuring anyway",
              file=sys.stderr)
    return busy, max(waited, 0.0)


def loadgen_prefix(args: argparse.Namespace, nice: int) -> list[str]:
    prefix: list[str] = []
    if args.loadgen_cpus:
        prefix += ["taskset", "-c", args.loadgen_cpus]
    if nice and (nice > 0 or os.geteuid() == 0):
        prefix += ["nice", "-n", str(nice)]
    return prefix


def run_measured(argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a load generator; also how busy the machine and the generator itself were."""
    busy0, total0 = cpu_times()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=child_env())
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = cpu_times()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return done, {
        "wall_s": round(wall, 2),
        "machine_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1.0), 1),
        "loadgen_cpu_pct": round(100.0 * cpu / wall, 1),  # of one core
    }


def run_wrk(url: str, seconds: float, args: argparse.Namespace) -> dict:
    argv = loadgen_prefix(args, args.wrk_nice) + [
        "wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), url, "--", str(MIX), str(args.keys),
    ]
    done, load = run_measured(argv, timeout=seconds + 60)
    line = next((row for row in done.stdout.splitlines() if row.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise TargetUnavailable(f"wrk failed (exit {done.returncode}): {(done.stderr or done.stdout)[-400:]}")
    raw = json.loads(line[len("WRK_JSON "):])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    ok = max(raw["requests"] - raw["errors"]["status"], 0)
    return {
        "command": " ".join(shlex.quote(a) for a in argv),
        "requests": raw["requests"],
        "duration_s": round(duration, 3),
        "rps": round(raw["requests"] / duration, 1),
        "ok_rps": round(ok / duration, 1),
        "errors": errors,
        "error_kinds": {k: v for k, v in raw["errors"].items() if v},
        "closed_loop_latency_ms": {k: round(v / 1000.0, 3) for k, v in raw["latency_us"].items()},
        **load,
    }


def run_openloop(url: str, args: argparse.Namespace) -> dict:
    argv = loadgen_prefix(args, args.openloop_nice) + [
        sys.executable, str(OPENLOOP), "--url", url, "--rates", ",".join(f"{r:g}" for r in args.rates),
        "--duration", f"{args.duration:g}", "--warmup", f"{args.warmup:g}", "--keys", str(args.keys),
        "--mix", str(MIX), "--timeout", f"{args.request_timeout:g}",
    ]
    budget = len(args.rates) * (args.duration + args.warmup + args.request_timeout + 10) + 30
    done, load = run_measured(argv, timeout=budget)
    if done.returncode != 0:
        raise TargetUnavailable(f"openloop failed (exit {done.returncode}): {done.stderr[-400:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["command"] = " ".join(shlex.quote(a) for a in argv)
    report.update(load)
    return report


# --------------------------------------------------------------------------- report


def fmt_ms(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value  # "error": that percentile fell on a failed request
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def fmt_delta(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if abs(value) < 100 else f"{value:+,.0f}"


def delta(a, b) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a - b
    return None


def by_rate(result: dict) -> dict[float, dict]:
    return {r["rate"]: r for r in (result.get("openloop") or {}).get("results", [])}


def markdown(report: dict) -> str:
    results = report["results"]
    rates = report["settings"]["rates"]
    litellm_rps = (results.get("litellm") or {}).get("wrk", {}).get("ok_rps")
    direct = by_rate(results.get("direct") or {})
    rate_cols = [f"{r:g} rps p50 / p99 (ms)" for r in rates]
    lines = [
        "| target | max rps (wrk) | × LiteLLM | " + " | ".join(rate_cols) + " | errors |",
        "|---|---:|---:|" + "---:|" * len(rates) + "---:|",
    ]
    skipped = []
    for name, result in results.items():
        if result.get("status") != "ok":
            skipped.append(f"- **{name}**: {result.get('status')} — {result.get('reason')}")
            continue
        wrk = result["wrk"]
        ratio = "–"
        if litellm_rps:
            ratio = wrk["ok_rps"] / litellm_rps
            ratio = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"
        cells, errors = [], wrk["errors"]
        for rate in rates:
            r = by_rate(result).get(rate)
            if r is None:
                cells.append("–")
                continue
            errors += r["errors"]
            mark = f" ({r['errors']} err)" if r["errors"] else ""
            cells.append(f"{fmt_ms(r['p50_all_ms'])} / {fmt_ms(r['p99_all_ms'])}{mark}")
        lines.append(f"| {name} | {wrk['ok_rps']:,.0f} | {ratio} | " + " | ".join(cells) + f" | {errors} |")
    lines += ["", "Added latency over `direct` at the same rate, p50 / p99 (ms):", ""]
    lines += ["| target | " + " | ".join(f"{r:g} rps" for r in rates) + " |", "|---|" + "---:|" * len(rates)]
    for name, result in results.items():
        if result.get("status") != "ok" or name == "direct":
            continue
        cells = []
        for rate in rates:
            r, d = by_rate(result).get(rate), direct.get(rate)
            if not r or not d:
                cells.append("–")
            else:
                cells.append(f"{fmt_delta(delta(r['p50_all_ms'], d['p50_all_ms']))} / "
                             f"{fmt_delta(delta(r['p99_all_ms'], d['p99_all_ms']))}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Load generator and machine CPU (of 2 cores; 100% = one core):", ""]
    lines += ["| target | busy before (idle) | wrk CPU | machine busy during wrk | open-loop client CPU "
              "| machine busy during open loop |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        if result.get("status") != "ok":
            continue
        wrk, ol = result["wrk"], result["openloop"]
        lines.append(f"| {name} | {result.get('background_busy_pct', 0):.0f}% | {wrk['loadgen_cpu_pct']:.0f}% | {wrk['machine_busy_pct']:.0f}% | "
                     f"{ol['loadgen_cpu_pct']:.0f}% | {ol['machine_busy_pct']:.0f}% |")
    if skipped:
        lines += ["", "Not measured:", ""] + skipped
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


class Context:
    def __init__(self, children: Children, tmp: Path, args: argparse.Namespace) -> None:
        self.children = children
        self.tmp = tmp
        self.args = args
        self.upstream_port = 0
        self.upstream_url = ""
        self.dg_command = distillguard_command(args.dg_cmd)


def version_of(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=child_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else None


def environment(ctx: Context) -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    litellm_py = LITELLM_VENV / "bin" / "python"
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "nginx": version_of(["nginx", "-v"]),
        "wrk": version_of(["wrk", "--version"]),
        "redis": version_of(["redis-server", "--version"]),
        "litellm": version_of([str(litellm_py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"])
        if litellm_py.exists() else None,
        "distillguard_command": ctx.dg_command[1],
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated, from: " + ",".join(ALL_TARGETS))
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds for wrk and for each open-loop rate")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before wrk and before each rate")
    p.add_argument("--rates", default="50,200,500", help="open-loop rates, req/s")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--keys", type=int, default=300, help="distinct client keys sk-bench-0..N-1")
    p.add_argument("--request-timeout", type=float, default=10.0, help="open-loop per-request timeout (s)")
    p.add_argument("--loadgen-cpus", default="", help="taskset CPU list for wrk/openloop (default: unpinned)")
    p.add_argument("--wrk-nice", type=int, default=0, help="nice for wrk (default 0: competes evenly)")
    p.add_argument("--openloop-nice", type=int, default=-5,
                   help="nice for the open-loop client (default -5 when root, so it sends and timestamps on time)")
    p.add_argument("--quiet-threshold", type=float, default=15.0,
                   help="before each target, wait until the idle machine is less busy than this %% ...")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="... for at most this many seconds")
    p.add_argument("--dg-cmd", default=None, help="command that runs distillguard (default: `distillguard` on PATH, "
                                                  "else python -m service.cli from this tree)")
    p.add_argument("--out", default=str(BENCH / "results" / "proxy.json"), help="JSON results file")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with configs and logs")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.targets:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t!r}; choose from {','.join(ALL_TARGETS)}")
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            p.error(f"{tool} not installed (apt-get install {tool})")
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="dg-proxy-bench-"))
    ctx = Context(children, tmp, args)
    report: dict = {
        "settings": {
            "targets": args.targets, "duration_s": args.duration, "warmup_s": args.warmup, "rates": args.rates,
            "wrk_threads": args.threads, "wrk_connections": args.connections, "keys": args.keys,
            "request_timeout_s": args.request_timeout, "loadgen_cpus": args.loadgen_cpus or "unpinned",
            "wrk_nice": args.wrk_nice, "openloop_nice": args.openloop_nice,
            "quiet_threshold_pct": args.quiet_threshold, "quiet_wait_s": args.quiet_wait,
            "mix": [json.loads(line) for line in MIX.read_text().splitlines() if line.strip()],
        },
        "environment": environment(ctx),
        "results": {},
    }
    interrupted = False
    started = time.monotonic()
    try:
        # The shared zero-latency upstream, for every target.
        ctx.upstream_port = free_port()
        run_dir = tmp / "nginx-upstream"
        run_dir.mkdir()
        upstream = start_nginx(children, "nginx-upstream", "direct.conf", run_dir, LISTEN_PORT=ctx.upstream_port)
        ctx.upstream_url = f"http://{LOOPBACK}:{ctx.upstream_port}"
        wait_ready("upstream", ctx.upstream_url, upstream, run_dir / "error.log", 15)
        print(f"# upstream nginx on {ctx.upstream_url} (pid {upstream.pid}); temp dir {tmp}", file=sys.stderr)

        for name in args.targets:
            target = make_target(ctx, name)
            entry: dict = {"description": target.description}
            report["results"][name] = entry
            reason = target.prerequisite()
            if reason:
                entry.update(status="skipped", reason=reason)
                print(f"# {name}: skipped — {reason}", file=sys.stderr)
                continue
            entry["background_busy_pct"], entry["waited_for_quiet_s"] = wait_quiet(args.quiet_threshold, args.quiet_wait)
            t0 = time.monotonic()
            try:
                print(f"# {name}: starting ({target.description})", file=sys.stderr)
                try:
                    url = target.start()
                except TargetUnavailable as exc:
                    entry.update(status="not started", reason=str(exc))
                    print(f"# {name}: not started — {exc}", file=sys.stderr)
                    continue
                entry["startup_s"] = round(time.monotonic() - t0, 1)
                print(f"# {name}: ready on {url} after {entry['startup_s']}s; wrk warm-up", file=sys.stderr)
                run_wrk(url, args.warmup, args)
                entry["wrk"] = run_wrk(url, args.duration, args)
                print(f"# {name}: wrk {entry['wrk']['ok_rps']:,.0f} ok req/s, errors {entry['wrk']['errors']}; "
                      f"open loop at {args.rates}", file=sys.stderr)
                entry["openloop"] = run_openloop(url, args)
                for r in entry["openloop"]["results"]:
                    print(f"#   {r['rate']:g} req/s: p50 {r['p50_all_ms']} ms, p99 {r['p99_all_ms']} ms, errors {r['errors']}",
                          file=sys.stderr)
                entry["status"] = "ok"
            except TargetUnavailable as exc:
                entry.update(status="failed", reason=str(exc))
                print(f"# {name}: failed — {exc}", file=sys.stderr)
            finally:
                entry.update(target.info)
                target.stop()
                time.sleep(1.0)  # let the machine settle between targets
    except KeyboardInterrupt:
        interrupted = True
        print("# interrupted; stopping children", file=sys.stderr)
        for entry in report["results"].values():
            if "status" not in entry:
                entry.update(status="interrupted", reason="run interrupted (Ctrl-C or SIGTERM)")
    finally:
        children.stop_all()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    report["total_runtime_s"] = round(time.monotonic() - started, 1)
    report["interrupted"] = interrupted
    table = markdown(report)
    report["markdown"] = table
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\n# results: {out} ({report['total_runtime_s']}s)", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
