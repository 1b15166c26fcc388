"""`distillguard evaluate --networks`: randomised harvesting networks among honest
look-alikes, scored by per-key detection and linkage as the live scorer runs them."""

from __future__ import annotations

import heapq
import json
import operator
import random
import subprocess
import sys
from pathlib import Path

import pytest

from service.offline.network_evaluation import BANDS, NetworkPlan, network_sizes
from service.offline.network_report import member_cell
from traffic.lookalikes import CLASSES, lookalike_streams, reseller_shops, split
from traffic.networks import LIFETIMES, draw_network, member_slots
from traffic.scenarios import DEFAULT_START_TS

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600.0
OBVIOUS = ["wrapping=shared", "wrappers=1", "addresses=datacentre", "client=one_script", "sampling=fixed",
           "timing=random", "per_day=[45,50]", "lifetime=weeks", "non_english=0", "reseller_share=0"]


def _network_records(seed: str, size: int, hours: float, style: dict | None = None):
    shop = reseller_shops(seed, 1)[0]
    network = draw_network(random.Random(f"{seed}:network"), size, DEFAULT_START_TS, shop, style=style)
    members: dict = {}
    streams = member_slots(seed, 0, network, DEFAULT_START_TS + hours * HOUR, members)
    return list(heapq.merge(*streams, key=operator.itemgetter("ts"))), members


def test_a_network_is_the_same_for_the_same_seed_and_differs_for_another():
    first, members = _network_records("7", 25, 12)
    again, members_again = _network_records("7", 25, 12)
    other, _ = _network_records("8", 25, 12)
    assert first == again and members == members_again
    assert [r["body"] for r in first[:20]] != [r["body"] for r in other[:20]]


def test_every_slot_keeps_one_live_key_and_retired_keys_are_replaced():
    records, members = _network_records("3", 40, 30, {"lifetime": "hours"})
    founders = [m for m in members.values() if m.founder]
    assert len(founders) == 40 and {m.slot for m in founders} == set(range(40))
    assert len(members) > 80  # keys living 2-12 hours turn over several times in 30 hours
    for key, member in members.items():
        assert LIFETIMES["hours"][0] * HOUR <= member.retires_ts - member.born_ts <= LIFETIMES["hours"][1] * HOUR
        sent = [r["ts"] for r in records if r["key"] == key]
        assert all(member.born_ts <= ts < member.retires_ts for ts in sent)
    by_slot: dict[int, list] = {}
    for member in members.values():
        by_slot.setdefault(member.slot, []).append(member)
    for keys in by_slot.values():
        keys.sort(key=lambda m: m.born_ts)
        assert all(later.born_ts >= earlier.retires_ts for earlier, later in zip(keys, keys[1:], strict=False))


def test_members_send_within_the_per_day_range_they_drew():
    records, members = _network_records("5", 30, 48, {"per_day": (5, 8), "lifetime": "weeks", "reseller_share": 0.0})
    for key, member in members.items():
        days = max(1.0, (min(member.retires_ts, DEFAULT_START_TS + 48 * HOUR) - member.born_ts) / 86400)
        sent = sum(r["key"] == key for r in records)
        assert sent <= 8 * days + 4 * days ** 0.5 + 2


def test_lookalikes_cover_every_class_in_the_count_asked():
    counts = split(700)
    assert sum(counts.values()) == 700 and set(counts) == set(CLASSES) and min(counts.values()) >= 1
    streams = lookalike_streams("2", 700, DEFAULT_START_TS, 6 * HOUR, reseller_shops("2", 3))
    assert len(streams) == 700 and {name for _, name, _ in streams} == set(CLASSES)


def test_sizes_fall_in_their_bands_up_to_the_largest_asked():
    plan = NetworkPlan(max_size=600, networks_per_band=3)
    assert plan.bands == (*BANDS[:3], (200, 600))
    sizes = network_sizes(plan, random.Random(1))
    for index, size in enumerate(sizes):
        low, high = plan.bands[index // 3]
        assert low <= size <= high


def test_within_hours_counts_only_founders_active_by_then_and_the_run_counts_everyone():
    start = DEFAULT_START_TS
    members = [{"founder": True, "network_start_ts": start, "first_ts": start + 0.5 * HOUR, "flagged_ts": start + HOUR},
               {"founder": True, "network_start_ts": start, "first_ts": start + 3 * HOUR, "flagged_ts": start + 5 * HOUR},
               {"founder": True, "network_start_ts": start, "first_ts": start + 1 * HOUR, "flagged_ts": None},
               {"founder": False, "network_start_ts": start, "first_ts": start + 9 * HOUR, "flagged_ts": start + 10 * HOUR}]
    members = [{**m, "by_linkage": False} for m in members]
    cell = member_cell(members, start + 12 * HOUR)
    assert (cell["2h"]["flagged"], cell["2h"]["keys"]) == (1, 2)
    assert (cell["6h"]["flagged"], cell["6h"]["keys"]) == (2, 3)
    assert cell["24h"] is None  # the run ended first
    assert (cell["run"]["flagged"], cell["run"]["keys"]) == (3, 4)
    assert (cell["joiners"]["flagged"], cell["joiners"]["keys"]) == (1, 1)


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="no network style"):
        NetworkPlan(style=(("colour", "red"),))


@pytest.mark.timeout(600)  # about 15 s of CPU; the shared machine runs many jobs at once
def test_evaluate_networks_flags_an_obvious_network_and_reports_every_lookalike_class(tmp_path):
    report = tmp_path / "networks.json"
    style = [arg for pin in OBVIOUS for arg in ("--network-style", pin)]
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "evaluate", "--networks", "--seed", "1", "--draws", "1", "--hours", "12",
         "--max-network-size", "30", "--lookalikes", "35", "--benign", "0", *style, "--report", str(report)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("worst draw of 1 per network size band")
    assert "--network-style per_day=[45,50]" in completed.stdout
    result = json.loads(report.read_text())
    assert [row["band"] for row in result["bands_report"]] == ["10-19", "20-30"]
    assert sum(row["members"] for row in result["bands_report"]) == sum(n["members"] for n in result["networks"])
    for network in result["networks"]:  # every slot's founder (one may retire before it sends), and replacements
        assert 0.9 * network["size"] <= network["members"] <= 3 * network["size"]
    run = [row["pooled"]["run"] for row in result["bands_report"]]
    assert sum(share["flagged"] for share in run) >= 0.5 * sum(share["keys"] for share in run)
    assert all(row["pooled"]["24h"] is None for row in result["bands_report"])  # 12 hours simulated
    classes = {row["class"] for row in result["lookalikes"]}
    assert classes == {*CLASSES, "all"}
    for row in result["lookalikes"]:
        low, high = row["bounds_95"]
        assert 0.0 <= low <= row["rate"] <= high <= 1.0
    total = next(row for row in result["lookalikes"] if row["class"] == "all")
    assert total["keys"] == sum(row["keys"] for row in result["lookalikes"] if row["class"] != "all")
