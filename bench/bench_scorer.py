"""Events per second that one `distillguard scorer` process consumes from a real Redis.

The gateway's streams are filled first (so the figure is consumption, not arrival), then
one Scorer runs in this process until every shard is drained: read, count in windows,
evaluate, act, checkpoint and acknowledge. The goal is 5,000 events/s per process.

    python bench/bench_scorer.py [--keys 200] [--events 50000] [--streams 8] [--model none|PATH]
                                 [--code PATH] [--json]

Without --model the pipeline is what `distillguard scorer` builds by default: the rules plus
the shipped isolation forest (models/default) when it is present. `--model none` runs the
rules only; `--model models/default` (or another path, without suffix) loads that forest.
`--code PATH` runs another tree's scorer (bench/code_tree.py); `--json` adds one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from code_tree import use_code_tree  # noqa: E402

CODE = use_code_tree()

from detectors.pipeline import Pipeline  # noqa: E402
from detectors.rules import RulesDetector, parse_rules  # noqa: E402
from service.config import Settings  # noqa: E402
from service.events import shard_of  # noqa: E402
from service.scoring.detection import build_pipeline, ladder_config  # noqa: E402
from service.scoring.scorer import Scorer  # noqa: E402
from service.store import EVENT_GROUP, connect, event_stream  # noqa: E402
from tests.support.processes import start_redis  # noqa: E402
from tests.support.traffic import chat_request, event_fields, harvest_request, key_id  # noqa: E402


def fill(client: redis.Redis, keys: int, events: int, streams: int) -> None:
    """`events` entries over `keys` keys, half harvesting and half chatting, interleaved."""
    templates = {}
    for k in range(keys):
        raw = f"sk-bench-{k}"
        make = harvest_request if k % 2 else chat_request
        templates[raw] = [event_fields(raw, make(i), 0.0, 1 if k % 2 else 150) for i in range(50)]
    pipe = client.pipeline(transaction=False)
    for n in range(events):
        raw = f"sk-bench-{n % keys}"
        fields = dict(templates[raw][(n // keys) % 50], ts=repr(1.7e9 + n * 0.01))
        pipe.xadd(event_stream(shard_of(key_id(raw), streams)), fields)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def drained(client: redis.Redis, streams: int) -> bool:
    for shard in range(streams):
        try:
            groups = client.xinfo_groups(event_stream(shard))
        except redis.ResponseError:
            return False
        if not any(g["name"] == EVENT_GROUP.encode() and g["lag"] == 0 and g["pending"] == 0 for g in groups):
            return False
    return True


def pipeline_for(settings: Settings, model: str | None):
    """The scorer's default pipeline, or the rules only (`none`), or rules + the forest at `model`."""
    if model == "none":
        detection = settings.detection
        return Pipeline(RulesDetector(parse_rules(detection.rules)), None, ladder_config(detection))
    return build_pipeline(settings)


async def consume(url: str, streams: int, client: redis.Redis, model: str | None) -> tuple[float, str]:
    detection = {"streams": streams}
    if model not in (None, "none"):
        detection["model_path"] = model
    settings = Settings(redis_url=url, detection=detection)
    pipeline = pipeline_for(settings, model)
    detectors = "rules + isolation forest" if pipeline.forest is not None else "rules only"
    store = await connect(url, timeout=5.0)
    scorer = Scorer(store, settings, pipeline=pipeline, name="bench")
    started = time.perf_counter()
    task = asyncio.create_task(scorer.run())
    while not drained(client, streams):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    scorer.stop()
    await task
    await store.close()
    return elapsed, detectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--model", help="`none` for the rules only, or a model path without suffix "
                                        "(default: as `distillguard scorer`, the shipped model if present)")
    parser.add_argument("--code", help="the distillguard tree to run (default: this one)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        fill(client, args.keys, args.events, args.streams)
        elapsed, detectors = asyncio.run(consume(server.url, args.streams, client, args.model))
        print(f"scorer ({detectors}): {args.events} events, {args.keys} keys, {args.streams} shards: "
              f"{elapsed:.2f} s, {args.events / elapsed:,.0f} events/s (one process); code {CODE}")
        if args.json:
            print(json.dumps({"scorer_events_per_s": args.events / elapsed, "detectors": detectors}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
