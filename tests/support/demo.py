"""`distillguard demo` as a process for the tests: the gateway on the embedded store in front
of the model-mode simulator, with a viewer token for the admin API and a known key secret."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import httpx
import openai
import yaml

from service.console.auth import hash_token
from service.keys import KeyHasher
from tests.support.processes import LOOPBACK, _cli, free_port, stop_process, wait_until

# The demo is one process that imports the gateway and the simulator: slow on a loaded machine.
START_TIMEOUT_S = 90


class Demo:
    """One running `distillguard demo`; its state (key secret, embedded store) lives in `tmp_path`."""

    def __init__(self, tmp_path: Path) -> None:
        self.token, self.secret = secrets.token_urlsafe(24), secrets.token_hex(32)
        config = {"key_secret": self.secret,
                  "admin": {"reviewers": [{"name": "test", "role": "viewer", "token_sha256": hash_token(self.token)}]}}
        config_path = tmp_path / "demo.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.port, upstream_port = free_port(), free_port()
        self.log_path = tmp_path / "demo.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                _cli("demo", "--config", str(config_path), "--port", str(self.port),
                     "--upstream-port", str(upstream_port)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**env, "DISTILLGUARD_HOME": str(tmp_path)},
            )
        self.url = f"http://{LOOPBACK}:{self.port}"
        try:
            wait_until(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200,
                       timeout=START_TIMEOUT_S, what="demo up")
        except TimeoutError:
            self.stop()
            raise

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def admin(self, path: str) -> dict:
        response = httpx.get(f"{self.url}/admin/api{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=10)
        response.raise_for_status()
        return response.json()

    def key_id(self, raw_key: str) -> str:
        return KeyHasher(self.secret.encode()).key_id(raw_key)

    def stop(self) -> None:
        stop_process(self.proc)
