"""Every `distillguard ...` command in README.md and docs/*.md is one argparse accepts, and
the documented commands on the gateway's shared state run for real against a real Redis."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from service.cli import build_parser
from tests.conftest import TEST_SECRET
from tests.support.processes import _cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
TABLE_COMMAND = re.compile(r"^\| `(distillguard [^`]+)`", re.M)
# The README's command table writes arguments as placeholders; each stands for a value of its kind.
PLACEHOLDERS = {
    "KEY_ID": "0123456789abcdef", "TPS": "200", "RAW_KEY...": "sk-example", "R": "abuse", "T": "throttled", "FILE": "day.jsonl",
    "URL": "http://127.0.0.1:8000", "N": "2", "C": "8", "L": "5", "S": "1", "H": "24", "NAME=KEYS": "hydra=20",
    "S.NAME=V": "hydra.network_size=50", "LABELS.jsonl": "labels.jsonl", "K": "3",
}


def fenced_commands(text: str) -> list[str]:
    """Commands in code blocks: continuation lines joined, comments, pipes and `&&` cut off."""
    commands = []
    for block in FENCE.findall(text):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in re.split(r"\s(?:&&|\||;)\s", line.split(" #")[0]):
                part = part.strip().removeprefix("$ ").strip()
                if part.startswith("distillguard "):
                    commands.append(part)
    return commands


def table_commands(text: str) -> list[str]:
    """The command table's usage lines, optional parts included: `[--x V\\|W]` -> `--x V`."""
    commands = []
    for usage in TABLE_COMMAND.findall(text):
        usage = re.sub(r"\\\|[^\s\]]+", "", usage).replace("[", "").replace("]", "").replace(" ...", "")
        commands.append(" ".join(PLACEHOLDERS.get(word, word) for word in usage.split()))
    return commands


def documented() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        found += [(path.name, command) for command in fenced_commands(text) + table_commands(text)]
    return found


def test_the_docs_hold_the_commands_this_test_checks():
    commands = [command for _, command in documented()]
    assert len(commands) >= 30
    assert "distillguard audit export --config distillguard.yaml --since 2026-11-01T00:00:00Z --out audit.jsonl" \
        in commands
    assert any(command.startswith("distillguard keys block 0123456789abcdef") for command in commands)


@pytest.mark.parametrize("source,command", documented())
def test_argparse_accepts_the_documented_command(source, command):
    words = shlex.split(command)
    assert words[0] == "distillguard"
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit as exc:
        pytest.fail(f"{source}: argparse refuses `{command}` (exit {exc.code})")
    assert callable(args.func)


@pytest.fixture
def shared_config(redis_server, tmp_path):
    """The docs' `distillguard.yaml`, in the directory the commands run in, naming the test Redis."""
    (tmp_path / "distillguard.yaml").write_text(yaml.safe_dump({"key_secret": TEST_SECRET,
                                                               "redis_url": redis_server.url}))
    return tmp_path


def run(command: str, cwd: Path, **substitutions: str) -> subprocess.CompletedProcess:
    for placeholder, value in substitutions.items():
        command = command.replace(placeholder, value)
    env = {name: value for name, value in os.environ.items() if not name.startswith("DISTILLGUARD_")}
    return subprocess.run(_cli(*shlex.split(command)[1:]), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_review_docs_audit_and_labels_commands_run_against_redis(redis_server, shared_config):
    key = "00000000000000d0"
    done = run(f"distillguard keys block {key} --config distillguard.yaml --reason docs_check --ttl 1h",
               shared_config)
    assert done.returncode == 0, done.stderr
    examples = [command for path in DOCS for command in fenced_commands(path.read_text())]
    for command in examples:
        if command.startswith(("distillguard audit export", "distillguard labels")) and "--out" in command:
            result = run(command, shared_config, **{"redis://127.0.0.1:6379/0": redis_server.url})
            assert result.returncode == 0, f"`{command}`: {result.stderr}"
    audit = [json.loads(line) for line in (shared_config / "audit.jsonl").read_text().splitlines()]
    assert any(entry["target"] == key and entry["action"] == "block" for entry in audit)
    labels = [json.loads(line) for line in (shared_config / "labels.jsonl").read_text().splitlines()]
    assert any(label["key_id"] == key and label["label"] == "confirmed" for label in labels)
    recent = run("distillguard audit export --redis-url redis://127.0.0.1:6379/0 --since 7d", shared_config,
                 **{"redis://127.0.0.1:6379/0": redis_server.url})
    assert recent.returncode == 0 and f'"target": "{key}"' in recent.stdout


@pytest.mark.parametrize("command", [
    "distillguard audit export --since 7d",
    "distillguard labels export",
    "distillguard keys show 0123456789abcdef",
    "distillguard keys block 0123456789abcdef --reason r",
])
def test_commands_on_shared_state_refuse_the_embedded_store(command, tmp_path):
    result = run(command, tmp_path)
    assert result.returncode == 2
    assert "--redis-url" in result.stderr and "redis_url in the config" in result.stderr
    assert "audit entries" not in result.stderr and result.stdout == ""
