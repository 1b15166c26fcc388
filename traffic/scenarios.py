"""Named, labelled traffic scenarios and the seeded generator that mixes them.

`generate({"burst_harvester": 2, "heavy_developer": 20}, hours=24, seed=1)` yields traffic
records (raw keys `sk-sim-<scenario>-<n>`) of every key merged in ts order, each labelled
with its scenario, so detectors can be trained and scored against ground truth. The same
arguments always give the same records; memory holds one pending record per key.
"""

from __future__ import annotations

import heapq
import operator
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from . import agents, apps, attacks, automation, harvest_pipelines, honest, hydra, shared_honest, variation

ATTACK, BENIGN = "attack", "benign"
DEFAULT_START_TS = 1732492800.0  # Monday 25 November 2024, 00:00 UTC

ScenarioRun = Callable[[random.Random, str, float, float, Mapping], Iterator[dict]]
GroupDraw = Callable[[random.Random, Mapping], dict]


@dataclass(frozen=True)
class Scenario:
    """One kind of client: how a key behaves (`run`), its ground-truth label, the ranges its
    keys draw their habits from, and, for groups of keys acting together, what they share."""

    run: ScenarioRun
    label: str
    params: Mapping = field(default_factory=dict)
    group: GroupDraw | None = None
    group_size_param: str | None = None
    family: str | None = None  # scenarios that are variants of one practice share it (hydra); else the name
    pinned: frozenset[str] = frozenset()  # what `randomise` leaves as the family sends it (traffic/variation.py)

    def family_of(self, name: str) -> str:
        """The practice a scenario's keys belong to: what `--hold-out-families` leaves out."""
        return self.family or name

    @property
    def description(self) -> str:
        """The real practice the scenario models (first line of its docstring)."""
        return (self.run.__doc__ or "").strip().splitlines()[0]


HYDRA = {"network_size": 20, "per_day": (20, 30), "paraphrase": False, "residential": False,
         "reseller_share": 0.0, "waves": (2, 4)}
HYDRA_VARIANTS = {
    "hydra": {}, "hydra_paraphrase": {"paraphrase": True}, "hydra_residential": {"residential": True},
    "hydra_residential_paraphrase": {"residential": True, "paraphrase": True},
    "hydra_reseller": {"reseller_share": 0.5},
}

JOB = (2000, 20000)  # requests a fast harvesting job sends before its data set is complete

SCENARIOS: dict[str, Scenario] = {
    "burst_harvester": Scenario(attacks.burst_harvester, ATTACK,
                                {"rate_per_s": (0.5, 4.0), "generation_share": 0.5, "job_requests": JOB}),
    "low_and_slow": Scenario(attacks.low_and_slow, ATTACK, {"per_minute": (1.0, 3.0)}),
    "reasoning_harvester": Scenario(attacks.reasoning_harvester, ATTACK,
                                    {"rate_per_s": (0.05, 0.5), "job_requests": JOB}),
    "logprob_harvester": Scenario(attacks.logprob_harvester, ATTACK,
                                  {"rate_per_s": (0.5, 5.0), "sequence_share": 0.5, "job_requests": JOB}),
    "topic_sweep": Scenario(attacks.topic_sweep, ATTACK, {"rate_per_s": (0.05, 1.0), "job_requests": JOB}),
    "paraphrase_harvester": Scenario(attacks.paraphrase_harvester, ATTACK,
                                     {"rate_per_s": (0.05, 0.5), "job_requests": JOB}),
    "human_timing_harvester": Scenario(attacks.human_timing_harvester, ATTACK, {"median_gap_s": (15.0, 90.0)}),
    "fake_history_harvester": Scenario(attacks.fake_history_harvester, ATTACK,
                                       {"rate_per_s": (0.05, 1.0), "job_requests": JOB}),
    "greedy_harvester": Scenario(attacks.greedy_harvester, ATTACK, {"rate_per_s": (0.05, 1.0), "job_requests": JOB},
                                 pinned=frozenset({"temperature"})),
    # Families of the public record (traffic/harvest_pipelines.py, traffic/agents.py).
    "evol_instruct": Scenario(harvest_pipelines.evol_instruct, ATTACK, {"rate_per_s": (0.05, 2.0), "job_requests": JOB}),
    "synthetic_dialogues": Scenario(harvest_pipelines.synthetic_dialogues, ATTACK,
                                    {"rate_per_s": (0.05, 2.0), "job_requests": JOB}),
    "reward_grading": Scenario(harvest_pipelines.reward_grading, ATTACK, {"rate_per_s": (0.05, 2.0), "job_requests": JOB}),
    "reasoning_trace_distillation": Scenario(harvest_pipelines.reasoning_trace_distillation, ATTACK,
                                             {"rate_per_s": (0.02, 0.5), "job_requests": JOB}),
    "sequence_logprob_harvester": Scenario(harvest_pipelines.sequence_logprob_harvester, ATTACK,
                                           {"rate_per_s": (0.05, 1.0), "job_requests": JOB},
                                           pinned=frozenset({"logprobs"})),
    "code_harvest": Scenario(harvest_pipelines.code_harvest, ATTACK, {"rate_per_s": (0.05, 1.0), "job_requests": JOB}),
    "agent_trajectory_harvester": Scenario(agents.agent_trajectory_harvester, ATTACK,
                                           {"rate_per_s": (0.1, 3.0), "job_requests": JOB},
                                           pinned=frozenset({"tools"})),
    **{  # hydra networks (traffic/hydra.py): one campaign over many keys, each evasion its own variant
        name: Scenario(hydra.hydra_member, ATTACK, {**HYDRA, **variant}, group=hydra.hydra_network,
                       group_size_param="network_size", family="hydra")
        for name, variant in HYDRA_VARIANTS.items()
    },
    "heavy_developer": Scenario(honest.heavy_developer, BENIGN),
    "support_chatbot": Scenario(honest.support_chatbot, BENIGN,
                                {"volume_scale": 0.002, "max_requests_per_day": 5000.0, "chats_per_day": None}),
    "rag_service": Scenario(honest.rag_service, BENIGN,
                            {"volume_scale": 0.002, "max_requests_per_day": 3000.0, "queries_per_day": None}),
    "batch_document_job": Scenario(honest.batch_document_job, BENIGN,
                                   {"gap_s": (0.5, 3.0), "chunks_per_run": (300, 3000)}),
    "benchmark_run": Scenario(honest.benchmark_run, BENIGN),
    "office_nat": Scenario(honest.office_nat, BENIGN, {"office_size": 12, "chats_per_day": (3.0, 30.0)},
                           group=honest.office_nat_office, group_size_param="office_size"),
    "casual_user": Scenario(honest.casual_user, BENIGN, {"chats_per_day": (1.0, 12.0)}),
    # What honest keys share (traffic/shared_honest.py): the hard negatives of key linkage.
    "popular_app_user": Scenario(shared_honest.popular_app_user, BENIGN,
                                 {"app_users": 1000, "chats_per_day": (1.0, 6.0)},
                                 group=shared_honest.popular_app, group_size_param="app_users"),
    "benchmark_team": Scenario(shared_honest.benchmark_team, BENIGN, {"teams": 50},
                               group=shared_honest.shared_benchmark, group_size_param="teams"),
    "carrier_user": Scenario(shared_honest.carrier_user, BENIGN,
                             {"carrier_users": 500, "chats_per_day": (1.0, 12.0)},
                             group=shared_honest.mobile_carrier, group_size_param="carrier_users"),
    "reseller_key": Scenario(shared_honest.reseller_key, BENIGN, {"reseller_keys": 50, "chats_per_day": (3.0, 7.0)},
                             group=shared_honest.reseller, group_size_param="reseller_keys"),
    "api_customer": Scenario(apps.api_customer, BENIGN,
                             {"volume_scale": 0.002, "max_requests_per_day": 3000.0, "max_prompt_tokens": 16384}),
    "reasoning_app_user": Scenario(apps.reasoning_app_user, BENIGN,
                                   {"volume_scale": 0.01, "max_requests_per_day": 2000.0}),
    # Honest automation that resembles harvesting (traffic/automation.py, traffic/agents.py).
    "intent_classifier": Scenario(automation.intent_classifier, BENIGN,
                                  {"volume_scale": 0.002, "max_requests_per_day": 5000.0},
                                  pinned=frozenset({"cap", "logprobs", "n"})),
    "llm_judge_eval": Scenario(automation.llm_judge_eval, BENIGN, {"cases": (50, 800)}),
    "agent_product": Scenario(agents.agent_product, BENIGN, {"volume_scale": 0.002, "max_requests_per_day": 3000.0},
                              pinned=frozenset({"tools"})),
    "document_pipeline": Scenario(automation.document_pipeline, BENIGN, {"rate_per_s": (0.01, 0.3)}),
    "prompt_optimisation": Scenario(automation.prompt_optimisation, BENIGN, {"trials": (10, 60)}),
    "test_question_generation": Scenario(automation.test_question_generation, BENIGN, {"chunks": (100, 3000)}),
    "content_writer": Scenario(automation.content_writer, BENIGN,
                               {"volume_scale": 0.002, "max_requests_per_day": 3000.0}),
}

# `--benign N`: N honest keys in these proportions (docs/scenarios.md says why): mostly
# people and production apps, some heavy developers, a few bots, batch jobs and offices.
BENIGN_MIX = {
    "casual_user": 0.52, "api_customer": 0.15, "heavy_developer": 0.12, "office_nat": 0.08,
    "reasoning_app_user": 0.06, "support_chatbot": 0.02, "rag_service": 0.02, "benchmark_run": 0.02,
    "batch_document_job": 0.01,
}


def benign_mix(keys: int) -> dict[str, int]:
    """`keys` honest keys split by BENIGN_MIX (largest remainders, so the counts add up)."""
    exact = {name: keys * share for name, share in BENIGN_MIX.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (counts[name] - exact[name], name))
    for name in by_remainder[: keys - sum(counts.values())]:
        counts[name] += 1
    return {name: count for name, count in counts.items() if count}


def attack_mix(keys: int) -> dict[str, int]:
    """`keys` keys of every attack scenario."""
    return {name: keys for name, scenario in SCENARIOS.items() if scenario.label == ATTACK} if keys else {}


def generate(scenarios: Mapping[str, int], hours: float, seed: int, **options) -> Iterator[dict]:
    """Labelled records of `scenarios` (name -> number of keys) over `hours`, in ts order.

    Each key draws from its own `random.Random(f"{seed}:{name}:{index}")`, so adding a
    scenario never changes another's keys. `params` overrides a scenario's defaults, e.g.
    `{"hydra": {"network_size": 50}}`. Group scenarios (hydra, office_nat) split their keys
    into groups of `network_size` / `office_size` that share a template or an address.
    `randomise` makes every key also re-draw how it sends (traffic/variation.py). `options`
    are `key_streams`'s: `start_ts`, `params`, `randomise`.
    """
    streams = [stream for _, stream in key_streams(scenarios, hours, seed, **options)]
    return heapq.merge(*streams, key=operator.itemgetter("ts"))


def key_streams(
    scenarios: Mapping[str, int],
    hours: float,
    seed: int,
    *,
    start_ts: float = DEFAULT_START_TS,
    params: Mapping[str, Mapping] | None = None,
    randomise: bool = False,
) -> list[tuple[str, Iterator[dict]]]:
    """(raw key, its labelled records in ts order) for every key `generate` merges."""
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    for name, overrides in (params or {}).items():
        if name not in SCENARIOS:
            raise ValueError(f"parameters for unknown scenario {name!r}")
        misspelt = sorted(set(overrides) - set(SCENARIOS[name].params))
        if misspelt:
            raise ValueError(f"{name} has no parameter {', '.join(misspelt)}; "
                             f"its parameters: {', '.join(SCENARIOS[name].params) or 'none'}")
    duration_s = hours * 3600.0
    streams = []
    for name, key_count in scenarios.items():
        scenario = SCENARIOS[name]
        settings = {**scenario.params, **(params or {}).get(name, {})}
        groups: dict[int, dict] = {}
        for index in range(key_count):
            key_settings = settings
            if scenario.group is not None:
                number = index // max(1, int(settings[scenario.group_size_param]))
                if number not in groups:
                    groups[number] = scenario.group(random.Random(f"{seed}:{name}:group:{number}"), settings)
                key_settings = {**settings, "group": groups[number]}
            key = f"sk-sim-{name}-{index}"
            records = scenario.run(random.Random(f"{seed}:{name}:{index}"), key, start_ts, duration_s, key_settings)
            if randomise:
                rng = random.Random(f"{seed}:{name}:{index}:variation")
                drawn = variation.draw(rng, scenario.label, scenario.pinned)
                records = variation.vary(records, drawn, rng, start_ts, start_ts + duration_s)
            streams.append((key, _labelled(records, scenario.label, name, scenario.family_of(name))))
    return streams


def _labelled(records: Iterator[dict], label: str, name: str, family: str) -> Iterator[dict]:
    for record in records:
        record["label"] = label
        record["scenario"] = name
        record["family"] = family
        yield record
