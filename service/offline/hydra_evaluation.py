"""The hydra table of docs/evaluation.md: networks of 20, 100 and 500 keys in every variant,
mixed into the simulator's default honest population and linkage's hard negatives, scored
over one simulated day by per-key detection and the linkage passes, as the live scorer
runs them (`detection.linkage`, default settings).

    python -m service.offline.hydra_evaluation [--benign 2000] [--sizes 20,100,500] [--seed 1] [--json out.json]

Networks of 20 come five to a run (100 keys per variant), larger ones one to a run. A key
is *linked* once a pass puts it in any cluster, *flagged* once a pass flags it as a member;
time to detect runs from the key's first request to that pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator

from traffic.format import TrafficRecord
from traffic.hydra import reseller_key_indexes
from traffic.scenarios import ATTACK, HYDRA, HYDRA_VARIANTS, benign_mix, generate

from ..config import Settings, load_settings
from ..keys import KeyHasher
from ..scoring.detection import build_pipeline
from .linkage import LinkageRun, linkage_run
from .scoring import score_records

SECRET = b"distillguard-evaluate"
HOURS = 24.0
HARD_NEGATIVES = {"popular_app_user": 1000, "benchmark_team": 50, "carrier_user": 300, "reseller_key": 50}
RESELLER = "hydra_reseller"


def population(size: int, benign: int) -> tuple[dict[str, int], dict[str, dict]]:
    keys = 5 * size if size < 100 else size
    mix = {**benign_mix(benign), **HARD_NEGATIVES, **dict.fromkeys(HYDRA_VARIANTS, keys)}
    return mix, {name: {"network_size": size} for name in HYDRA_VARIANTS}


def records(mix: dict[str, int], params: dict, seed: int, hasher: KeyHasher,
            raw_keys: dict[str, str]) -> Iterator[TrafficRecord]:
    for item in generate(mix, HOURS, seed, params=params):
        key_id = hasher.key_id(item["key"])
        raw_keys[key_id] = item["key"]
        yield TrafficRecord(item["ts"], key_id, item["ip"], item["method"], item["path"], item.get("headers") or {},
                            item.get("body"), item["label"], item["scenario"], item.get("status"),
                            item.get("latency_ms"), item.get("usage"))


def _hours(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    return round(statistics.median(ordered) / 3600, 1), round(ordered[int(0.9 * (len(ordered) - 1))] / 3600, 1)


def run_size(size: int, benign: int, seed: int, settings: Settings) -> dict:
    mix, params = population(size, benign)
    hasher, raw_keys = KeyHasher(SECRET), {}
    linkage = linkage_run(settings) or LinkageRun()
    started = time.perf_counter()
    report = score_records(records(mix, params, seed, hasher, raw_keys), SECRET, build_pipeline(settings), linkage)
    mixed = {f"sk-sim-{RESELLER}-{index}" for index in
             reseller_key_indexes(seed, RESELLER, mix[RESELLER], {**HYDRA, **HYDRA_VARIANTS[RESELLER]}["reseller_share"])}
    groups: dict[str, list] = {}
    for key_id, outcome in report.keys.items():
        name = outcome.scenario if outcome.label == ATTACK else f"honest: {outcome.scenario}"
        if name == RESELLER:
            name += " (keys also carrying honest traffic)" if raw_keys[key_id] in mixed else " (campaign-only keys)"
        groups.setdefault(name, []).append(outcome)
    rows = []
    groups["honest keys (all)"] = [o for o in report.keys.values() if o.label != ATTACK]
    for name, outcomes in sorted(groups.items(), key=lambda item: (item[0].startswith("honest"), item[0])):
        linked = [o for o in outcomes if o.key_id in linkage.first_linked]
        flagged = [o for o in outcomes if o.key_id in linkage.first_flagged]
        median, p90 = _hours([linkage.first_flagged[o.key_id] - o.first_ts for o in flagged])
        rows.append({"variant": name, "network_size": None if name.startswith("honest") else size, "keys": len(outcomes),
                     "linked": len(linked), "flagged_by_linkage": len(flagged),
                     "flagged_by_any_detector": sum(o.flag is not None for o in outcomes),
                     "ttd_hours_median": median, "ttd_hours_p90": p90})
    return {"size": size, "rows": rows, "passes": linkage.passes, "requests": report.requests,
            "seconds": round(time.perf_counter() - started, 1)}


def format_rows(results: list[dict]) -> str:
    lines = ["| network | variant | keys | linked | flagged by linkage | flagged by any detector | TTD median / p90 (h) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        for row in result["rows"]:
            linked, by_linkage, by_any = (f"{row[name]} ({row[name] / row['keys']:.1%})"
                                          for name in ("linked", "flagged_by_linkage", "flagged_by_any_detector"))
            ttd = "-" if row["ttd_hours_median"] is None else f"{row['ttd_hours_median']} / {row['ttd_hours_p90']}"
            size = f"{result['size']} keys" if row["network_size"] else f"(run with {result['size']})"
            lines.append(f"| {size} | {row['variant']} | {row['keys']} | {linked} | {by_linkage} | {by_any} | {ttd} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.offline.hydra_evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--benign", type=int, default=2000)
    parser.add_argument("--sizes", default="20,100,500")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write every row as JSON")
    args = parser.parse_args(argv)
    settings = load_settings(None)
    results = []
    for size in (int(size) for size in args.sizes.split(",")):
        results.append(run_size(size, args.benign, args.seed, settings))
        print(f"networks of {size}: {results[-1]['requests']:,} requests, {results[-1]['passes']} passes, "
              f"{results[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(format_rows(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
