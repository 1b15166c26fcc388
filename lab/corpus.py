"""Turns the gateway's recordings into the lab corpus: labelled lines and their manifest.

The recorder writes key_ids only; the lab knows each run's raw key, so it hashes them with
the gateway's own KeyHasher and the lab secret and files every line under its run's tool
(`scenario`) and class (`label`). Lines of keys that belong to no run are left out.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import replace
from collections import Counter
from pathlib import Path

from service.keys import KeyHasher
from traffic import TrafficWriter, read_traffic

from .gateway import LAB_SECRET
from .tools import Run

LAB = Path(__file__).resolve().parent
CORPUS = LAB / "corpus" / "lab.jsonl.gz"
MANIFEST = LAB / "corpus" / "MANIFEST.json"


def lab_key_id(raw_key: str) -> str:
    """The key_id the lab gateway gives a raw key (HMAC with the fixed lab secret)."""
    return KeyHasher(LAB_SECRET.encode()).key_id(raw_key)


def recorded_files(directory: Path) -> list[Path]:
    """Finished recordings, plus any `.part` a stopped gateway left (valid up to its last chunk)."""
    return sorted(p for p in directory.glob("traffic-*") if p.is_file())


def write_corpus(recordings: Path, runs: list[Run], destination: Path = CORPUS,
                 previous: Path | None = None) -> Counter:
    """Merges the recordings by arrival, labels them, and writes one corpus file.

    `previous`: an earlier corpus whose lines of runs not in `runs` are kept, so one tool
    can be re-run without re-running the others. Returns requests per key_id written.
    """
    by_key = {lab_key_id(run.key): run for run in runs}
    streams = [read_traffic(path) for path in recorded_files(recordings)]
    if previous is not None and previous.exists():
        streams.append(r for r in read_traffic(previous) if r.key_id not in by_key)
    counts: Counter = Counter()
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".tmp.gz")
    with TrafficWriter(temporary) as writer:
        for record in heapq.merge(*streams, key=lambda r: r.ts):
            run = by_key.get(record.key_id)
            if run is not None:
                record = replace(record, label=run.tool.label, scenario=run.tool.name)
            elif record.label is None:
                continue
            writer.write(record)
            counts[record.key_id] += 1
    temporary.replace(destination)
    return counts


def write_manifest(manifest: dict, destination: Path = MANIFEST) -> None:
    destination.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def read_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text())
