#!/usr/bin/env python3
"""Open-loop latency at fixed request rates, for bench/proxy_bench.py (or alone).

Request i of a run is *scheduled* at t0 + i/rate and sent then whether or not earlier
requests have returned, so a slow server makes requests queue instead of slowing the
client down. Latency is measured from the scheduled send time to the end of the response
body, which avoids coordinated omission: time a request spent waiting because the client
(or its connection pool) was behind counts against the measurement, as it would for a
real caller. The client's own lag (scheduled time to the moment it actually started the
request) is reported separately as `send_lag_*` so one can tell client from server delay.

    python bench/openloop.py --url http://127.0.0.1:8000 --rates 50,200,500 --duration 10

Prints one JSON document on stdout. Only ever point it at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

HERE = Path(__file__).resolve().parent
DEFAULT_MIX = HERE / "request_mix.jsonl"
PATH = "/v1/chat/completions"


def load_mix(path: Path) -> list[bytes]:
    bodies = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    if not bodies:
        raise SystemExit(f"openloop: empty request mix {path}")
    for body in bodies:
        json.loads(body)  # fail early on a malformed mix
    return bodies


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


class Requests:
    """The request cycle: every (key, body) pair, consecutive requests on different keys."""

    def __init__(self, bodies: list[bytes], n_keys: int) -> None:
        self.items = [
            ({"Content-Type": "application/json", "Authorization": f"Bearer sk-bench-{k}"}, body)
            for body in bodies
            for k in range(n_keys)
        ]

    def __getitem__(self, i: int) -> tuple[dict[str, str], bytes]:
        return self.items[i % len(self.items)]


async def one_request(session, url, headers, body, scheduled, record, timeout):
    started = time.monotonic()
    status: int | str
    try:
        async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
            payload = await response.read()
            status = response.status
            if status == 200 and b'"choices"' not in payload:
                status = "200-without-choices"
    except asyncio.TimeoutError:
        status = "timeout"
    except aiohttp.ClientError as exc:
        status = type(exc).__name__
    except OSError as exc:
        status = type(exc).__name__
    finished = time.monotonic()
    if record is not None:
        record.append((finished - scheduled, started - scheduled, status))


async def run_rate(session, url, requests, offset, rate, warmup, duration, timeout, drain_limit):
    """Warm-up then measured phase on one uninterrupted schedule; returns the measured stats."""
    total = int(round(rate * (warmup + duration)))
    n_warm = int(round(rate * warmup))
    measured: list[tuple[float, float, int | str]] = []
    tasks: set[asyncio.Task] = set()
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        headers, body = requests[offset + i]
        record = measured if i >= n_warm else None
        task = asyncio.create_task(one_request(session, url, headers, body, scheduled, record, client_timeout))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    send_end = time.monotonic()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_limit)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    n_measured = total - n_warm
    ok = sorted(lat for lat, _, status in measured if status == 200)
    lags = sorted(lag for _, lag, _ in measured)
    service = sorted(lat - lag for lat, lag, status in measured if status == 200)
    errors = Counter(str(status) for _, _, status in measured if status != 200)
    lost = n_measured - len(measured)  # still pending at the drain limit
    if lost:
        errors["unfinished"] += lost
    # Percentiles over every measured request, a failed one ranking above every success:
    # under overload this shows "error" instead of flattering numbers from the survivors.
    everything = ok + [math.inf] * (n_measured - len(ok))
    def overall(pct: float):
        value = percentile(everything, pct)
        return "error" if value == math.inf else ms(value)

    return {
        "rate": rate,
        "warmup_s": warmup,
        "duration_s": duration,
        "scheduled": n_measured,
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "achieved_ok_rps": round(len(ok) / duration, 1) if duration else None,
        "p50_all_ms": overall(50),
        "p99_all_ms": overall(99),
        # The rest are over successful requests only.
        "p50_ms": ms(percentile(ok, 50)),
        "p90_ms": ms(percentile(ok, 90)),
        "p99_ms": ms(percentile(ok, 99)),
        "p999_ms": ms(percentile(ok, 99.9)),
        "max_ms": ms(ok[-1] if ok else None),
        "mean_ms": ms(sum(ok) / len(ok) if ok else None),
        # From the moment the client actually started the request: the server's share alone,
        # without the client's own lag (not corrected for coordinated omission).
        "from_send_p50_ms": ms(percentile(service, 50)),
        "from_send_p99_ms": ms(percentile(service, 99)),
        "send_lag_p50_ms": ms(percentile(lags, 50)),
        "send_lag_p99_ms": ms(percentile(lags, 99)),
        "send_behind_s": round(max(0.0, send_end - (t0 + (total - 1) / rate)), 3),
        "client_cpu_pct": round(
            100.0 * ((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)) / wall, 1
        ),
    }


async def main_async(args) -> dict:
    parts = urlsplit(args.url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("openloop: only loopback targets are allowed")
    url = args.url.rstrip("/") + PATH
    requests = Requests(load_mix(Path(args.mix)), args.keys)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=0, keepalive_timeout=60,
                                     ttl_dns_cache=None, use_dns_cache=True)
    results = []
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
        offset = 0
        for rate in args.rates:
            result = await run_rate(session, url, requests, offset, rate, args.warmup, args.duration,
                                    args.timeout, args.timeout + 5)
            offset += int(rate * (args.warmup + args.duration))
            results.append(result)
            print(f"openloop: {rate:>6g} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                  f"errors {result['errors']}  client cpu {result['client_cpu_pct']}%", file=sys.stderr)
    return {
        "url": url,
        "keys": args.keys,
        "connections_limit": args.connections,
        "timeout_s": args.timeout,
        "event_loop": "uvloop" if args.uvloop else "asyncio",
        "results": results,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the target, e.g. http://127.0.0.1:8000")
    parser.add_argument("--rates", default="50,200,500", help="comma-separated request rates (req/s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds per rate before measuring")
    parser.add_argument("--keys", type=int, default=300, help="distinct keys sk-bench-0..N-1")
    parser.add_argument("--mix", default=str(DEFAULT_MIX), help="JSONL file of request bodies")
    parser.add_argument("--connections", type=int, default=4096, help="client connection pool size")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s); counted as error")
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    run = asyncio.run
    if args.uvloop:
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            args.uvloop = False
    report = run(main_async(args))
    report["pid"] = os.getpid()
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
