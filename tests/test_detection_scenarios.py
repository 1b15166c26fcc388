"""Every attack key flagged and no honest key flagged, on simulated traffic the shipped
model was not trained on (a different seed), through the offline path the live scorer
shares. Honest automation that a naive detector flags is in the mix on purpose."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from service.config import load_settings
from service.offline.scoring import score_records
from service.scoring.detection import build_pipeline
from traffic.format import read_traffic
from traffic.scenarios import generate

# Simulating and scoring three hours of every scenario takes minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600)

SECRET = b"scenario-test-secret"

ATTACKS = {
    "burst_harvester": 3, "low_and_slow": 3, "reasoning_harvester": 3, "logprob_harvester": 3,
    "topic_sweep": 3, "paraphrase_harvester": 3, "human_timing_harvester": 3, "fake_history_harvester": 3,
}
HONEST = {
    "heavy_developer": 6, "support_chatbot": 2, "rag_service": 2, "batch_document_job": 2,
    "benchmark_run": 3, "office_nat": 12, "casual_user": 20,
    # Teams running a public benchmark with sampling on: the shape of a capability harvest.
    "benchmark_team": 6,
}
# Keep the test quick: fast scenarios run at the low end of their rates.
PARAMS = {
    "burst_harvester": {"rate_per_s": (0.5, 0.8)},
    "logprob_harvester": {"rate_per_s": (0.5, 0.8)},
    "fake_history_harvester": {"rate_per_s": (0.1, 0.3)},
    "support_chatbot": {"chats_per_day": (2000.0, 2500.0)},
    "rag_service": {"queries_per_day": (500.0, 800.0)},
}


def key_id(raw: str) -> str:
    return hmac.new(SECRET, raw.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("traffic") / "mixed.jsonl"
    from traffic.format import TrafficWriter

    with TrafficWriter(path) as writer:
        for record in generate({**ATTACKS, **HONEST}, hours=3, seed=7, params=PARAMS):
            writer.write(record)
    settings = load_settings(None)
    return score_records(read_traffic(path, key_id), SECRET, build_pipeline(settings))


def by_scenario(report, label: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for outcome in report.keys.values():
        if outcome.label == label:
            groups.setdefault(outcome.scenario, []).append(outcome)
    return groups


# Caught per key within the three hours, as designed. Two are not, by the precision rules:
# the human-timed harvester sends ~50 requests in 3 h, under the 150 distinct tasks a
# harvest needs; label-token soft labels alone (1-5 tokens with top logprobs) are what an
# intent classifier reading top-5 logprobs sends (docs/detection.md, docs/evaluation.md).
BELOW_THE_BAR = ("human_timing_harvester", "logprob_harvester")


@pytest.mark.parametrize("scenario", sorted(set(ATTACKS) - set(BELOW_THE_BAR)))
def test_every_attack_key_is_flagged(report, scenario):
    keys = by_scenario(report, "attack")[scenario]
    missed = [o.key_id for o in keys if o.flag is None]
    assert keys and not missed, f"{scenario}: {len(missed)} of {len(keys)} keys not flagged"


@pytest.mark.parametrize("scenario", sorted(HONEST))
def test_no_honest_key_is_flagged(report, scenario):
    keys = by_scenario(report, "benign").get(scenario, [])
    flagged = [(o.key_id, o.flag["reasons"]) for o in keys if o.flag is not None]
    assert not flagged, f"{scenario}: honest keys flagged: {flagged}"


def test_every_flag_explains_itself(report):
    for flag in report.flags():
        assert flag["reasons"], flag
        for reason in flag["reasons"]:
            assert reason["name"] and reason["feature"] and reason["detail"]


def test_a_harvest_below_the_volume_bar_still_scores_as_a_near_miss(report):
    """Not flagged alone, but not clean either: its evidence is what linkage pools. (The
    label-token soft labels score clean: nothing in them is harvested output.)"""
    keys = by_scenario(report, "attack")["human_timing_harvester"]
    assert keys and all(o.max_score >= 0.3 for o in keys), [(o.key_id, o.max_score) for o in keys]


def test_attacks_are_caught_within_200_requests(report):
    """The median time to detect: past the 150 distinct tasks a harvest needs, at the next
    evaluation."""
    ttd = sorted(o.flag["requests_before_flag"] for o in report.keys.values() if o.label == "attack" and o.flag)
    assert ttd and ttd[len(ttd) // 2] <= 200
