"""The lab's gateway: the simulator and `distillguard serve`, recording in features mode.

Detection runs in shadow mode with generous limits, so the gateway never refuses a tool
mid-run: the corpus records what each client does on its own, and the offline scorer
(lab/report.py) decides what detection would have done.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

# The fixed secret of the lab's gateway: key_ids in the corpus are HMAC(LAB_SECRET, raw key).
LAB_SECRET = "distillguard-lab-key-secret-v1"
SIMULATOR_SEED = 7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_config(upstream_port: int, recordings: Path) -> dict:
    """The serve config: features-mode recording, shadow ladder, limits no tool reaches."""
    roomy = {"requests": {"limit": 1_000_000, "window": "1m"},
             "tokens": {"limit": 1_000_000_000, "window": "1m"}, "concurrency": 512}
    return {
        "key_secret": LAB_SECRET,
        "log_level": "warning",
        "upstream": {"base_url": f"http://127.0.0.1:{upstream_port}/v1", "timeout": "300s"},
        "limits": {"tiers": {"default": roomy, "throttled": roomy}},
        "detection": {"ladder": {"shadow": True}, "linkage": {"enabled": False}},
        "recording": {"enabled": True, "directory": str(recordings), "bodies": "features",
                      "reorder_window": "120s"},
    }


@dataclass
class LabGateway:
    """The two processes and where they record; `stop` flushes the recorder (SIGTERM)."""

    workdir: Path
    latency_ms: float = 150.0
    tokens_per_second: float = 400.0

    def __post_init__(self) -> None:
        self.recordings = self.workdir / "recordings"
        self.upstream_port = free_port()
        self.port = free_port()
        self.processes: list[subprocess.Popen] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.recordings, ignore_errors=True)  # a reused workdir must not mix in older runs
        config = self.workdir / "gateway.yaml"
        config.write_text(yaml.safe_dump(gateway_config(self.upstream_port, self.recordings)))
        env = {**os.environ, "DISTILLGUARD_HOME": str(self.workdir / "home")}
        log = open(self.workdir / "gateway.log", "ab")  # noqa: SIM115 - kept open for the children
        command = [sys.executable, "-m", "service.cli"]
        self.processes.append(subprocess.Popen(
            [*command, "mock-upstream", "--port", str(self.upstream_port), "--seed", str(SIMULATOR_SEED),
             "--latency-ms", str(self.latency_ms), "--tokens-per-second", str(self.tokens_per_second)],
            env=env, stdout=log, stderr=log))
        _wait_http(f"http://127.0.0.1:{self.upstream_port}/v1/models", self.processes[-1])
        self.processes.append(subprocess.Popen(
            [*command, "serve", "--config", str(config), "--port", str(self.port)],
            env=env, stdout=log, stderr=log))
        _wait_http(f"http://127.0.0.1:{self.port}/v1/models", self.processes[-1],
                   headers={"authorization": "Bearer sk-lab-readiness-probe"})

    def stop(self) -> None:
        """Gateway first (its recorder writes every waiting line on SIGTERM), then the simulator."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _wait_http(url: str, process: subprocess.Popen, headers: dict | None = None, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[3]} exited with {process.returncode}; see the lab's gateway.log")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")
