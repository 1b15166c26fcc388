"""What every lab client shares: its setting, the lab's data, and its result file.

Clients run inside their tool's own virtualenv, so this module uses the standard library
only. lab/run.py passes the setting as LAB_PARAMS (JSON) and reads LAB_RESULT afterwards.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "lab" / "data"
BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
API_KEY = os.environ.get("OPENAI_API_KEY", "")
MODEL = os.environ.get("LAB_MODEL", "sim")
PARAMS: dict = json.loads(os.environ.get("LAB_PARAMS") or "{}")


def param(name: str, default=None):
    return PARAMS.get(name, default)


def rows(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sample(name: str, count: int, seed: int = 0) -> list[dict]:
    """`count` rows of a data file in a fixed shuffled order (repeating if it is shorter)."""
    pool = rows(name)
    random.Random(seed).shuffle(pool)
    return [pool[i % len(pool)] for i in range(count)]


def instruction_text(row: dict) -> str:
    """An Alpaca-style row as one prompt: the instruction, then its input if any."""
    extra = (row.get("input") or "").strip()
    return f"{row['instruction']}\n\n{extra}" if extra else row["instruction"]


class Result:
    """Counts what the client did and writes it for the runner, even if the client dies."""

    def __init__(self) -> None:
        self.outputs = 0
        self.errors = 0
        self.samples: list[str] = []
        self.notes: dict = {}
        atexit.register(self.write)

    def ok(self, count: int = 1) -> None:
        self.outputs += count

    def error(self, what: str | BaseException, count: int = 1) -> None:
        """One client-side failure: an exception, or an output the tool could not use."""
        self.errors += count
        if isinstance(what, BaseException):
            what = f"{type(what).__name__}: {what}"
        if len(self.samples) < 8:
            self.samples.append(str(what)[:500])

    def write(self) -> None:
        path = os.environ.get("LAB_RESULT")
        if path:
            Path(path).write_text(json.dumps({"outputs": self.outputs, "errors": self.errors,
                                              "error_samples": self.samples, "notes": self.notes}))


RESULT = Result()


def main(run) -> None:
    """Runs the client; an exception that escapes it is one more error and exit status 1."""
    try:
        run()
    except BaseException as exc:  # noqa: BLE001 - the runner reports whatever ended the client
        RESULT.error(exc)
        traceback.print_exc()
        RESULT.write()
        sys.exit(1)
