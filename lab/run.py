"""`python -m lab.run`: every (tool, setting) through a recording gateway, into lab/corpus.

Starts the simulator and `distillguard serve` (embedded store, features-mode recording,
the fixed lab key secret), runs each client in its tool's virtualenv with its own key
and a time limit, a few at a time, then stops the gateway (which flushes the recorder)
and writes lab/corpus/lab.jsonl.gz and MANIFEST.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from .corpus import CORPUS, MANIFEST, lab_key_id, read_manifest, write_corpus, write_manifest
from .gateway import LAB_SECRET, SIMULATOR_SEED, LabGateway
from .setup import REQUIREMENTS, venv_python
from .tools import VENVS, Run, all_runs

LAB = Path(__file__).resolve().parent
CLIENTS = LAB / "clients"
# Variables that keep every tool offline and quiet: no hub downloads, no telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1", "ANONYMIZED_TELEMETRY": "false", "RAGAS_DO_NOT_TRACK": "true",
    "DEEPEVAL_TELEMETRY_OPT_OUT": "YES", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False", "INSPECT_DISPLAY": "none", "CURATOR_DISABLE_RICH_DISPLAY": "1",
    "TOKENIZERS_PARALLELISM": "false", "TELEMETRY_ENABLED": "false", "PYTHONUNBUFFERED": "1",
}


def tiktoken_cache() -> str | None:
    """tiktoken downloads its encodings on first use, and nothing but PyPI is reachable here:
    litellm ships cl100k_base under tiktoken's cache name, so every venv borrows that copy."""
    found = sorted(LAB.glob(".venvs/*/lib/python*/site-packages/litellm/litellm_core_utils/tokenizers"))
    return str(found[0]) if found else None


def client_env(run: Run, base_url: str, workdir: Path, result: Path) -> dict:
    """The client's environment: the gateway as its OpenAI endpoint, its own key and caches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "OPENAI_", "VIRTUAL_ENV"))}
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(OFFLINE_ENV)
    env.update({
        "OPENAI_BASE_URL": base_url, "OPENAI_API_BASE": base_url, "OPENAI_API_KEY": run.key,
        "LAB_PARAMS": json.dumps(run.params), "LAB_RESULT": str(result), "LAB_WORKDIR": str(workdir),
        "XDG_CACHE_HOME": str(home / "cache"), "CURATOR_CACHE_DIR": str(home / "curator"),
        "DSPY_CACHEDIR": str(home / "dspy"), "INSPECT_LOG_DIR": str(workdir / "inspect-logs"),
        "CAMEL_WORKDIR": str(workdir), "PATH": f"{venv_python(run.tool.venv).parent}:{env.get('PATH', '')}",
    })
    cache = tiktoken_cache()
    if cache:
        env["TIKTOKEN_CACHE_DIR"] = cache
    return env


def execute(run: Run, base_url: str, workdir: Path) -> dict:
    """One run in its venv; whatever happens, a manifest entry comes back."""
    rundir = workdir / "runs" / run.name.replace("/", "__")
    rundir.mkdir(parents=True, exist_ok=True)
    result = rundir / "result.json"
    started = time.time()
    timed_out = False
    with open(rundir / "client.log", "wb") as log:
        process = subprocess.Popen([str(venv_python(run.tool.venv)), str(CLIENTS / f"{run.tool.client}.py")],
                                   cwd=rundir, env=client_env(run, base_url, rundir, result),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=run.tool.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
    outcome = json.loads(result.read_text()) if result.exists() else {"outputs": 0, "errors": 1,
                                                                       "error_samples": ["no result file"]}
    entry = {
        "tool": run.tool.name, "setting": run.setting, "label": run.tool.label, "venv": run.tool.venv,
        "key_id": lab_key_id(run.key), "params": run.params, "exit_code": process.returncode,
        "timed_out": timed_out, "seconds": round(time.time() - started, 1),
        "client_outputs": outcome["outputs"], "client_errors": outcome["errors"] + (1 if timed_out else 0),
        "client_error_samples": outcome["error_samples"], "client_notes": outcome.get("notes", {}),
    }
    print(f"lab.run: {run.name}: {entry['client_outputs']} outputs, {entry['client_errors']} errors, "
          f"exit {process.returncode}, {entry['seconds']}s", flush=True)
    return entry


def tool_versions(venvs: set[str]) -> dict:
    """The exact pins of each venv's top-level packages, from the frozen requirements."""
    versions = {}
    for venv in sorted(venvs):
        pins = dict(line.split("==", 1) for line in (REQUIREMENTS / f"{venv}.txt").read_text().splitlines()
                    if "==" in line and not line.startswith("#"))
        wanted = [name.split("[")[0].lower().replace("_", "-") for name in VENVS[venv]]
        versions[venv] = {name: v for name, v in pins.items() if name.lower().replace("_", "-") in wanted}
    return versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="tools or tool/setting to run (default: all); "
                        "the corpus keeps the other runs' lines from the previous corpus")
    parser.add_argument("--parallel", type=int, default=3, help="runs at once (each has its own key)")
    parser.add_argument("--workdir", type=Path, help="recordings and client logs (default: a temp dir)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="simulator time to first token")
    parser.add_argument("--tokens-per-second", type=float, default=400.0, help="simulator generation speed")
    args = parser.parse_args(argv)
    runs = all_runs(args.only)
    if not runs:
        raise SystemExit(f"lab.run: no run matches {args.only}")
    missing = sorted({r.tool.venv for r in runs if not venv_python(r.tool.venv).exists()})
    if missing:
        raise SystemExit(f"lab.run: no virtualenv for {', '.join(missing)}; run python -m lab.setup first")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="distillguard-lab-"))
    gateway = LabGateway(workdir, latency_ms=args.latency_ms, tokens_per_second=args.tokens_per_second)
    started = time.time()
    gateway.start()
    print(f"lab.run: gateway {gateway.base_url}, work in {workdir}", flush=True)
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            entries = list(pool.map(lambda r: execute(r, gateway.base_url, workdir), runs))
    finally:
        gateway.stop()
    previous = read_manifest() if args.only and MANIFEST.exists() else {"runs": []}
    counts = write_corpus(gateway.recordings, runs, previous=CORPUS if args.only else None)
    for entry in entries:
        entry["requests"] = counts.get(entry["key_id"], 0)
    kept = [e for e in previous["runs"] if e["key_id"] not in {x["key_id"] for x in entries}]
    order = {r.name: i for i, r in enumerate(all_runs())}
    all_entries = sorted(kept + entries, key=lambda e: order.get(f"{e['tool']}/{e['setting']}", 1 << 30))
    write_manifest({
        "command": "python -m lab.run" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_secret": LAB_SECRET,
        "simulator": {"seed": SIMULATOR_SEED, "latency_ms": args.latency_ms,
                      "tokens_per_second": args.tokens_per_second},
        "recording": {"bodies": "features"},
        "versions": tool_versions({e["venv"] for e in all_entries}),
        "requests": sum(e["requests"] for e in all_entries),
        "client_errors": sum(e["client_errors"] for e in all_entries),
        "runs": all_entries,
    })
    print(f"lab.run: {sum(e['requests'] for e in entries)} requests from {len(entries)} runs in {time.time() - started:.0f}s; "
          f"corpus {CORPUS} ({CORPUS.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
