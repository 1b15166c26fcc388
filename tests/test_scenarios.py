"""The traffic simulator: seeded, valid, labelled, ordered, each scenario behaving like
the practice it models, and honest keys drawing their rates, burstiness and lengths from
the real traces' tables."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import random
import re
import statistics
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest

from service.cli import main as distillguard
from service.config import LimitsConfig
from traffic import prompts, traces, vocabulary
from traffic.__main__ import main as python_m_traffic
from traffic.attacks import ALPACA_BATCH
from traffic.format import TrafficWriter, read_traffic
from traffic.records import message_chars
from traffic.scenarios import BENIGN_MIX, SCENARIOS, attack_mix, benign_mix, generate
from traffic.timing import renewal_arrivals

DOCUMENTATION_NETWORKS = [ipaddress.ip_network(n) for n in
                          ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
GROUPED = {name for name, scenario in SCENARIOS.items() if scenario.group is not None}
START = 1732492800.0
PUBLIC_RECORD_FAMILIES = ("evol_instruct", "synthetic_dialogues", "reward_grading", "reasoning_trace_distillation",
                          "sequence_logprob_harvester", "code_harvest", "agent_trajectory_harvester")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"


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


def gap_cv(stamps: list[float]) -> float:
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.pstdev(gaps) / statistics.fmean(gaps)


# --- the registry and the generator -------------------------------------------------------

def test_every_scenario_is_labelled_and_described():
    assert {"api_customer", "reasoning_app_user", "burst_harvester", "hydra"} <= set(SCENARIOS)
    for name, scenario in SCENARIOS.items():
        assert scenario.label in ("attack", "benign"), name
        assert scenario.description and "\n" not in scenario.description, name


def test_every_scenario_is_documented_with_its_parameters():
    text = DOCS.read_text()
    sections = dict(re.findall(r"^### `([a-z_]+)`\n(.*?)(?=^### |\Z)", text, re.MULTILINE | re.DOTALL))
    for name, scenario in SCENARIOS.items():
        assert name in sections, f"docs/scenarios.md has no '### `{name}`' section"
        for parameter in scenario.params:
            assert f"`{parameter}`" in sections[name], f"{name}: parameter {parameter} undocumented"


def test_the_same_seed_gives_the_same_traffic():
    mix = {"burst_harvester": 1, "support_chatbot": 1, "hydra": 5, "casual_user": 3, "api_customer": 3,
           "reasoning_app_user": 2}
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


def test_a_misspelt_parameter_is_refused():
    with pytest.raises(ValueError, match="api_customer has no parameter volume"):
        generate({"api_customer": 1}, hours=1, seed=0, params={"api_customer": {"volume": 0.1}})


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
    assert all(START <= ts < START + 48 * 3600 for ts in stamps)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_addresses_come_only_from_documentation_ranges(name):
    for record in sample(name, keys=20 if name in GROUPED else 3):
        address = ipaddress.ip_address(record["ip"])
        assert any(address in network for network in DOCUMENTATION_NETWORKS), record["ip"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_usage_counts_prompt_characters_and_caps_completions(name):
    for record in sample(name, limit=200):
        body, usage = record["body"], record["usage"]
        chars = sum(message_chars(m) for m in body["messages"])
        assert chars / 4 <= usage["prompt_tokens"] <= chars / 4 + 1 + 3 * len(body["messages"])
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if cap:
            assert 1 <= usage["completion_tokens"] <= cap * body.get("n", 1)
        reasoning = usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0)
        assert 0 <= reasoning <= usage["completion_tokens"]


# --- the trace tables ----------------------------------------------------------------------

def test_trace_tables_ship_with_the_package_and_are_small():
    folder = resources.files("traffic").joinpath("data", "traces")
    sizes = {name: len(folder.joinpath(name).read_bytes()) for name in ("servegen_clients.json", "service_traces.json")}
    assert sum(sizes.values()) < 300_000, sizes
    assert len(traces.clients(traces.LANGUAGE)) == 162 + 109 + 43
    assert len(traces.clients(traces.REASON)) == 73
    for kind in (traces.AZURE_CONV, traces.AZURE_CODE, traces.MOONCAKE, traces.SERVEGEN_LANGUAGE,
                 traces.SERVEGEN_REASON):
        table = traces.service(kind)
        assert table["prompt_tokens"] == sorted(table["prompt_tokens"])
        assert table["completion_tokens"] == sorted(table["completion_tokens"])
    for client in (c for c in traces.clients(traces.LANGUAGE) if c["mean_rate_per_s"] > 0):
        assert statistics.fmean(client["hourly_shape"]) == pytest.approx(1.0, abs=0.01), client["id"]


@pytest.mark.parametrize("kind", [traces.AZURE_CONV, traces.AZURE_CODE, traces.MOONCAKE])
def test_token_lengths_follow_the_trace_quantiles(kind):
    rng = random.Random(3)
    draws = [traces.token_lengths(rng, kind) for _ in range(20_000)]
    table, probabilities = traces.service(kind), traces._services()["probabilities"]
    columns = {"prompt_tokens": sorted(p for p, _ in draws), "completion_tokens": sorted(c for _, c in draws)}
    for field, values in columns.items():
        for probability in (0.1, 0.25, 0.5, 0.75, 0.9):
            expected = table[field][probabilities.index(probability)]
            measured = values[int(probability * len(values))]
            assert measured == pytest.approx(expected, rel=0.12, abs=2), (field, probability)


def test_renewal_arrivals_reproduce_the_target_rate_and_burstiness():
    for weibull, cv in ((False, 0.4), (False, 3.0), (True, 3.0)):
        stamps = list(renewal_arrivals(random.Random(4), 0.0, 20 * 86400.0, lambda ts: 0.05,
                                       lambda ts, cv=cv: cv, weibull))
        assert len(stamps) == pytest.approx(0.05 * 20 * 86400, rel=0.06)
        assert gap_cv(stamps) == pytest.approx(cv, rel=0.15)


def test_renewal_arrivals_stay_silent_when_the_rate_is_zero():
    stamps = list(renewal_arrivals(random.Random(1), 0.0, 86400.0,
                                   lambda ts: 1.0 if 8 <= ts // 3600 < 10 else 0.0, lambda ts: 1.0))
    assert all(8 * 3600 <= ts < 10 * 3600 for ts in stamps)
    assert len(stamps) == pytest.approx(7200, rel=0.05)


def test_client_profiles_replay_the_servegen_rate_and_burstiness_distribution():
    """Scaled-down keys keep their client's volume (by the hour) and its burstiness."""
    rng = random.Random(8)
    measured, expected, cvs, target_cvs = [], [], [], []
    for _ in range(120):
        profile = traces.client_profile(rng, traces.LANGUAGE, volume_scale=0.02, max_requests_per_day=20_000)
        stamps = list(profile.arrivals(rng, START, START + 86400, 0))
        measured.append(len(stamps))
        expected.append(profile.expected_requests(START, START + 86400, 0))
        hourly = [gap_cv(hour) for _, group in itertools.groupby(stamps, lambda ts: int(ts // 3600))
                  if len(hour := list(group)) >= 40]
        if len(hourly) >= 3:
            cvs.append(statistics.median(hourly))
            target_cvs.append(min(traces.MAX_CV, max(traces.MIN_CV, profile.cv_quantiles[2])))
    ratios = [m / e for m, e in zip(measured, expected, strict=True) if e >= 200]
    assert len(ratios) > 50 and 0.85 <= statistics.median(ratios) <= 1.15
    assert len(cvs) > 40
    assert statistics.median(cvs) == pytest.approx(statistics.median(target_cvs), rel=0.3)
    assert _rank_correlation(cvs, target_cvs) > 0.6
    table_rates = sorted(c["mean_rate_per_s"] for c in traces.clients(traces.LANGUAGE))
    assert statistics.median(measured) > 0.02 * 86400 * table_rates[len(table_rates) // 4]


def _rank_correlation(xs: list[float], ys: list[float]) -> float:
    rank = {v: i for i, v in enumerate(sorted(xs))}, {v: i for i, v in enumerate(sorted(ys))}
    rx, ry = [rank[0][x] for x in xs], [rank[1][y] for y in ys]
    return statistics.correlation(rx, ry)


def test_api_customer_volumes_follow_their_clients():
    records = list(generate({"api_customer": 40}, hours=24, seed=2))
    counts = sorted(len(v) for v in by_key(records).values())
    defaults, rng = SCENARIOS["api_customer"].params, random.Random(0)
    implied = sorted(traces.client_profile(rng, traces.LANGUAGE, defaults["volume_scale"],
                                           defaults["max_requests_per_day"]).expected_requests(START, START + 86400, 0)
                     for _ in range(2000))
    assert statistics.median(counts) == pytest.approx(statistics.median(implied), rel=0.6)
    assert counts[-1] <= defaults["max_requests_per_day"] * 1.3, "the per-key cap holds"


# --- honest scenarios ----------------------------------------------------------------------

def test_api_customers_are_apps_with_system_prompts_real_prompts_and_some_conversations():
    records = list(generate({"api_customer": 25}, hours=24, seed=6))
    keys = by_key(records)
    assert all(r["body"]["messages"][0]["role"] == "system" for r in records)
    assert any(len(r["body"]["messages"]) >= 5 for r in records)
    human = set(prompts.human_prompts())
    assert sum(last_user_text(r) in human for r in records) > 0.2 * len(records)
    for key_records in keys.values():
        settings = {(r["body"]["model"], r["body"].get("temperature"), r["body"].get("max_tokens"))
                    for r in key_records}
        assert len(settings) == 1, "one app, one configuration"
    assert len({r["body"]["messages"][0]["content"].split(".")[0] for r in records}) >= 4


def test_reasoning_app_users_use_reasoning_models_chat_and_sometimes_ask_for_steps():
    records = list(generate({"reasoning_app_user": 40}, hours=48, seed=4))
    assert all(r["body"]["model"] in ("o3-mini", "o4-mini", "deepseek-reasoner") for r in records)
    reasoning = sum(r["usage"].get("completion_tokens_details", {}).get("reasoning_tokens", 0) for r in records)
    assert reasoning > 0.5 * sum(r["usage"]["completion_tokens"] for r in records)
    assert any(len(r["body"]["messages"]) >= 3 for r in records), "some chats go on"
    def cued(text: str) -> bool:
        return any(cue in text for cue in vocabulary.USER_REASONING_CUES)

    cues = [cued(last_user_text(r)) for r in records]
    assert 0.05 < sum(cues) / len(cues) < 0.8
    per_key = [statistics.fmean(cued(r["body"]["messages"][0]["content"]) for r in rs)
               for rs in by_key(records).values() if len(rs) >= 10]
    assert min(per_key) < 0.2 and max(per_key) > 0.5, "habits differ from person to person"
    for key_records in by_key(records).values():
        for a, b in itertools.pairwise(key_records):
            same_chat = b["body"]["messages"][0] == a["body"]["messages"][0]
            if same_chat and len(b["body"]["messages"]) > len(a["body"]["messages"]):
                assert b["ts"] - a["ts"] >= a["latency_ms"] / 1000, "the next turn waits for the answer"


def test_heavy_developer_conversations_grow_during_working_hours():
    records = sample("heavy_developer", keys=4, hours=120, limit=3000)
    assert max(len(r["body"]["messages"]) for r in records) >= 7
    assert any(r["body"].get("stream") for r in records)
    assert len({r["body"].get("max_tokens") for r in records}) >= 3
    for key_records in by_key(records).values():
        assert all(r["body"]["messages"][-1]["role"] == "user" for r in key_records)


def test_support_chatbot_serves_many_end_users_with_one_prompt_from_one_address_most_of_the_day():
    records = sample("support_chatbot", keys=1, hours=24, limit=100_000, chats_per_day=(3000, 3000))
    assert {r["body"]["messages"][0]["content"] for r in records} == {vocabulary.SUPPORT_SYSTEM_PROMPT}
    assert len({r["ip"] for r in records}) == 1
    assert len({r["body"]["user"] for r in records}) > 300
    assert len({int(r["ts"] // 3600) for r in records}) >= 10


def test_rag_service_sends_long_context_for_short_answers():
    records = sample("rag_service", keys=2)
    assert all(last_user_text(r).startswith("Answer the question using the context:\n") for r in records)
    assert statistics.median(r["usage"]["prompt_tokens"] for r in records) > 500
    assert statistics.median(r["usage"]["completion_tokens"] for r in records) < 200


def test_batch_document_job_is_clock_regular_with_one_template():
    records = sample("batch_document_job", keys=1, limit=1000)
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
    within_runs = [gap for gap in gaps if gap < 600]  # runs are nightly
    assert len(within_runs) >= len(gaps) - 3
    assert statistics.pstdev(within_runs) / statistics.fmean(within_runs) < 0.1
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


# --- attack scenarios ----------------------------------------------------------------------

def test_burst_harvester_answering_sends_fast_on_a_regular_clock_for_long_answers():
    for records in by_key(sample("burst_harvester", limit=3000, generation_share=0.0)).values():
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(records)]
        assert statistics.median(gaps) < 2.0
        assert gap_cv([r["ts"] for r in records]) < 0.1
        answers = [r["usage"]["completion_tokens"] / r["body"].get("n", 1) for r in records]
        assert statistics.median(answers) >= 300
        assert all(len(r["body"]["messages"]) == 1 and r["body"]["max_tokens"] >= 2048 for r in records)


def test_burst_harvester_generation_runs_the_self_instruct_loops_with_their_settings():
    records = sample("burst_harvester", keys=12, limit=6000, generation_share=1.0)
    alpaca = [r for r in records if last_user_text(r).startswith("You are asked to come up with a set of 20 diverse")]
    bootstrap = [r for r in records if last_user_text(r).startswith("Come up with a series of tasks:\n")]
    assert alpaca and bootstrap and len(alpaca) + len(bootstrap) == len(records)
    seeds = {re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":") for task in prompts.seed_tasks()}
    seeds |= {re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":") for task in prompts.seed_tasks(code=True)}
    for record in alpaca:
        assert {k: record["body"][k] for k in ("temperature", "top_p", "max_tokens", "stop", "logit_bias")} == {
            "temperature": 1.0, "top_p": 1.0, "max_tokens": 3072, "stop": ["\n20", "20.", "20."],
            "logit_bias": {"50256": -100}}
        shown = re.findall(r"^\d\. Instruction: (.*)$", last_user_text(record), re.MULTILINE)
        assert len(shown) == 3 and set(shown) <= seeds
        assert last_user_text(record).endswith("###\n4. Instruction:")
    assert all(r["body"]["temperature"] == 0.7 and r["body"]["top_p"] == 0.5 for r in bootstrap)
    for records_of_key in by_key(alpaca).values():
        starts = [r["ts"] for i, r in enumerate(records_of_key) if i % ALPACA_BATCH == 0]
        assert gap_cv(starts) < 0.1, "batches of five leave on a regular clock"


def test_a_harvesting_job_ends_when_its_data_set_is_complete():
    for records in by_key(sample("burst_harvester", hours=24, limit=100_000, job_requests=(500, 500))).values():
        assert len(records) == 500


def test_a_harvester_rarely_repeats_a_prompt():
    for records in by_key(sample("burst_harvester", keys=10, limit=4000)).values():
        texts = [last_user_text(r) for r in records]
        assert len(set(texts)) > 0.9 * len(texts)


def test_low_and_slow_stays_under_the_default_and_the_throttled_limits():
    limits = LimitsConfig().tiers
    for records in by_key(sample("low_and_slow", hours=6, limit=10_000)).values():
        stamps = [r["ts"] for r in records]
        busiest_minute = max(sum(1 for ts in stamps[i:i + 20] if ts < start + 60) for i, start in enumerate(stamps))
        assert busiest_minute < limits["throttled"].requests.limit < limits["default"].requests.limit
        per_minute = (len(records) - 1) / ((records[-1]["ts"] - records[0]["ts"]) / 60)
        assert 0.8 <= per_minute <= 3.3
        reserved = max(r["usage"]["prompt_tokens"] + r["body"]["max_tokens"] * r["body"].get("n", 1) for r in records)
        assert busiest_minute * reserved < limits["default"].tokens.limit


def test_reasoning_harvester_asks_for_reasoning_in_several_languages():
    markers = {"en": "step by step", "zh": "请一步一步思考", "es": "paso a paso", "fr": "étape par étape",
               "de": "Schritt für Schritt", "ja": "ステップバイステップで"}
    seen = set()
    for record in sample("reasoning_harvester", keys=12, limit=3000):
        found = {language for language, marker in markers.items() if marker in last_user_text(record)}
        assert found, last_user_text(record)
        seen |= found
    assert len(seen) >= 5


def test_logprob_harvester_asks_for_top_logprobs_of_label_tokens_or_whole_answers():
    records = sample("logprob_harvester", keys=10, limit=3000)
    modes = set()
    for record in records:
        body = record["body"]
        assert body["logprobs"] is True and body["top_logprobs"] in (5, 10, 20)
        modes.add("labels" if body["max_tokens"] <= 5 else "answers")
        if body["max_tokens"] <= 5:
            assert record["usage"]["completion_tokens"] == body["max_tokens"]
    assert modes == {"labels", "answers"}


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


# --- the default mixes and the command line -------------------------------------------------

def test_the_benign_mix_adds_up_and_keeps_its_proportions():
    assert sum(BENIGN_MIX.values()) == pytest.approx(1.0)
    assert all(SCENARIOS[name].label == "benign" for name in BENIGN_MIX)
    for keys in (1, 7, 2000):
        assert sum(benign_mix(keys).values()) == keys
    assert benign_mix(2000)["casual_user"] == 2000 * BENIGN_MIX["casual_user"]
    assert attack_mix(3) == {name: 3 for name, s in SCENARIOS.items() if s.label == "attack"}


def test_simulate_writes_the_benign_mix_and_every_attack_byte_for_byte_again(tmp_path):
    path = tmp_path / "sim.jsonl.gz"
    arguments = ["--out", str(path), "--benign", "60", "--attacks", "1", "--hours", "1", "--seed", "9",
                 "--param", "burst_harvester.rate_per_s=0.2,0.3", "--param", "logprob_harvester.rate_per_s=[0.2, 0.3]",
                 *(part for name in PUBLIC_RECORD_FAMILIES for part in ("--param", f"{name}.job_requests=50,100"))]
    distillguard(["simulate", *arguments])
    first = path.read_bytes()
    assert python_m_traffic(["simulate", *arguments]) == 0
    assert path.read_bytes() == first
    records = list(read_traffic(path, key_id_of))
    scenarios = {r.scenario for r in records}
    assert {"casual_user", "api_customer", "burst_harvester", "logprob_harvester"} <= scenarios
    assert 5 <= len({r.key_id for r in records if r.label == "benign"}) <= 60
    burst = [r.ts for r in records if r.scenario == "burst_harvester"]
    assert 0.2 * 3600 * 0.9 <= len(burst) <= 0.3 * 3600 * 1.1


def test_simulate_adds_named_scenarios_and_refuses_bad_ones(tmp_path, capsys):
    out = tmp_path / "named.jsonl"
    distillguard(["simulate", "--out", str(out), "--scenario", "casual_user=2", "--scenario", "rag_service=1",
                  "--hours", "24", "--seed", "1"])
    assert {r.scenario for r in read_traffic(out, key_id_of)} == {"casual_user", "rag_service"}
    for bad, message in ((["--scenario", "nope=1"], "unknown scenario 'nope'"),
                         (["--scenario", "rag_service=1", "--param", "rag_service.speed=2"], "no parameter speed"),
                         (["--scenario", "rag_service=1", "--param", "rag_service=2"], "SCENARIO.NAME=VALUE"),
                         ([], "nothing to simulate")):
        with pytest.raises(SystemExit) as exit_info:
            distillguard(["simulate", "--out", str(out), *bad])
        assert message in str(exit_info.value)


# --- families of the public record and the honest automation that resembles them -------------


def test_synthetic_dialogues_feed_one_conversations_answer_to_the_other_as_its_user_turn():
    records = sample("synthetic_dialogues", keys=6, hours=6, limit=600)
    user_turns = {m["content"] for r in records for m in r["body"]["messages"] if m["role"] == "user"}
    model_turns = {m["content"] for r in records for m in r["body"]["messages"] if m["role"] == "assistant"}
    assert len(user_turns & model_turns) >= 20, "the model's own answers come back as the user's turns"


def test_agent_trajectories_offer_tools_and_send_their_results_back_with_a_new_tool_set_per_task():
    records = sample("agent_trajectory_harvester", keys=2, hours=6, limit=400)
    assert all(r["body"]["tools"] for r in records)
    assert any(m["role"] == "tool" for r in records for m in r["body"]["messages"])
    tool_sets = {tuple(t["function"]["name"] for t in r["body"]["tools"]) for r in records}
    assert len(tool_sets) >= 10
    product = sample("agent_product", keys=1, hours=24, limit=300)
    assert len({tuple(t["function"]["name"] for t in r["body"]["tools"]) for r in product}) == 1


def test_evol_instruct_rewrites_instructions_before_answering_them():
    texts = [last_user_text(r) for r in sample("evol_instruct", keys=4, hours=6, limit=800)]
    rewrites = [t for t in texts if "#The Given Prompt#" in t or "#Given Prompt#" in t or "#给定提示#" in t
                or "#Instrucción dada#" in t]
    assert rewrites and len(rewrites) < len(texts), "rewrite requests and answering requests both occur"


def test_reward_grading_rates_several_answers_to_one_instruction_against_a_rubric():
    texts = [last_user_text(r) for r in sample("reward_grading", keys=6, hours=6, limit=600)]
    assert any("<text 4>" in t for t in texts) or any("[[A]]" in t for t in texts)
