"""A missing field is never read as zero: the same harvesting traffic, with `usage` removed
from every line (logs from a proxy that records none), is flagged within a few requests of
the run with `usage`, through the offline path the live scorer shares."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from service.config import load_settings
from service.offline.scoring import score_records
from service.scoring.detection import build_pipeline
from traffic.format import TrafficWriter, read_traffic
from traffic.scenarios import generate

SECRET = b"missing-fields-secret"
ATTACKS = {"burst_harvester": 1, "reasoning_harvester": 1, "logprob_harvester": 1, "topic_sweep": 1,
           "paraphrase_harvester": 1, "fake_history_harvester": 1}
PARAMS = {"burst_harvester": {"rate_per_s": (0.5, 0.8)}, "logprob_harvester": {"rate_per_s": (0.5, 0.8)},
          "fake_history_harvester": {"rate_per_s": (0.1, 0.3)}}
# Evaluations fall every 5 requests up to 100 and every 20 after. With usage the forest may
# flag a key at 30 requests; without it, the forest loses its answer-length features and the
# evidence score, which needs 150 distinct tasks, flags it: "a few requests" is that floor.
SLACK_REQUESTS = 150


def key_id(raw: str) -> str:
    return hmac.new(SECRET, raw.encode(), hashlib.sha256).hexdigest()[:16]


def scored(tmp_path_factory, drop_usage: bool):
    path = tmp_path_factory.mktemp("traffic") / "harvest.jsonl"
    with TrafficWriter(path) as writer:
        for record in generate(ATTACKS, hours=1, seed=11, params=PARAMS):
            writer.write({**record, "usage": None} if drop_usage else record)
    return score_records(read_traffic(path, key_id), SECRET, build_pipeline(load_settings(None)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return scored(tmp_path_factory, False), scored(tmp_path_factory, True)


def first_flags(report) -> dict[str, int | None]:
    return {o.key_id: (o.flag["requests_before_flag"] if o.flag else None) for o in report.keys.values()}


def test_without_usage_every_key_flagged_with_usage_is_flagged_too(runs):
    with_usage, without = map(first_flags, runs)
    caught = {key for key, ttd in with_usage.items() if ttd is not None}
    assert caught, "the harvesters must be caught with usage"
    missed = sorted(key for key in caught if without[key] is None)
    assert not missed, f"{len(missed)} of {len(caught)} keys caught with usage are missed without it"


def test_without_usage_keys_are_flagged_within_a_few_requests_of_the_run_with_usage(runs):
    with_usage, without = map(first_flags, runs)
    late = {key: (with_usage[key], without[key]) for key in with_usage
            if with_usage[key] is not None and without[key] is not None
            and without[key] > with_usage[key] + SLACK_REQUESTS}
    assert not late, late


def test_a_flag_raised_without_usage_names_what_the_lines_carried(runs):
    _, without = runs
    details = " ".join(reason["detail"] for flag in without.flags() for reason in flag["reasons"])
    assert "completion_tokens_log_mean=0" not in details
