"""Builds detectors/data/public_eval_prompts.txt: the `user_hash` of every prompt of the public
evaluation sets honest teams run through LLM APIs, so the window can tell a benchmark run
from a harvest (detectors/public_evals.py says how it is used).

Only hashes are shipped (16 hex characters of SHA-256 over the lower-cased, whitespace-folded
prompt, exactly as `detectors.text.duplicate_hash` computes a request's `user_hash`), never
the prompts. Sources and licences: ../shared/data/SOURCES.md, repeated in the file's header.

    python scripts/derive_public_eval_hashes.py [--data ../shared/data/prompts_benign]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.text import duplicate_hash  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "detectors" / "data" / "public_eval_prompts.txt"
# file, how its prompts are spelt, origin (repository @ commit : path), licence
SETS = (
    ("arena_hard_v0.1_question.jsonl", "prompt", "lmarena/arena-hard-auto @ 196f6b8 : data/arena-hard-v0.1/question.jsonl",
     "Apache-2.0"),
    ("arena_hard_v2.0_question.jsonl.gz", "prompt",
     "lmarena/arena-hard-auto @ 196f6b8 : data/arena-hard-v2.0/question.jsonl", "Apache-2.0"),
    ("mt_bench_question.jsonl", "turns", "lm-sys/FastChat @ 0e6d3e4 : fastchat/llm_judge/data/mt_bench/question.jsonl",
     "Apache-2.0"),
    ("vicuna_bench_question.jsonl", "turns",
     "lm-sys/FastChat @ 0e6d3e4 : fastchat/llm_judge/data/vicuna_bench/question.jsonl", "Apache-2.0"),
    ("alpaca_eval_805_instructions.jsonl", "instruction", "tatsu-lab/alpaca_eval @ cd543a1 : example/outputs.json",
     "CC BY-NC 4.0 (only hashes are shipped)"),
)


def prompts_of(path: Path, field: str):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                yield from (row[field] if field == "turns" else [row[field]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "prompts_benign"))
    args = parser.parse_args()
    hashes: set[str] = set()
    header = ["# user_hash of every prompt (every turn) of these public evaluation sets;",
              "# built by scripts/derive_public_eval_hashes.py. No prompt text is shipped.", "#"]
    for name, field, origin, licence in SETS:
        found = {duplicate_hash(text.lower()) for text in prompts_of(Path(args.data) / name, field)}
        header.append(f"# {name}: {len(found)} distinct prompts; {origin}; {licence}")
        hashes |= found
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join([*header, *sorted(hashes)]) + "\n")
    print(f"wrote {OUT}: {len(hashes)} hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
