"""Where a request's key is found, and key_id: HMAC-SHA256(secret, key)[:16], the only
identity of a key anywhere outside the request."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess

from service.keys import raw_key_from_headers
from tests.support.processes import _cli


def run_key_id(*args: str, stdin: str | None = None, env: dict | None = None) -> list[str]:
    result = subprocess.run(_cli("key-id", *args), input=stdin, capture_output=True, text=True, timeout=30,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def expected(secret: str, raw: str) -> str:
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def test_bearer_then_x_api_key_then_api_key():
    assert raw_key_from_headers([(b"authorization", b"Bearer sk-a"), (b"x-api-key", b"sk-b")]) == "sk-a"
    assert raw_key_from_headers([(b"x-api-key", b"sk-b"), (b"api-key", b"sk-c")]) == "sk-b"
    assert raw_key_from_headers([(b"api-key", b"sk-c")]) == "sk-c"
    assert raw_key_from_headers([(b"authorization", b"Basic abc")]) is None
    assert raw_key_from_headers([(b"authorization", b"Bearer ")]) is None
    assert raw_key_from_headers([]) is None


def test_key_id_prints_the_hmac_of_each_argument(tmp_path):
    env = {"DISTILLGUARD_KEY_SECRET": "s3cret", "DISTILLGUARD_HOME": str(tmp_path)}
    assert run_key_id("sk-one", "sk-two", env=env) == [expected("s3cret", "sk-one"), expected("s3cret", "sk-two")]


def test_key_id_reads_standard_input_in_order(tmp_path):
    env = {"DISTILLGUARD_KEY_SECRET": "s3cret", "DISTILLGUARD_HOME": str(tmp_path)}
    raws = [f"sk-{i}" for i in range(50)]
    assert run_key_id(stdin="\n".join(raws) + "\n", env=env) == [expected("s3cret", r) for r in raws]


def test_a_generated_secret_is_kept_so_every_command_agrees(tmp_path):
    env = {"DISTILLGUARD_HOME": str(tmp_path)}
    os.environ.pop("DISTILLGUARD_KEY_SECRET", None)
    first = run_key_id("sk-x", env=env)
    second = run_key_id("sk-x", env=env)
    assert first == second
    secret_file = tmp_path / "key_secret"
    assert secret_file.exists() and oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert first == [expected(secret_file.read_text().strip(), "sk-x")]
    other = tmp_path / "other"
    assert run_key_id("sk-x", env={"DISTILLGUARD_HOME": str(other)}) != first
