"""`distillguard evaluate --randomise / --hold-out-families / --drop-usage / --features-mode`:
keys really vary, a held-out family never reaches fitting, the conditions change the lines
as a proxy or a features recording would, the bounds are right, and the report leads with
the worst case."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from service.config import load_settings
from service.offline import generalisation
from service.offline.bounds import rate_bounds
from service.offline.generalisation import GeneralisationPlan, as_record, measure, population
from service.offline.generalisation_report import family_rows, worst_cases
from service.offline.scoring import fit_detectors, record_features, score_records
from traffic.scenarios import SCENARIOS, generate, key_streams

ROOT = Path(__file__).resolve().parents[1]
SALT = b"test-generalisation"


def first_requests(mix: dict[str, int], hours: float = 6, seed: int = 4) -> dict[str, dict]:
    """Each key's first randomised request."""
    streams = key_streams(mix, hours=hours, seed=seed, randomise=True)
    return {key: first for key, stream in streams if (first := next(stream, None)) is not None}


@pytest.fixture(scope="module")
def randomised() -> dict[str, dict]:
    return first_requests({"low_and_slow": 40, "api_customer": 40, "burst_harvester": 20})


def test_randomised_keys_spread_their_answer_caps(randomised):
    caps = [r["body"].get("max_tokens") or r["body"].get("max_completion_tokens") for r in randomised.values()]
    assert len({cap for cap in caps if cap}) >= 6
    assert any(cap is None for cap in caps), "some keys send no cap at all"
    assert any("max_completion_tokens" in r["body"] for r in randomised.values())
    assert min(cap for cap in caps if cap) <= 512 and max(cap for cap in caps if cap) >= 3072


def test_randomised_instructions_sit_in_the_system_or_the_user_message(randomised):
    harvesters = [r for r in randomised.values() if r["label"] == "attack"]
    roles = {r["body"]["messages"][0]["role"] for r in harvesters}
    assert roles == {"system", "user"}


def test_randomised_keys_vary_temperature_streaming_and_pace(randomised):
    bodies = [r["body"] for r in randomised.values()]
    assert any("temperature" not in b for b in bodies) and len({b.get("temperature") for b in bodies}) >= 4
    assert any(b.get("stream") for b in bodies) and any(not b.get("stream") for b in bodies)


def test_without_randomise_the_family_sends_as_it_always_did():
    plain = list(itertools.islice(generate({"low_and_slow": 3}, hours=2, seed=4), 50))
    assert {r["body"]["max_tokens"] for r in plain} <= {2048, 3072, 4000, 4096}
    assert all(r["family"] == "low_and_slow" for r in plain)


def test_a_family_keeps_what_defines_it_under_randomise():
    for record in itertools.islice(generate({"intent_classifier": 30}, hours=12, seed=2, randomise=True), 400):
        body = record["body"]
        assert (body.get("max_tokens") or body.get("max_completion_tokens")) <= 5
        assert body["logprobs"] is True


def test_randomised_conversations_still_continue():
    """Each request of a chat resends the earlier turns exactly as they were first sent."""
    by_key = defaultdict(list)
    for record in generate({"heavy_developer": 12}, hours=30, seed=3, randomise=True):
        by_key[record["key"]].append(record["body"]["messages"])
    continued = 0
    for histories in by_key.values():
        for earlier, later in itertools.pairwise(histories):
            if len(later) > len(earlier) and later[0] == earlier[0]:  # the same chat, one turn on
                assert later[:len(earlier)] == earlier
                continued += 1
    assert continued >= 20


def test_hydra_variants_are_one_family():
    assert {SCENARIOS[name].family_of(name) for name in SCENARIOS if name.startswith("hydra")} == {"hydra"}


# --- conditions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def items() -> list[dict]:
    mix = {"agent_product": 2, "reward_grading": 1, "document_pipeline": 1, "reasoning_trace_distillation": 1}
    return list(itertools.islice(generate(mix, hours=3, seed=1, randomise=True), 120))


def test_drop_usage_removes_usage_from_every_line(items):
    for item in items:
        assert item["usage"]
        assert as_record(item, "k" * 16, "no_usage").usage is None
        assert as_record(item, "k" * 16, "features_no_usage").usage is None


def test_features_mode_keeps_no_text_and_scores_as_the_full_line(items):
    for item in items:
        kept = as_record(item, "k" * 16, "features")
        assert "messages" not in kept.body and kept.features
        assert "content" not in json.dumps(kept.body)
        full = as_record(item, "k" * 16, "full")
        assert record_features(kept, SALT) == record_features(full, SALT)


# --- bounds and the report ------------------------------------------------------------------


def test_bounds_are_exact_clopper_pearson_on_known_counts():
    assert rate_bounds(0, 0) is None
    assert rate_bounds(0, 10) == (0.0, round(1 - 0.025 ** (1 / 10), 4))
    assert rate_bounds(10, 10) == (round(0.025 ** (1 / 10), 4), 1.0)
    low, high = rate_bounds(5, 10)
    assert math.isclose(low, 0.1871, abs_tol=1e-4) and math.isclose(high, 0.8129, abs_tol=1e-4)
    low, high = rate_bounds(1, 1000)
    assert low < 0.001 < high < 0.006


def test_upper_bound_puts_the_whole_tail_above():
    assert rate_bounds(0, 10, sided="upper") == (0.0, round(1 - 0.05 ** (1 / 10), 4))
    assert rate_bounds(10, 10, sided="upper") == (0.0, 1.0)
    low, high = rate_bounds(1, 1000, sided="upper")
    assert low == 0.0 and high < rate_bounds(1, 1000)[1]


def outcome(family: str, label: str, flagged: bool, draw: int = 0) -> dict:
    return {"family": family, "label": label, "flagged": flagged, "evaluated": True, "draw": draw,
            "condition": "full", "ttd_requests": 40 if flagged else None, "requests": 100}


def test_the_report_puts_the_worst_family_and_draw_first():
    outcomes = ([outcome("caught", "attack", True) for _ in range(10)]
                + [outcome("half", "attack", flag, draw) for draw in (0, 1) for flag in (True, False, draw == 0)]
                + [outcome("clean", "benign", False) for _ in range(20)]
                + [outcome("noisy", "benign", i < 2) for i in range(20)])
    rows = family_rows(outcomes, ["full"])
    assert [row["family"] for row in rows] == ["half", "caught", "noisy", "clean"]
    half = rows[0]["conditions"]["full"]
    assert (half["rate"], half["worst_draw"], half["worst_draw_rate"]) == (0.5, 1, 0.3333)
    worst = worst_cases(outcomes, ["full"])["full"]
    assert (worst["attack"]["worst"]["family"], worst["attack"]["worst"]["draw"]) == ("half", 1)
    assert worst["honest"]["worst"]["family"] == "noisy" and worst["honest"]["worst"]["rate"] == 0.1
    assert worst["honest"]["pooled"]["bounds_95"] == rate_bounds(2, 40)


# --- fitting without the held-out family ----------------------------------------------------

FEW = ("rag_service", "document_pipeline", "intent_classifier", "low_and_slow", "reward_grading")
SMALL = GeneralisationPlan(benign=18, attacks_per_family=2, hours=3, seed=2, max_requests_per_key=100,
                           hold_out_families=True, families=FEW)


@pytest.mark.timeout(600)  # seconds on an idle machine; the shared one runs many jobs at once
def test_a_held_out_family_never_reaches_fitting_and_is_measured():
    fitted_on: dict[str, set[str]] = {}

    def spying_fit(records, salt, **options):
        records = list(records)
        fitted_on[options["source"].rsplit("without ", 1)[1]] = {record.family for record in records}
        return fit_detectors(records, salt, **options)

    outcomes = measure(SMALL, load_settings(None), 0, "full", fit=spying_fit)
    attack_families = {SCENARIOS[name].family_of(name) for name in population(SMALL) if SCENARIOS[name].label == "attack"}
    assert set(fitted_on) == {"nothing", "rag_service", "document_pipeline", "intent_classifier"}
    for left_out, families in fitted_on.items():
        assert left_out not in families
        assert not families & attack_families
    measured = {o["family"] for o in outcomes}
    assert set(fitted_on) - {"nothing"} <= measured
    assert all(o["held_out"] for o in outcomes)


def test_without_hold_out_no_measured_honest_key_was_fitted_on(monkeypatch):
    fitted_keys: set[str] = set()
    scored_keys: set[str] = set()

    def spying_fit(records, salt, **options):
        records = list(records)
        fitted_keys.update(record.key_id for record in records)
        return fit_detectors(records, salt, **options)

    def watching(records, *args):
        def passed_on():
            for record in records:
                scored_keys.add(record.key_id)
                yield record
        return score_records(passed_on(), *args)

    monkeypatch.setattr(generalisation, "score_records", watching)
    measure(replace(SMALL, hold_out_families=False), load_settings(None), 0, "no_usage", fit=spying_fit)
    assert fitted_keys and scored_keys
    assert not fitted_keys & scored_keys


@pytest.mark.timeout(600)  # about 20 s on an idle machine; the shared one runs many jobs at once
def test_evaluate_randomise_hold_out_reports_the_worst_case_first(tmp_path):
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "evaluate", "--randomise", "--hold-out-families",
         "--benign", "18", "--attacks-per-scenario", "2", "--hours", "3", "--seed", "2",
         "--max-requests-per-key", "100", "--families", ",".join(FEW), "--report", str(report)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("worst case over families and draws")
    assert "lowest recall" in lines[1] and "highest honest FPR" in lines[1]
    result = json.loads(report.read_text())
    assert result["conditions"] == ["full"]
    assert result["plan"]["hold_out_families"] and result["plan"]["randomise"]
    worst = result["worst"]["full"]["attack"]["worst"]
    rates = [row["conditions"]["full"]["rate"] for row in result["families"] if row["label"] == "attack"
             and row["conditions"]["full"]["rate"] is not None]
    assert worst["rate"] == min(rates) == rates[0]
    assert "--randomise --hold-out-families --max-requests-per-key 100 --families" in completed.stdout
