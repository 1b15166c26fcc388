"""The traffic simulator: seeded, valid, labelled, ordered, and each scenario behaving like
the practice it models."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import statistics
from collections import defaultdict

import pytest

from traffic import prompts, vocabulary
from traffic.format import TrafficWriter, read_traffic
from traffic.scenarios import SCENARIOS, generate
from traffic.timing import local_hour

DOCUMENTATION_NETWORKS = [ipaddress.ip_network(n) for n in
                          ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
GROUPED = {name for name, scenario in SCENARIOS.items() if scenario.group is not None}


def key_id_of(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def sample(name: str, keys: int = 3, hours: float = 72, seed: int = 5, limit: int = 400, **params) -> list[dict]:
    """The first `limit` records of a few keys of one scenario."""
    mix = generate({name: keys}, hours=hours, seed=seed, params={name: params} if params else None)
    return list(itertools.islice(mix, limit))


def by_key(records: list[dict]) -> dict[str, list[dict]]:
    keys = defaultdict(list)
    for record in records:
        keys[record["key"]].append(record)
    return keys


def last_user_text(record: dict) -> str:
    return [m for m in record["body"]["messages"] if m["role"] == "user"][-1]["content"]


def test_every_scenario_is_labelled_and_described():
    assert len(SCENARIOS) == 15
    for name, scenario in SCENARIOS.items():
        assert scenario.label in ("attack", "benign"), name
        assert scenario.description and "\n" not in scenario.description, name


def test_the_same_seed_gives_the_same_traffic():
    mix = {"burst_harvester": 1, "support_chatbot": 1, "hydra": 5, "casual_user": 3}
    first = list(itertools.islice(generate(mix, hours=12, seed=11), 1500))
    again = list(itertools.islice(generate(mix, hours=12, seed=11), 1500))
    other = list(itertools.islice(generate(mix, hours=12, seed=12), 1500))
    assert first == again
    assert first != other


def test_adding_a_scenario_leaves_the_other_keys_unchanged():
    alone = [r for r in generate({"low_and_slow": 2}, hours=6, seed=3)]
    mixed = [r for r in generate({"low_and_slow": 2, "rag_service": 1}, hours=6, seed=3)
             if r["scenario"] == "low_and_slow"]
    assert alone == mixed


def test_an_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown scenario.*nope"):
        generate({"nope": 1}, hours=1, seed=0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_yields_valid_records_that_round_trip(tmp_path, name):
    records = sample(name, keys=20 if name in GROUPED else 3)
    assert records, f"{name} yielded nothing in 72 hours"
    path = tmp_path / "traffic.jsonl.gz"
    with TrafficWriter(path) as writer:
        writer.write_all(records)
    read = list(read_traffic(path, key_id_of))
    assert len(read) == len(records)
    for original, record in zip(records, read, strict=True):
        assert record.key_id == key_id_of(original["key"])
        assert original["key"].startswith(f"sk-sim-{name}-")
        assert (record.ts, record.body, record.usage, record.status) == (
            original["ts"], original["body"], original["usage"], 200)
        assert (record.label, record.scenario) == (SCENARIOS[name].label, name)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_records_come_in_ts_order_inside_the_window(name):
    records = sample(name, keys=20 if name in GROUPED else 3, hours=48)
    stamps = [r["ts"] for r in records]
    assert stamps == sorted(stamps)
    assert all(1732492800 <= ts < 1732492800 + 48 * 3600 for ts in stamps)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_addresses_come_only_from_documentation_ranges(name):
    for record in sample(name, keys=20 if name in GROUPED else 3):
        address = ipaddress.ip_address(record["ip"])
        assert any(address in network for network in DOCUMENTATION_NETWORKS), record["ip"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_usage_counts_prompt_characters_and_caps_completions(name):
    for record in sample(name, limit=200):
        body, usage = record["body"], record["usage"]
        chars = sum(len(m["content"]) for m in body["messages"])
        assert chars / 4 <= usage["prompt_tokens"] <= chars / 4 + 1 + 3 * len(body["messages"])
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if cap:
            assert 1 <= usage["completion_tokens"] <= cap * body.get("n", 1)


def test_burst_harvester_sends_fast_on_a_regular_clock_for_long_answers():
    for records in by_key(sample("burst_harvester", limit=3000)).values():
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
        assert statistics.median(gaps) < 2.0
        assert statistics.pstdev(gaps) / statistics.mean(gaps) < 0.1
        answers = [r["usage"]["completion_tokens"] / r["body"].get("n", 1) for r in records]
        assert statistics.median(answers) >= 300
        assert all(len(r["body"]["messages"]) == 1 and r["body"]["max_tokens"] >= 2048 for r in records)


def test_harvesters_use_the_alpaca_seed_tasks_and_generation_template():
    records = sample("burst_harvester", keys=10, limit=4000)
    texts = [last_user_text(r) for r in records]
    seeds = {task["instruction"] for task in prompts.seed_tasks()}
    assert any(text.startswith("You are asked to come up with a set of 20 diverse") for text in texts)
    assert any(any(seed in text for seed in seeds) for text in texts)


def test_a_harvester_rarely_repeats_a_prompt():
    for records in by_key(sample("burst_harvester", keys=10, limit=4000)).values():
        texts = [last_user_text(r) for r in records]
        assert len(set(texts)) > 0.9 * len(texts)


def test_low_and_slow_stays_between_one_and_three_requests_a_minute():
    for records in by_key(sample("low_and_slow", hours=6, limit=10_000)).values():
        per_minute = (len(records) - 1) / ((records[-1]["ts"] - records[0]["ts"]) / 60)
        assert 0.8 <= per_minute <= 3.3


def test_reasoning_harvester_asks_for_reasoning_in_several_languages():
    markers = {"en": "step by step", "zh": "请一步一步思考", "es": "paso a paso", "fr": "étape par étape",
               "de": "Schritt für Schritt", "ja": "ステップバイステップで"}
    seen = set()
    for record in sample("reasoning_harvester", keys=12, limit=3000):
        found = {language for language, marker in markers.items() if marker in last_user_text(record)}
        assert found, last_user_text(record)
        seen |= found
    assert len(seen) >= 5


def test_logprob_harvester_asks_for_top_logprobs_of_a_few_tokens():
    for record in sample("logprob_harvester"):
        body = record["body"]
        assert body["logprobs"] is True
        assert 5 <= body["top_logprobs"] <= 20
        assert 1 <= body["max_tokens"] <= 5
        assert record["usage"]["completion_tokens"] == body["max_tokens"]


def test_topic_sweep_walks_the_topic_list_in_order():
    for records in by_key(sample("topic_sweep", limit=600)).values():
        positions = [next(i for i, topic in enumerate(vocabulary.TOPICS)
                          if last_user_text(r).startswith(f"Explain {topic} to ")) for r in records]
        steps = {(b - a) % len(vocabulary.TOPICS) for a, b in itertools.pairwise(positions)}
        assert steps == {1}


def test_paraphrase_harvester_never_repeats_a_frame():
    texts = [last_user_text(r) for r in sample("paraphrase_harvester", keys=2, limit=500)]
    assert len(set(texts)) > 0.95 * len(texts)
    openings = {" ".join(text.split()[:3]) for text in texts}
    assert len(openings) > 50


def test_human_timing_harvester_sleeps_every_night():
    for records in by_key(sample("human_timing_harvester", hours=72, limit=100_000)).values():
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
        assert sum(gap > 6 * 3600 for gap in gaps) >= 2
        assert statistics.median(gaps) < 600


def test_hydra_spreads_one_template_over_many_keys_and_addresses():
    records = sample("hydra", keys=30, hours=6, limit=100_000, network_size=30)
    keys = by_key(records)
    assert len(keys) == 30
    assert len({r["ip"] for r in records}) >= 20
    assert len({(r["body"]["model"], r["body"]["max_tokens"], r["headers"]["user-agent"]) for r in records}) == 1
    for key_records in keys.values():
        assert len(key_records) / (6 * 60) < 5, "each key stays far under a per-minute limit"


def test_hydra_network_size_splits_keys_into_networks():
    records = sample("hydra", keys=20, hours=2, limit=100_000, network_size=10)
    assert len({(r["body"]["model"], r["body"]["max_tokens"], r["headers"]["user-agent"]) for r in records}) <= 2


def test_heavy_developer_conversations_grow_during_working_hours():
    records = sample("heavy_developer", keys=4, hours=120, limit=3000)
    assert max(len(r["body"]["messages"]) for r in records) >= 7
    assert any(r["body"].get("stream") for r in records)
    assert len({r["body"].get("max_tokens") for r in records}) >= 3
    for key_records in by_key(records).values():
        assert all(r["body"]["messages"][-1]["role"] == "user" for r in key_records)


def test_support_chatbot_uses_one_system_prompt_and_one_backend_address():
    records = sample("support_chatbot", keys=1, hours=24, limit=5000)
    assert {r["body"]["messages"][0]["content"] for r in records} == {vocabulary.SUPPORT_SYSTEM_PROMPT}
    assert len({r["ip"] for r in records}) == 1
    assert len({r["body"]["user"] for r in records}) > 500


def test_support_chatbot_is_busier_by_day_than_by_night():
    records = sample("support_chatbot", keys=1, hours=24, limit=100_000, chats_per_day=(5000, 5000))
    hours = [local_hour(r["ts"], 0) for r in records]
    assert len(hours) > 5000
    busiest = max(sum(1 for h in hours if (h - start) % 24 < 6) for start in range(24))
    quietest = min(sum(1 for h in hours if (h - start) % 24 < 6) for start in range(24))
    assert busiest > 2 * quietest


def test_rag_service_sends_long_context_for_short_answers():
    records = sample("rag_service", keys=2)
    assert all(last_user_text(r).startswith("Answer the question using the context:\n") for r in records)
    assert statistics.median(r["usage"]["prompt_tokens"] for r in records) > 500
    assert statistics.median(r["usage"]["completion_tokens"] for r in records) < 200


def test_batch_document_job_is_clock_regular_with_one_template():
    records = sample("batch_document_job", keys=1, limit=1000)
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) < 0.1
    assert len({last_user_text(r).split(" section of ")[0] for r in records}) == 1
    assert all(r["usage"]["completion_tokens"] <= 1.2 * r["usage"]["prompt_tokens"] for r in records)


def test_benchmark_run_asks_each_question_once_at_temperature_zero():
    records = sample("benchmark_run", keys=6, hours=48, limit=100_000)
    for key_records in by_key(records).values():
        assert all(r["body"]["temperature"] == 0.0 for r in key_records)
        first_turns = [r["body"]["messages"][0]["content"] for r in key_records]
        assert 80 <= len(set(first_turns)) <= 500


def test_office_nat_users_share_one_address_with_their_own_keys():
    records = sample("office_nat", keys=12, hours=120, limit=100_000, office_size=12)
    assert len(by_key(records)) >= 10
    assert len({r["ip"] for r in records}) == 1


def test_casual_user_sends_a_few_requests_a_day():
    records = sample("casual_user", keys=5, hours=96, limit=100_000)
    for key_records in by_key(records).values():
        assert len(key_records) / 4 < 60
