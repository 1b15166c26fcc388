"""Linkage in the live scorer: what it costs per event, and how long a pass over many keys takes.

(a) One `Scorer` in this process drains the same pre-filled streams (bench_scorer.py's mix)
    with linkage off and on, alternating, so the two are measured side by side under the same
    machine load: events/s each, and their ratio. Goal: at least 5,000 events/s with it on.
(b) N keys' signatures are written to Redis as the scorers would leave them (honest keys of
    a day's varied traffic, plus 1% of keys in hydra networks of 200), then one
    `LinkagePass.run_now()` runs as in the scorer: read the active sets, fetch the
    signatures, cluster, store the clusters, publish the verdicts. Printed: its phases,
    and Redis memory per key (MEMORY USAGE of the signature key and the active-set share).

    python bench/bench_linkage_live.py [--keys 2000] [--events 50000] [--rounds 3]
                                       [--pass-keys 20000,100000] [--skip-scorer]

Each part starts its own redis-server (no persistence, on a free loopback port).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scorer import drained, fill

from detectors.features import RequestFeatures
from detectors.linkage import KeySignature
from service.config import Settings
from service.records.clusters import read_clusters
from service.scoring.linkage_pass import LinkagePass
from service.scoring.scorer import Scorer
from service.store import LINK_SHARDS, active_key, connect, link_shard, signature_key
from tests.support.processes import start_redis

NETWORK_SIZE = 200
PER_KEY = 15


async def drain(url: str, client: redis.Redis, streams: int, linkage: bool) -> float:
    settings = Settings(redis_url=url, detection={"streams": streams, "linkage": {"enabled": linkage}})
    store = await connect(url, timeout=5.0)
    scorer = Scorer(store, settings, name="bench")
    started = time.perf_counter()
    task = asyncio.create_task(scorer.run())
    while not drained(client, streams):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    scorer.stop()
    await task
    await store.close()
    return elapsed


def scorer_side_by_side(keys: int, events: int, rounds: int, streams: int = 8) -> None:
    server = start_redis()
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        client = redis.Redis.from_url(server.url)
        for round_ in range(rounds):
            for linkage in ((False, True) if round_ % 2 == 0 else (True, False)):
                client.flushall()
                fill(client, keys, events, streams)
                rates[linkage].append(events / asyncio.run(drain(server.url, client, streams, linkage)))
    finally:
        server.stop()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    for linkage in (False, True):
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[linkage])
        print(f"(a) scorer, linkage {'on ' if linkage else 'off'}: median {statistics.median(rates[linkage]):,.0f} "
              f"events/s (runs: {runs}); {events} events, {keys} keys, {streams} shards, one process")
    print(f"(a) linkage on / off: {on / off:.2f}")


def _features(key_id: str, ts: float, **fields) -> RequestFeatures:
    base = {"path": "/v1/chat/completions", "prompt_chars": 400, "prompt_tokens": 100, "completion_tokens": 300,
                "message_count": 1, "system_hash": "", "user_hash": "", "template_fp": 0, "template_head": 0, "model": "gpt-4o",
                "max_tokens": 0, "temperature": -1.0, "top_p": -1.0, "n": 1, "logprobs": False, "top_logprobs": 0, "stream": False,
                "has_tools": False, "response_format": "", "reasoning_marker": False, "reasoning_effort": "", "ip_prefix": "",
                "ua_hash": "", "status": 200, "latency_ms": 800.0, "header_order": ""}
    base.update(fields)
    return RequestFeatures(ts=ts, key_id=key_id, **base)


def population(keys: int, now: float, seed: int = 7) -> dict[str, KeySignature]:
    """A day of signatures: honest keys with their own prompts, popular clients and shared
    addresses, plus hydra networks of NETWORK_SIZE keys sharing a template family, a script
    and its waves."""
    rng = random.Random(seed)
    agents = [format(rng.getrandbits(48), "012x") for _ in range(30)]
    orders = [format(rng.getrandbits(48), "012x") for _ in range(8)]
    prefixes = [format(rng.getrandbits(48), "012x") for _ in range(max(keys // 3, 1))]
    signatures: dict[str, KeySignature] = {}
    networks = max(1, keys // 100 // NETWORK_SIZE)
    for net in range(networks):
        family, heads = rng.getrandbits(64), [rng.getrandbits(32) for _ in range(3)]
        agent, order = format(rng.getrandbits(48), "012x"), format(rng.getrandbits(48), "012x")
        pool = [format(rng.getrandbits(48), "012x") for _ in range(4)]
        waves = [rng.uniform(0, 22) * 3600 for _ in range(3)]
        for member in range(NETWORK_SIZE):
            key_id, signature = f"n{net:03x}{member:012x}", KeySignature()
            for _ in range(PER_KEY):
                fp = family
                for _ in range(rng.randint(2, 6)):
                    fp ^= 1 << rng.randrange(64)
                ts = now - 86400 + rng.choice(waves) + rng.uniform(0, 5400)
                signature.update(_features(key_id, min(ts, now - 1), template_fp=fp, template_head=rng.choice(heads),
                                           user_hash=format(rng.getrandbits(64), "016x"), completion_tokens=1500,
                                           max_tokens=4096, temperature=1.0, reasoning_marker=True,
                                           ip_prefix=rng.choice(pool), ua_hash=agent, header_order=order))
            signatures[key_id] = signature
    for honest in range(keys - len(signatures)):
        key_id, signature = f"h{honest:015x}", KeySignature()
        agent, order = agents[min(int(rng.expovariate(0.3)), 29)], rng.choice(orders)
        prefix = prefixes[min(int(rng.paretovariate(1.2)) - 1, len(prefixes) - 1)] if rng.random() < 0.3 \
            else rng.choice(prefixes)
        habits = [rng.uniform(0, 24) * 3600 for _ in range(rng.randint(1, 3))]  # a person's own day
        temperature, max_tokens = rng.choice((-1.0, 0.0, 0.7, 1.0)), rng.choice((0, 256, 1024, 4096))
        for _ in range(rng.randint(5, 30)):
            ts = now - 86400 + (rng.choice(habits) + rng.gauss(0, 3 * 3600)) % 86400
            signature.update(_features(key_id, min(ts, now - 1), template_fp=rng.getrandbits(64),
                                       template_head=rng.getrandbits(32), user_hash=format(rng.getrandbits(64), "016x"),
                                       message_count=rng.choice((1, 1, 3, 5)), completion_tokens=rng.randint(30, 900),
                                       temperature=temperature, max_tokens=max_tokens, ip_prefix=prefix,
                                       ua_hash=agent, header_order=order))
        signatures[key_id] = signature
    return signatures


def store_signatures(client: redis.Redis, signatures: dict[str, KeySignature], ttl_ms: int) -> None:
    pipe = client.pipeline(transaction=False)
    for key_id, signature in signatures.items():
        pipe.set(signature_key(key_id), signature.to_bytes(), px=ttl_ms)
        pipe.zadd(active_key(link_shard(key_id)), {key_id: signature.last_ts})
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()


async def one_pass(url: str) -> tuple[dict, list[str]]:
    """The pass's record, and the members of the clusters it flagged."""
    settings = Settings(redis_url=url)
    store = await connect(url, timeout=30.0)
    try:
        record = await LinkagePass(store, settings, "bench").run_now()
        flagged = await read_clusters(store.client, 2000, flagged_only=True)
        return record, [member for cluster in flagged for member in cluster["members"]]
    finally:
        await store.close()


def pass_over(keys: int) -> None:
    now = time.time()
    started = time.perf_counter()
    signatures = population(keys, now)
    built = time.perf_counter() - started
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        store_signatures(client, signatures, 2 * 86400 * 1000)
        sample = list(signatures)[:: max(1, keys // 1000)]
        per_signature = statistics.mean(client.memory_usage(signature_key(k), samples=0) for k in sample)
        per_active = sum(client.memory_usage(active_key(s), samples=0) for s in range(LINK_SHARDS)) / keys
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        record, members = asyncio.run(one_pass(server.url))
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        server.stop()
    phases, stats = record["phases"], record["detector"]
    print(f"(b) pass over {keys:,} keys: {record['seconds']:.2f} s (read {phases['read_s']:.2f} s, cluster "
          f"{phases['cluster_s']:.2f} s of which detector {stats['seconds']:.2f} s, write {phases['write_s']:.2f} s); "
          f"{stats['eligible']:,} eligible, {record['clusters']} clusters, {record['flagged_clusters']} flagged, "
          f"{sum(m.startswith('n') for m in members)} of {max(1, keys // 100 // NETWORK_SIZE) * NETWORK_SIZE} "
          f"network keys and {sum(m.startswith('h') for m in members)} honest keys flagged, "
          f"{record['verdicts_published']} verdicts published")
    print(f"(b) Redis per key: signature {per_signature:,.0f} B (MEMORY USAGE), active-set entry "
          f"{per_active:,.0f} B; pass process peak RSS {rss_after / 1024:,.0f} MiB "
          f"(was {rss_before / 1024:,.0f} MiB before the pass); building the signatures took {built:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pass-keys", default="20000,100000")
    parser.add_argument("--skip-scorer", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ResourceWarning)  # Store.close() leaves its pool's sockets to the GC
    if not args.skip_scorer:
        scorer_side_by_side(args.keys, args.events, args.rounds)
    for keys in (int(n) for n in args.pass_keys.split(",") if n):
        pass_over(keys)


if __name__ == "__main__":
    main()
