"""The harvest of tests/test_demo_detection.py at any `max_tokens`, printing what the demo's
detectors made of it: the flag, and every rule's conditions against the key's window.

    python scripts/demo_harvest.py --max-tokens 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.demo import Demo
from tests.test_demo_detection import HARVEST_KEY, explain, flag_of, harvest, seed_instructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=1024)
    args = parser.parse_args()
    demo = Demo(Path(tempfile.mkdtemp(prefix="dg-demo-harvest-")))
    try:
        outcomes = harvest(demo.client(HARVEST_KEY), seed_instructions(), args.max_tokens)
        answered = [n for n in outcomes if isinstance(n, int)]
        key_id = demo.key_id(HARVEST_KEY)
        print(f"max_tokens={args.max_tokens}: {len(answered)} of {len(outcomes)} answered "
              f"(median {statistics.median(answered) if answered else 0} tokens)")
        print(f"flag: {json.dumps(flag_of(demo, key_id))}")
        print(explain(demo.admin(f"/keys/{key_id}")))
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
