"""Builds one virtualenv per tool under lab/.venvs, from the frozen lab/requirements files.

`python -m lab.setup` installs each venv from lab/requirements/<venv>.txt (exact pins of
the whole resolved set, so a rebuild is the same). `--refresh` instead installs the
newest releases of the top-level packages (lab/tools.py VENVS) and freezes the result
into those files. The tools' dependencies conflict, hence one venv each. Uses `uv` when
it is on PATH (much faster), else `python -m venv` and pip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .tools import VENVS

LAB = Path(__file__).resolve().parent
VENV_ROOT = LAB / ".venvs"
REQUIREMENTS = LAB / "requirements"
# Packages no lab tool may pull in: the lab runs CPU-only clients against a simulator.
FORBIDDEN = ("torch", "nvidia-", "tensorflow", "jax")


def venv_python(venv: str) -> Path:
    return VENV_ROOT / venv / "bin" / "python"


def _installer(python: Path) -> list[str]:
    uv = shutil.which("uv")
    return [uv, "pip", "install", "--python", str(python)] if uv else [str(python), "-m", "pip", "install"]


def frozen(venv: str) -> list[str]:
    """The venv's installed distributions as `name==version` lines, sorted."""
    python = venv_python(venv)
    uv = shutil.which("uv")
    command = [uv, "pip", "freeze", "--python", str(python)] if uv else [str(python), "-m", "pip", "freeze"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    return sorted((line for line in lines if "==" in line), key=str.lower)


def build(venv: str, refresh: bool) -> str:
    python = venv_python(venv)
    if refresh:
        shutil.rmtree(VENV_ROOT / venv, ignore_errors=True)  # the freeze must hold only what resolved now
    if not python.exists():
        uv = shutil.which("uv")
        command = [uv, "venv", "-q", "-p", sys.executable] if uv else [sys.executable, "-m", "venv"]
        subprocess.run([*command, str(VENV_ROOT / venv)], check=True)
    pins = REQUIREMENTS / f"{venv}.txt"
    if refresh or not pins.exists():
        subprocess.run([*_installer(python), *VENVS[venv]], check=True, capture_output=True)
        lines = frozen(venv)
        bad = [line for line in lines if line.lower().startswith(FORBIDDEN)]
        if bad:
            raise SystemExit(f"lab.setup: {venv} pulled in {', '.join(bad)}; pick extras that avoid it")
        header = f"# lab venv {venv}: {' '.join(VENVS[venv])}, resolved and frozen by python -m lab.setup --refresh\n"
        pins.write_text(header + "\n".join(lines) + "\n")
    else:
        subprocess.run([*_installer(python), "-r", str(pins)], check=True, capture_output=True)
    return venv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.setup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help="resolve the newest releases and re-freeze the pins")
    parser.add_argument("venvs", nargs="*", help=f"only these ({', '.join(VENVS)})")
    args = parser.parse_args(argv)
    REQUIREMENTS.mkdir(exist_ok=True)
    VENV_ROOT.mkdir(exist_ok=True)
    names = args.venvs or list(VENVS)
    with ThreadPoolExecutor(4) as pool:
        for name in pool.map(lambda v: build(v, args.refresh), names):
            print(f"lab.setup: {name} ready ({venv_python(name)})")


if __name__ == "__main__":
    main()
