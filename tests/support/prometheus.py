"""A real Prometheus (Debian's `prometheus` package) for the tests: its own loopback port, a
temporary config and TSDB directory, short scrape and evaluation intervals, stopped by PID."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from tests.support.processes import LOOPBACK, ensure_debian_package, free_port, stop_process, wait_until


def ensure_prometheus_installed() -> None:
    """Install Debian's prometheus (it brings promtool) when missing."""
    ensure_debian_package("prometheus", ("prometheus", "promtool"))


@dataclass
class Prometheus:
    port: int
    proc: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def api(self, path: str, **params) -> dict | list:
        """`data` of one HTTP API answer (`/api/v1/<path>`); an error answer fails the call."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def alerts(self, name: str) -> list[dict]:
        return [alert for alert in self.api("alerts")["alerts"] if alert["labels"]["alertname"] == name]

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text()

    def stop(self) -> None:
        stop_process(self.proc)


def start_prometheus(targets: dict[str, list[str]], rule_files: list[Path], interval: str = "1s",
                     alertmanagers: list[str] = ()) -> Prometheus:
    """Prometheus scraping `targets` ({job: [host:port, ...]}) and evaluating `rule_files`
    every `interval`, sending firing alerts to `alertmanagers` (host:port, Alertmanager's v2
    API); ready once its HTTP API answers."""
    ensure_prometheus_installed()
    workdir = Path(tempfile.mkdtemp(prefix="dg-prometheus-"))
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addresses}]}
                           for job, addresses in targets.items()],
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"api_version": "v2",
                                                 "static_configs": [{"targets": list(alertmanagers)}]}]}
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log_file:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    prometheus = Prometheus(port, proc, workdir)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited ({proc.returncode}): {prometheus.log()}")
        return httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200

    try:
        wait_until(ready, timeout=30, what="prometheus ready")
    except Exception:
        prometheus.stop()
        raise
    return prometheus
