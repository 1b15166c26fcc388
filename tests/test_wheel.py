"""The built wheel installs whole: installed into its own venv, run from a directory that is not
the checkout, `distillguard score` and `distillguard demo` find the shipped forest, the Lua
scripts and the data files through importlib.resources (package data), not through the tree.

The venv sees the machine's packages (`--system-site-packages`: the dependencies, which a
loopback-only machine cannot download), but distillguard itself only from the wheel.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import openai
import pytest

from detectors.iforest import ModelFileError
from models import DEFAULT_MODEL
from service.config import DetectionConfig
from service.scoring.detection import load_forest
from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
# What the Dockerfile copies too: the wheel is built from these alone.
SOURCES = ("pyproject.toml", "README.md", "service", "detectors", "traffic", "models")
RULES_ONLY = "running the rules only"

pytestmark = pytest.mark.timeout(600)


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def clean_env(home: Path) -> dict:
    """No PYTHONPATH (it would put the checkout first) and no DISTILLGUARD_* from the caller."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("DISTILLGUARD_")}
    return {**env, "DISTILLGUARD_HOME": str(home)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (a stale build/ in the checkout cannot leak in)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
        str(source), cwd=source)
    (built,) = dist.glob("distillguard-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new venv with the wheel installed; returns its bin directory."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--system-site-packages", str(root), cwd=root)
    run(str(root / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
        str(wheel), cwd=root, env=clean_env(root))
    return root / "bin"


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory with no models/ or service/ beside it."""
    return tmp_path


def site_packages(venv: Path) -> Path:
    return venv.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def test_the_wheel_carries_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [path for package in ("service", "detectors", "traffic", "models")
            for path in (ROOT / package).rglob("*")
            if path.is_file() and path.suffix not in {".py", ".pyc", ".sh"} and "__pycache__" not in path.parts]
    missing = sorted(str(path.relative_to(ROOT)) for path in data if str(path.relative_to(ROOT)) not in names)
    assert missing == []
    assert {"models/__init__.py", "models/default.skops", "models/default.json", "service/lua/admit.lua",
            "service/console/templates/base.html", "service/console/static/console.css",
            "service/examples/distillguard.yaml"} <= names


def test_the_venv_imports_distillguard_from_the_wheel_only(venv, elsewhere):
    result = run(str(venv / "python"), "-c",
                 "import service, models; print(service.__file__); print(models.DEFAULT_MODEL)",
                 cwd=elsewhere, env=clean_env(elsewhere))
    service_file, default_model = result.stdout.split()
    installed = site_packages(venv)
    assert Path(service_file).is_relative_to(installed)
    assert Path(default_model) == installed / "models" / "default"
    assert not Path(service_file).is_relative_to(ROOT)


def test_score_from_another_directory_uses_the_shipped_forest(venv, elsewhere):
    env = clean_env(elsewhere)
    run(str(venv / "distillguard"), "simulate", "--out", "traffic.jsonl.gz", "--benign", "10",
        "--scenario", "reasoning_harvester=1", "--hours", "0.5", "--seed", "3", cwd=elsewhere, env=env)
    result = run(str(venv / "distillguard"), "score", "traffic.jsonl.gz", "--no-linkage", "--report", "report.json",
                 cwd=elsewhere, env=env)
    assert RULES_ONLY not in result.stderr + result.stdout
    report = json.loads((elsewhere / "report.json").read_text())
    assert report["summary"]["recall"] == 1.0
    # Reasons measured against the honest range come from the forest and its model card.
    forest_reasons = [reason for flag in report["flags"] for reason in flag["reasons"]
                      if reason["benign_range"] is not None]
    assert forest_reasons, report["flags"]


def test_demo_from_another_directory_serves_with_the_shipped_forest(venv, elsewhere):
    port, upstream_port = free_port(), free_port()
    log_path = elsewhere / "demo.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(venv / "distillguard"), "demo", "--port", str(port), "--upstream-port", str(upstream_port)],
            cwd=elsewhere, env=clean_env(elsewhere), stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"demo exited ({proc.returncode}): {log_path.read_text()}")
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200

        wait_until(ready, timeout=60, what="demo /healthz")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wheel-test", max_retries=0)
        answer = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content  # admitted through the packaged Lua scripts
        wait_until(lambda: "isolation forest loaded" in log_path.read_text(), timeout=30, what="forest loaded")
    finally:
        stop_process(proc)
    log = log_path.read_text()
    assert RULES_ONLY not in log
    assert f"isolation forest loaded from {site_packages(venv) / 'models' / 'default'}" in log


def test_a_configured_model_path_is_loaded_in_place_of_the_shipped_one(tmp_path, caplog):
    mine = tmp_path / "mine"
    for suffix in (".skops", ".json"):
        shutil.copy2(DEFAULT_MODEL.with_suffix(suffix), mine.with_suffix(suffix))
    card = json.loads(mine.with_suffix(".json").read_text())
    card["threshold"] = 0.75
    mine.with_suffix(".json").write_text(json.dumps(card))
    with caplog.at_level(logging.INFO, logger="distillguard.detection"):
        forest = load_forest(DetectionConfig(model_path=str(mine)))
    assert forest.model.threshold == 0.75
    assert f"isolation forest loaded from {mine}" in caplog.text


def test_a_configured_model_path_that_does_not_load_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_forest(DetectionConfig(model_path=str(tmp_path / "absent")))
    (tmp_path / "other.json").write_text(json.dumps({"feature_names": ["x"]}))
    with pytest.raises(ModelFileError):
        load_forest(DetectionConfig(model_path=str(tmp_path / "other")))
