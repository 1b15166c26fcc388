"""Which distillguard tree a benchmark imports: `--code PATH` (another checkout, e.g. main's,
so two versions run under one benchmark script), else the tree the script is in.

Read from sys.argv before the benchmark's imports, so it must be the first thing they do.
"""

from __future__ import annotations

import sys
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parents[1]


def use_code_tree() -> Path:
    """Puts the chosen tree first on sys.path and returns it."""
    tree = THIS_TREE
    for index, arg in enumerate(sys.argv):
        if arg == "--code" and index + 1 < len(sys.argv):
            tree = Path(sys.argv[index + 1]).resolve()
        elif arg.startswith("--code="):
            tree = Path(arg.split("=", 1)[1]).resolve()
    if not (tree / "detectors" / "windows.py").exists():
        sys.exit(f"--code {tree}: not a distillguard tree (no detectors/windows.py)")
    sys.path.insert(0, str(tree))
    return tree
