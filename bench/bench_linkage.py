"""Linkage at scale: what it adds per event, and a clustering pass over 100,000 active keys.

(a) Per event, side by side on the same simulated requests, in alternating rounds: the
    gateway's features, the scorer's window update, and the linkage signature update; the
    scorer's events/s without and with the signature, and their ratio.
(b) A pass over `--keys` active keys whose signatures were filled from synthetic events
    with realistic shares: honest keys in many time zones, a popular SDK's user agent and
    header order on a third of them, carriers putting hundreds behind one prefix, popular
    apps' system prompts and settings, shared honest templates; plus `--networks` hydra
    networks of `--network-size` keys at 20-30 requests a day. Printed: wall time of the
    pass and its stages, peak memory it allocated (tracemalloc, in a second identical pass,
    since tracing slows it) and the process's peak RSS,
    signature bytes per key, candidate pairs compared, and the networks' keys flagged.

    python bench/bench_linkage.py [--events 40000] [--rounds 3] [--keys 100000] [--networks 10]
                                  [--network-size 500] [--skip-events] [--skip-pass]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.features import RequestFeatures  # noqa: E402
from detectors.linkage import MAX_BYTES, KeySignature, LinkageDetector  # noqa: E402
from detectors.linkage.typical import TYPICAL_BITS  # noqa: E402
from detectors.windows import KeyWindow  # noqa: E402
from service.offline.scoring import record_features  # noqa: E402
from traffic.format import TrafficRecord  # noqa: E402
from traffic.scenarios import DEFAULT_START_TS, benign_mix, generate  # noqa: E402

DAY = 86400.0


# --- (a) per event ----------------------------------------------------------------------------


def simulated_records(events: int) -> list[TrafficRecord]:
    mix = {**benign_mix(300), "hydra": 100}
    records = []
    for item in generate(mix, hours=24, seed=4, params={"hydra": {"network_size": 100}}):
        records.append(TrafficRecord(item["ts"], item["key"], item["ip"], item["method"], item["path"],
                                     item.get("headers") or {}, item.get("body"), item["label"], item["scenario"],
                                     item.get("status"), item.get("latency_ms"), item.get("usage")))
        if len(records) >= events:
            break
    return records


def per_event(records: list[TrafficRecord], rounds: int) -> None:
    salt = b"bench-linkage"
    timings: dict[str, list[float]] = {"features": [], "window": [], "signature": []}
    features: list[RequestFeatures] = []
    for _ in range(rounds):
        started = time.perf_counter()
        features = [record_features(record, salt) for record in records]
        timings["features"].append(time.perf_counter() - started)
        windows: dict[str, KeyWindow] = {}
        started = time.perf_counter()
        for event in features:
            window = windows.get(event.key_id)
            if window is None:
                window = windows[event.key_id] = KeyWindow()
            window.update(event)
        timings["window"].append(time.perf_counter() - started)
        signatures: dict[str, KeySignature] = {}
        started = time.perf_counter()
        for event in features:
            signature = signatures.get(event.key_id)
            if signature is None:
                signature = signatures[event.key_id] = KeySignature()
            signature.update(event)
        timings["signature"].append(time.perf_counter() - started)
    n = len(records)
    per = {name: statistics.median(values) / n * 1e6 for name, values in timings.items()}
    spread = {name: (min(values) / n * 1e6, max(values) / n * 1e6) for name, values in timings.items()}
    assert features
    print(f"(a) {n:,} simulated requests ({len({r.key_id for r in records})} keys), {rounds} rounds; "
          "µs per event, median [min-max]:")
    for name in per:
        print(f"    {name:<10} {per[name]:7.1f}  [{spread[name][0]:.1f}-{spread[name][1]:.1f}]")
    without = per["features"] + per["window"]
    print(f"    features + window: {1e6 / without:,.0f} events/s; + signature: "
          f"{1e6 / (without + per['signature']):,.0f} events/s (ratio {without / (without + per['signature']):.3f})")
    print(f"    scorer side (window, then window + signature): {1e6 / per['window']:,.0f} -> "
          f"{1e6 / (per['window'] + per['signature']):,.0f} events/s; signature adds "
          f"{per['signature']:.1f} µs an event")


# --- (b) a pass over many keys --------------------------------------------------------------------


def _fingerprint(rng: random.Random, base: int | None, flip: float) -> int:
    """A prompt's fingerprint: ordinary text's bits, or a template's with `flip` of them changed."""
    if base is None:
        return sum(1 << bit for bit, share in enumerate(TYPICAL_BITS) if rng.random() < share)
    return base ^ sum(1 << bit for bit in range(64) if rng.random() < flip)


def _zipf(rng: random.Random, count: int, skew: float = 1.1) -> int:
    """An index in 0..count-1, the first few very common: how popular values spread."""
    return min(int(rng.paretovariate(skew)) - 1, count - 1)


def _event(key: str, ts: float, fp: int, *, ip: int, ua: int, order: int, system: int, model: str,
           temperature: float, max_tokens: int, turns: int, prompt: int, answer: int, user_hash: int) -> RequestFeatures:
    return RequestFeatures(
        ts=ts, key_id=key, path="/v1/chat/completions", prompt_chars=prompt * 4, prompt_tokens=prompt,
        completion_tokens=answer, message_count=turns, system_hash=format(system, "016x") if system else "",
        user_hash=format(user_hash, "016x"), template_fp=fp, template_head=fp & 0xFFFF, model=model,
        max_tokens=max_tokens, temperature=temperature, top_p=-1.0, n=1, logprobs=False, top_logprobs=0,
        stream=False, has_tools=False, response_format="", reasoning_marker=False, reasoning_effort="",
        ip_prefix=format(ip, "012x"), ua_hash=format(ua, "012x"), status=200, latency_ms=800.0,
        header_order=format(order, "012x"))


def honest_signature(rng: random.Random, key: str, templates: list[int]) -> KeySignature:
    signature = KeySignature()
    offset = rng.uniform(-12, 12) * 3600
    per_day = min(60, max(3, int(rng.lognormvariate(2.7, 0.9))))
    carrier = rng.random() < 0.1
    ip = 0xCA0000 + rng.randrange(20) if carrier else rng.getrandbits(40)
    ua, order = 0xA000 + _zipf(rng, 50), 0xB000 + _zipf(rng, 8, 1.5)
    app = _zipf(rng, 500, 0.9) if rng.random() < 0.4 else None
    system = 0xC0000 + app if app is not None else 0
    model = f"model-{_zipf(rng, 6, 1.5)}" if app is None else f"model-{app % 6}"
    template = rng.choice(templates) if rng.random() < 0.2 else None
    for _ in range(per_day):
        local = rng.uniform(8, 23) if rng.random() < 0.9 else rng.uniform(0, 24)
        ts = DEFAULT_START_TS + (local * 3600 - offset) % DAY
        turns = rng.choice((1, 1, 3, 5))
        temperature = rng.choice((-1.0, 0.0, 0.7, 1.0)) if app is None else 0.7
        max_tokens = rng.choice((0, 512, 1024, 4096)) if app is None else 1024
        signature.update(_event(key, ts, _fingerprint(rng, template, 0.25), ip=ip, ua=ua, order=order,
                                system=system, model=model, temperature=temperature, max_tokens=max_tokens,
                                turns=turns, prompt=rng.randint(20, 2000), answer=rng.randint(20, 1500),
                                user_hash=rng.getrandbits(64)))
    return signature


def network_signatures(rng: random.Random, number: int, size: int) -> dict[str, KeySignature]:
    base = _fingerprint(rng, None, 0.0)
    waves = [(rng.uniform(0, 24), rng.uniform(0.75, 2.5)) for _ in range(rng.randint(2, 4))]
    ua, order, model = 0xD000 + number, 0xB000, f"model-{number % 4}"
    pool = [rng.getrandbits(40) for _ in range(4)]
    signatures = {}
    for member in range(size):
        key, signature = f"net{number}-{member}", KeySignature()
        ip = rng.choice(pool)
        for _ in range(rng.randint(20, 30)):
            begin, length = rng.choices(waves, weights=[w[1] for w in waves])[0]
            ts = DEFAULT_START_TS + ((begin + rng.uniform(0, length)) * 3600) % DAY
            signature.update(_event(key, ts, _fingerprint(rng, base, 0.25), ip=ip, ua=ua, order=order, system=0,
                                    model=model, temperature=0.8, max_tokens=4096, turns=1,
                                    prompt=rng.randint(40, 160), answer=rng.randint(300, 1500),
                                    user_hash=rng.getrandbits(64)))
        signatures[key] = signature
    return signatures


def synthetic_population(keys: int, networks: int, size: int) -> dict[str, KeySignature]:
    rng = random.Random(11)
    templates = [_fingerprint(rng, None, 0.0) for _ in range(200)]
    signatures = {}
    for number in range(networks):
        signatures.update(network_signatures(rng, number, size))
    for n in range(keys - len(signatures)):
        signatures[f"honest-{n}"] = honest_signature(rng, f"honest-{n}", templates)
    return signatures


def one_pass(keys: int, networks: int, size: int) -> None:
    started = time.perf_counter()
    signatures = synthetic_population(keys, networks, size)
    built = time.perf_counter() - started
    blobs = [len(signature.to_bytes()) for signature in signatures.values()]
    print(f"(b) {len(signatures):,} keys ({networks} networks of {size}); signatures filled from synthetic "
          f"events in {built:.0f} s")
    print(f"    signature bytes per key (zlib): mean {statistics.mean(blobs):.0f}, max {max(blobs)}; "
          f"bound before compression {MAX_BYTES}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = LinkageDetector().run(signatures, DEFAULT_START_TS + DAY)
    wall = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()  # a second, identical pass, traced: tracing slows the Python parts
    LinkageDetector().run(signatures, DEFAULT_START_TS + DAY)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    flagged = result.member_verdicts
    in_networks = sum(key.startswith("net") for key in flagged)
    stats = result.stats
    print(f"    pass: {wall:.1f} s wall; allocated at peak {peak / 2**20:.0f} MiB "
          f"({peak / len(signatures):,.0f} B per key); process peak RSS {rss_after / 1024:.0f} MiB "
          f"(was {rss_before / 1024:.0f} MiB before the pass)")
    print("    stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stats["stage_seconds"].items()))
    print(f"    {stats['comparisons']:,} candidate pairs compared (of {len(signatures) * (len(signatures) - 1) // 2:,} "
          f"possible), {stats['edges']:,} edges, {stats['clusters']} clusters, {stats['flagged_clusters']} flagged")
    print(f"    network keys flagged {in_networks:,} of {networks * size:,}; other keys flagged "
          f"{len(flagged) - in_networks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100000)
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--network-size", type=int, default=500)
    parser.add_argument("--skip-events", action="store_true")
    parser.add_argument("--skip-pass", action="store_true")
    args = parser.parse_args()
    np.seterr(all="ignore")
    if not args.skip_events:
        per_event(simulated_records(args.events), args.rounds)
    if not args.skip_pass:
        one_pass(args.keys, args.networks, args.network_size)


if __name__ == "__main__":
    main()
