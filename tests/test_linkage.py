"""Linking keys that act as one: hydra networks of every size are flagged, including one
that paraphrases per key, while what honest keys share innocently flags nobody.

Every test runs the simulator's traffic through the real features, signatures and
clustering pass, with a pass every four simulated hours over one day. Each hard negative
shares its population with a small network, so a test that flags nothing also shows the
detector was awake.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from functools import cache

import pytest

from detectors.features import RequestFeatures
from detectors.linkage import KeySignature, LinkageConfig, LinkageDetector
from detectors.linkage.config import WEIGHTS
from detectors.linkage.index import LinkageIndex
from detectors.linkage.population import build_population
from detectors.linkage.typical import TYPICAL_BITS
from service.offline.linkage import LinkageRun
from service.offline.scoring import record_features, score_records
from traffic.format import TrafficRecord
from traffic.scenarios import DEFAULT_START_TS, generate
from traffic.shared_honest import headers_of

SALT = b"linkage-test"
DAY = 24 * 3600
BACKGROUND = {"casual_user": 150, "heavy_developer": 10, "api_customer": 3, "reasoning_app_user": 16,
              "office_nat": 24, "benchmark_run": 4}


def records(mix: dict, params: dict | None = None, seed: int = 3, rewrite=None):
    for item in generate(mix, hours=24, seed=seed, params=params):
        if rewrite is not None:
            rewrite(item)
        yield TrafficRecord(item["ts"], hashlib.sha256(item["key"].encode()).hexdigest()[:16], item["ip"],
                            item["method"], item["path"], item.get("headers") or {}, item.get("body"), item["label"],
                            item["scenario"], item.get("status"), item.get("latency_ms"), item.get("usage"))


@cache
def day_of(mix_items: tuple, params_items: tuple = (), every_h: float = 4.0, weights: tuple = ()):
    """One simulated day with a pass every `every_h` hours: (first pass flagging each key,
    scenario of each key, the last pass's result)."""
    mix, params = dict(mix_items), {name: dict(p) for name, p in params_items}
    config = LinkageConfig(weights={**WEIGHTS, **dict(weights)}) if weights else LinkageConfig()
    detector, signatures, scenario, flagged = LinkageDetector(config), {}, {}, {}
    next_pass, result = DEFAULT_START_TS + every_h * 3600, None
    for record in records(mix, params):
        while record.ts >= next_pass:
            result = detector.run(signatures, next_pass)
            for key_id in result.member_verdicts:
                flagged.setdefault(key_id, next_pass)
            next_pass += every_h * 3600
        scenario[record.key_id] = record.scenario
        signatures.setdefault(record.key_id, KeySignature()).update(record_features(record, SALT))
    while next_pass <= DEFAULT_START_TS + DAY:
        result = detector.run(signatures, next_pass)
        for key_id in result.member_verdicts:
            flagged.setdefault(key_id, next_pass)
        next_pass += every_h * 3600
    return flagged, scenario, result


def share_flagged(flagged: dict, scenario: dict, name: str) -> float:
    keys = [key_id for key_id, of in scenario.items() if of == name]
    return sum(key_id in flagged for key_id in keys) / len(keys)


def honest_flagged(flagged: dict, scenario: dict) -> list[str]:
    return sorted(scenario[key_id] for key_id in flagged if not scenario[key_id].startswith("hydra"))


def frozen(mapping: dict) -> tuple:
    return tuple(sorted(mapping.items()))


# --- networks ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [20, 100, 500])
def test_a_network_of_keys_each_under_30_requests_a_day_is_flagged_within_the_day(size):
    mix = {**BACKGROUND, "hydra": size}
    flagged, scenario, _ = day_of(frozen(mix), (("hydra", frozen({"network_size": size})),))
    assert share_flagged(flagged, scenario, "hydra") >= 0.9
    assert max(flagged.values()) <= DEFAULT_START_TS + DAY
    assert honest_flagged(flagged, scenario) == []


def test_a_network_paraphrasing_per_key_is_linked_through_its_other_signals():
    mix = {**BACKGROUND, "hydra_residential_paraphrase": 100}
    params = (("hydra_residential_paraphrase", frozen({"network_size": 100})),)
    flagged, scenario, result = day_of(frozen(mix), params)
    assert share_flagged(flagged, scenario, "hydra_residential_paraphrase") >= 0.9
    cluster = result.clusters[0]
    assert cluster.flagged and cluster.properties["template_coherence"] < 0.5  # no shared template to find
    blind, scenario, _ = day_of(frozen(mix), params, weights=(("template", 0.0),))
    assert share_flagged(blind, scenario, "hydra_residential_paraphrase") >= 0.9
    assert honest_flagged(flagged, scenario) == honest_flagged(blind, scenario) == []


def test_keys_carrying_half_a_networks_traffic_beside_honest_customers_are_flagged():
    mix = {**BACKGROUND, "hydra_reseller": 60}
    flagged, scenario, _ = day_of(frozen(mix), (("hydra_reseller", frozen({"network_size": 60})),))
    assert share_flagged(flagged, scenario, "hydra_reseller") >= 0.9
    assert honest_flagged(flagged, scenario) == []


# --- hard negatives -----------------------------------------------------------------------

WITNESS = {"hydra_residential": 20}  # a small network in every population: the detector is awake


def assert_only_the_witness_is_flagged(mix: dict, params: tuple = ()):
    flagged, scenario, _ = day_of(frozen({**BACKGROUND, **WITNESS, **mix}), params)
    assert share_flagged(flagged, scenario, "hydra_residential") >= 0.9
    assert honest_flagged(flagged, scenario) == []


def test_users_of_a_popular_app_with_one_fixed_system_prompt_are_not_flagged():
    assert_only_the_witness_is_flagged({"popular_app_user": 400}, (("popular_app_user", frozen({"app_users": 400})),))


def test_teams_running_one_public_benchmark_are_not_flagged():
    assert_only_the_witness_is_flagged({"benchmark_team": 60}, (("benchmark_team", frozen({"teams": 60})),))


def test_subscribers_behind_one_mobile_carriers_addresses_are_not_flagged():
    assert_only_the_witness_is_flagged({"carrier_user": 300}, (("carrier_user", frozen({"carrier_users": 300})),))


def test_colleagues_behind_one_office_address_are_not_flagged():
    assert_only_the_witness_is_flagged({"office_nat": 60}, (("office_nat", frozen({"office_size": 30})),))


def test_an_honest_resellers_keys_are_not_flagged():
    assert_only_the_witness_is_flagged({"reseller_key": 50}, (("reseller_key", frozen({"reseller_keys": 50})),))


def test_keys_sending_with_one_popular_sdks_user_agent_and_headers_are_not_flagged():
    sdk = headers_of("openai-python", "OpenAI/Python 1.54.4")

    def through_the_sdk(item: dict) -> None:
        if not item["scenario"].startswith("hydra"):
            item["headers"] = dict(sdk)

    mix = {**BACKGROUND, **WITNESS, "casual_user": 300}
    flagged, scenario = {}, {}
    detector, signatures = LinkageDetector(), {}
    for record in records(mix, rewrite=through_the_sdk):
        scenario[record.key_id] = record.scenario
        signatures.setdefault(record.key_id, KeySignature()).update(record_features(record, SALT))
    for hours in (12, 24):
        flagged.update(dict.fromkeys(detector.run(signatures, DEFAULT_START_TS + hours * 3600).member_verdicts))
    assert share_flagged(flagged, scenario, "hydra_residential") >= 0.9
    assert honest_flagged(flagged, scenario) == []


# --- scale, explanations, the ladder ----------------------------------------------------------


def synthetic_signatures(honest: int, network: int) -> dict[str, KeySignature]:
    """Honest keys with their own addresses and prompts but one of five popular user agents
    (buckets far over the cap), and one network sharing a template and a sampling vector."""
    rng = random.Random(5)
    base = RequestFeatures(
        ts=DEFAULT_START_TS, key_id="", path="/v1/chat/completions", prompt_chars=400, prompt_tokens=100,
        completion_tokens=700, message_count=1, system_hash="", user_hash="", template_fp=0, template_head=1,
        model="gpt-4o", max_tokens=0, temperature=0.7, top_p=-1.0, n=1, logprobs=False, top_logprobs=0,
        stream=False, has_tools=False, response_format="", reasoning_marker=False, reasoning_effort="",
        ip_prefix="", ua_hash="", status=200, latency_ms=800.0, header_order="")
    family = rng.getrandbits(64)
    signatures = {}
    for n in range(honest + network):
        in_network = n < network
        key, signature = f"k{n}", KeySignature()
        for _ in range(20):
            fp = family ^ sum(1 << b for b in range(64) if rng.random() < 0.2) if in_network else \
                sum(1 << b for b, share in enumerate(TYPICAL_BITS) if rng.random() < share)  # ordinary text
            signature.update(dataclasses.replace(
                base, key_id=key, ts=DEFAULT_START_TS + rng.uniform(0, DAY), template_fp=fp,
                user_hash=format(rng.getrandbits(64), "016x"), ip_prefix=format(rng.getrandbits(40), "012x"),
                ua_hash=format(rng.randrange(5), "012x"), max_tokens=4096 if in_network else rng.randrange(9999)))
        signatures[key] = signature
    return signatures


def test_finding_neighbours_compares_a_key_with_its_buckets_never_all_keys():
    config = LinkageConfig()
    population = build_population(synthetic_signatures(3000, 50), DEFAULT_START_TS + DAY, config)
    index = LinkageIndex(population, config)
    n = len(population)
    assert (index.sizes > config.bucket_cap).any()  # the popular user agents
    pairs = index.candidate_pairs()
    assert 0 < index.comparisons == len(pairs) < 40 * n  # linear in the keys: all pairs would be 1,525 n
    before = index.comparisons
    neighbours = index.neighbours(population.key_ids.index("k0"))
    assert index.comparisons - before == len(neighbours) < n / 20
    network = {population.key_ids.index(f"k{m}") for m in range(1, 50)}
    assert len(network & set(neighbours.tolist())) >= 40


def test_a_flagged_member_is_told_which_cluster_and_what_joined_it():
    _, _, result = day_of(frozen({**BACKGROUND, "hydra": 20}), (("hydra", frozen({"network_size": 20})),))
    cluster = next(cluster for cluster in result.clusters if cluster.flagged)
    verdict = result.member_verdicts[cluster.members[0]]
    assert verdict.detector == "linkage" and verdict.flagged and verdict.score == cluster.score
    member, linked, harvest, *_ = verdict.reasons
    assert cluster.cluster_id in member.detail and "linked to" in member.detail and "template" in member.detail
    assert member.cluster_id == cluster.cluster_id and member.as_dict()["cluster_id"] == cluster.cluster_id
    assert f"{cluster.size} keys joined by" in linked.detail and "keys overall" in linked.detail
    assert harvest.detail.startswith("single-turn 9") and "long answers" in harvest.detail and harvest.value >= 0.9
    listed = cluster.as_dict()
    assert listed["size"] == cluster.size and listed["requests_24h"] > 0 and listed["shared_values"]
    assert all(reason["detail"] for reason in listed["reasons"])


def test_per_key_detection_alone_misses_a_network_that_linkage_flags_through_the_ladder():
    from service.config import load_settings
    from service.scoring.detection import build_pipeline

    mix, params = {"hydra": 20, "casual_user": 30}, {"hydra": {"network_size": 20}}
    settings = load_settings(None)
    alone = score_records(records(mix, params), SALT, build_pipeline(settings))
    linked = score_records(records(mix, params), SALT, build_pipeline(settings), LinkageRun(every_s=3 * 3600))
    hydra = [key_id for key_id, outcome in alone.keys.items() if outcome.scenario == "hydra"]
    assert not any(alone.keys[key_id].flag for key_id in hydra)
    flags = [linked.keys[key_id].flag for key_id in hydra]
    assert sum(flag is not None for flag in flags) >= 18
    flag = next(flag for flag in flags if flag)
    assert flag["detector"] == "linkage" and flag["reasons"][0]["detail"].startswith("member of cluster lk-")
    assert not any(outcome.flag for outcome in linked.keys.values() if outcome.label == "benign")
