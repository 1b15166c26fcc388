"""Real processes for the tests: redis-server (alone or as a cluster), the upstream simulator
and the gateway, each on a free loopback port and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import yaml

LOOPBACK = "127.0.0.1"
# A bound on a gateway's or scorer's start (importing scikit-learn and loading the forest take
# ~25 s on a loaded shared machine), not a timing assertion.
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port + 10000))
            except OSError:
                continue
        return port


def ensure_debian_package(package: str, binaries: tuple[str, ...]) -> None:
    """Install a Debian package when one of its binaries is missing, as scripts/test.sh does."""
    if all(shutil.which(binary) for binary in binaries):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"{package} is missing and the tests are not root: apt-get install {package}")
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", package],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def ensure_redis_installed() -> None:
    """Install Debian's redis-server when the binary is missing (the tests need a real one)."""
    ensure_debian_package("redis-server", ("redis-server", "redis-cli"))


def wait_until(check, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing is still starting
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s (last error: {last_error})")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class RedisServer:
    port: int
    workdir: Path
    proc: subprocess.Popen | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1)
        wait_until(client.ping, what=f"redis on {self.port}")
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def pause(self) -> None:
        """Freeze the server (a stuck Redis: the socket stays open, nothing answers)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


def start_redis(extra: list[str] | None = None) -> RedisServer:
    ensure_redis_installed()
    return RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="dg-redis-")), extra=extra or []).start()


@dataclass
class RedisCluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(masters: int = 3) -> RedisCluster:
    ensure_redis_installed()
    nodes = []
    for _ in range(masters):
        port = free_cluster_port()
        workdir = Path(tempfile.mkdtemp(prefix="dg-cluster-"))
        nodes.append(
            RedisServer(port, workdir, extra=["--cluster-enabled", "yes", "--cluster-config-file",
                                               str(workdir / "nodes.conf")]).start()
        )
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"{LOOPBACK}:{n.port}" for n in nodes),
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
    )
    for node in nodes:
        client = redis.Redis(host=LOOPBACK, port=node.port)
        wait_until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), what="cluster ok")
        client.close()
    return RedisCluster(nodes)


def _cli(*args: str) -> list[str]:
    exe = shutil.which("distillguard")
    return [exe, *args] if exe else [sys.executable, "-m", "service.cli", *args]


@dataclass
class MockUpstream:
    port: int
    proc: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def stats(self) -> dict:
        return httpx.get(f"http://{LOOPBACK}:{self.port}/mock/stats", timeout=5).json()

    def reset(self) -> None:
        httpx.post(f"http://{LOOPBACK}:{self.port}/mock/reset", timeout=5)

    def stop(self) -> None:
        stop_process(self.proc)


def start_mock_upstream(*args: str) -> MockUpstream:
    """The simulator with its fixed 16-word answers unless `args` choose `--answers model`."""
    port = free_port()
    answers = () if "--answers" in args else ("--answers", "fixed")
    proc = subprocess.Popen(
        _cli("mock-upstream", "--port", str(port), *answers, *args),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    upstream = MockUpstream(port, proc)
    wait_until(lambda: httpx.get(f"{upstream.base_url}/models", timeout=1).status_code == 200, what="mock upstream")
    return upstream


@dataclass
class Gateway:
    port: int
    proc: subprocess.Popen
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text()

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def stop(self) -> None:
        stop_process(self.proc)


def start_gateway(config: dict, *, workers: int = 1, redis_url: str | None = None, env: dict | None = None) -> Gateway:
    """`distillguard serve` with `config` written as its YAML file."""
    workdir = Path(tempfile.mkdtemp(prefix="dg-gateway-"))
    config_path = workdir / "distillguard.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "gateway.log"
    port = free_port()
    args = ["serve", "--config", str(config_path), "--port", str(port), "--workers", str(workers)]
    if redis_url:
        args += ["--redis-url", redis_url]
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    process_env.update({"DISTILLGUARD_HOME": str(workdir), **(env or {})})
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            _cli(*args), stdout=log_file, stderr=subprocess.STDOUT, env=process_env, start_new_session=True
        )
    gateway = Gateway(port, proc, config_path, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited ({proc.returncode}): {gateway.log()}")
        return httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200

    try:
        wait_until(ready, timeout=STARTUP_SECONDS, what="gateway /healthz")
    except Exception:
        gateway.stop()
        raise
    return gateway


@dataclass
class ScorerProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)


def start_scorer(config: dict, redis_url: str, *, name: str, metrics_port: int | None = None) -> ScorerProcess:
    """`distillguard scorer` with `config` as its YAML file; ready once it has claimed its shards."""
    workdir = Path(tempfile.mkdtemp(prefix="dg-scorer-"))
    config_path = workdir / "distillguard.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "scorer.log"
    args = ["scorer", "--config", str(config_path), "--redis-url", redis_url, "--name", name]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(_cli(*args), stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    scorer = ScorerProcess(name, proc, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"scorer exited: {scorer.log()}")
        return "owns shards" in scorer.log()

    try:
        wait_until(ready, timeout=STARTUP_SECONDS, what=f"scorer {name} running")
    except Exception:
        scorer.kill()
        raise
    return scorer
