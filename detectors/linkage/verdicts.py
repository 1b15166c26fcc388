"""A group of linked keys -> its verdict, scored on what no single key shows.

Flagged when the group is big enough, what it asks for together is harvest-shaped
(single-turn, long sampled answers, reasoning, logprobs) and it shows two of the signs of
one operator: one template family, activity that rises and falls together, work split
evenly over the keys. A public benchmark (the same prompts word for word) is not a
campaign. A member is flagged with it only if it matches the rest on two counts of its
own (template, rhythm, the group's characteristic client values), so an honest key caught in the
group by chance is left to its own detectors.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..base import Reason
from .config import LinkageConfig
from .evidence import CLASSES
from .population import BLOCKING_KINDS, Population
from .signature import BEHAVIOUR

# What one operator's keys show together and independent keys do not; a cluster must show two.
COORDINATION = ("template_coherence", "synchrony", "volume_evenness")
SIGNAL_NAMES = {"ips": "address prefix", "agents": "user agent", "orders": "header order", "systems": "system prompt",
                "sampling": "sampling vector"}
FITS = ("template", "timing", "client")
EVEN_SPLIT_MIN_KEYS = 10  # fewer keys split work evenly by chance too often
OWN_SHARE = 0.8
ENRICHED = 20.0


@dataclass(frozen=True)
class ClusterVerdict:
    """One group of linked keys: who, how strongly linked, what they do together, verdict."""

    cluster_id: str
    members: tuple[str, ...]
    score: float
    flagged: bool
    properties: dict[str, float]
    evidence: dict[str, int]  # edges inside the cluster carrying each class of evidence
    shared_values: tuple[dict, ...]  # values most members send with, and how many keys have them overall
    reasons: tuple[Reason, ...]
    member_fit: dict[str, tuple[float, float, float]]  # key_id -> its FITS to the rest of the cluster

    @property
    def size(self) -> int:
        return len(self.members)

    def as_dict(self) -> dict:
        return {
            "cluster_id": self.cluster_id, "size": self.size, "members": list(self.members),
            "score": round(self.score, 4), "flagged": self.flagged,
            "requests_24h": int(self.properties["requests_24h"]),
            "properties": {name: round(value, 4) for name, value in self.properties.items()},
            "evidence": dict(self.evidence),
            "shared_values": [{"signal": item["signal"], "value": format(item["value"], "x"), "members": item["members"],
                               "keys_overall": item["keys_overall"], "characteristic": item["characteristic"]}
                              for item in self.shared_values],
            "reasons": [reason.as_dict() for reason in self.reasons],
        }


def leave_one_out(vectors: np.ndarray) -> np.ndarray:
    """Each member's cosine with the sum of the others: near 0 for independent keys however
    many, near 1 for keys that move as one."""
    if len(vectors) < 2:
        return np.zeros(len(vectors))
    others = vectors.sum(axis=0)[None, :] - vectors
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(others, axis=1)
    return np.einsum("ij,ij->i", vectors, others) / np.maximum(norms, 1e-9)


def cluster_id(key_ids: list[str]) -> str:
    """Named after its smallest member, so it keeps its name while that key stays in it."""
    return "lk-" + hashlib.blake2b(min(key_ids).encode(), digest_size=5).hexdigest()


class ClusterScorer:
    def __init__(self, population: Population, config: LinkageConfig,
                 document_frequency: Callable[[str, int], int]) -> None:
        self.population = population
        self.config = config
        self.document_frequency = document_frequency

    def score(self, rows: np.ndarray, edge_evidence: np.ndarray, edge_overlap: np.ndarray) -> ClusterVerdict:
        """`edge_evidence`, `edge_overlap`: those of the edges inside the cluster."""
        pop, config = self.population, self.config
        shared = self._shared_values(rows)
        fits = self._fits(rows, shared)
        properties = self._properties(rows, fits, edge_overlap)
        shown = [name for name in COORDINATION if properties[name] >= self._bar(name)]
        size = len(rows)
        flagged = (size >= config.min_members and properties["harvest_shaped_share"] >= config.harvest_min
                   and len(shown) >= 2 and properties["prompt_overlap"] < config.benchmark_overlap)
        signs = sorted((min(max(properties[name], 0.0), 1.0) for name in COORDINATION), reverse=True)
        coordination = (signs[0] + signs[1]) / 2
        score = (0.4 * properties["harvest_shaped_share"] + 0.4 * coordination
                 + 0.2 * min(1.0, math.log(size) / math.log(100)))
        evidence = {name: int((edge_evidence[:, n] >= config.class_min).sum()) for n, name in enumerate(CLASSES)}
        key_ids = [pop.key_ids[row] for row in rows.tolist()]
        identifier = cluster_id(key_ids)
        reasons = self._reasons(identifier, size, len(edge_evidence), properties, evidence, shared)
        member_fit = {key_id: (float(t), float(s), float(c)) for key_id, t, s, c in zip(key_ids, *fits)}
        return ClusterVerdict(identifier, tuple(sorted(key_ids)), min(score, 1.0), flagged, properties, evidence,
                              tuple(shared), reasons, member_fit)

    def _bar(self, sign: str) -> float:
        """One template family means near-identical centroids; a shared topic (maths
        questions, say) reaches 0.5-0.75 and is no sign of one operator."""
        return self.config.family_min if sign == "template_coherence" else self.config.coordination_min

    def _shared_values(self, rows: np.ndarray) -> list[dict]:
        """Values at least half the members send with, the evidence a reviewer reads; each
        `characteristic` of the cluster if most keys that have it at all are in the cluster
        (a script's settings) or it is `ENRICHED` times commoner in the cluster than among
        all keys. An SDK's user agent or an app's settings are neither."""
        pop, shared = self.population, []
        for kind in BLOCKING_KINDS:
            values = pop.values[kind][rows]
            held = values[(values != 0) & (pop.shares[kind][rows] >= self.config.min_token_share)]
            for value, members in Counter(held.tolist()).most_common(2):
                if 2 * members < len(rows):
                    break
                overall = max(self.document_frequency(kind, value), members)
                enrichment = (members / len(rows)) / (overall / len(pop))
                shared.append({"signal": SIGNAL_NAMES[kind], "kind": kind, "value": value, "members": members,
                               "keys_overall": overall,
                               "characteristic": members >= OWN_SHARE * overall or enrichment >= ENRICHED})
        return shared

    def _fits(self, rows: np.ndarray, shared: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How well each member matches the rest: its template centroid and its activity
        against the others' (0 where it has too few prompts or events to say), and the
        share of its traffic sent with the cluster's characteristic client values."""
        pop = self.population
        template, timing, client = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows))
        has_template, has_timing = pop.template_ok[rows], pop.timing_ok[rows]
        template[has_template] = leave_one_out(pop.centroid[rows[has_template]])
        timing[has_timing] = leave_one_out(pop.timing[rows[has_timing]])
        for item in shared:
            if item["characteristic"]:
                kind = item["kind"]
                match = pop.values[kind][rows] == np.uint64(item["value"])
                client = np.maximum(client, np.where(match, pop.shares[kind][rows], 0.0).max(axis=1))
        return template, timing, client

    def _properties(self, rows: np.ndarray, fits: tuple[np.ndarray, ...], edge_overlap: np.ndarray) -> dict:
        pop = self.population
        has_template, has_timing = pop.template_ok[rows], pop.timing_ok[rows]
        counts = pop.behaviour[rows].sum(axis=0)
        per_key = (pop.behaviour[rows] / np.maximum(pop.recent[rows], 1)[:, None]).mean(axis=0)
        share = {name: float(per_key[n]) for n, name in enumerate(BEHAVIOUR)}  # each key counts once
        volume = pop.day_requests[rows]
        low, middle, high = np.percentile(volume, (25, 50, 75))
        heads: Counter = Counter()
        for row in rows.tolist():
            for value, fraction in zip(pop.values["heads"][row].tolist(), pop.shares["heads"][row].tolist()):
                if value:
                    heads[value] += fraction * pop.recent[row]
        return {
            "size": float(len(rows)),
            "requests_24h": float(volume.sum()),
            "requests_per_key_24h": float(volume.mean()),
            "template_coherence": float(fits[0][has_template].mean()) if has_template.sum() >= 2 else 0.0,
            "synchrony": float(fits[1][has_timing].mean()) if has_timing.sum() >= 2 else 0.0,
            "volume_evenness": max(0.0, 1.0 - float(high - low) / max(float(middle), 1.0))
            if len(rows) >= EVEN_SPLIT_MIN_KEYS else 0.0,
            "harvest_shaped_share": share["harvest_shaped"],
            "single_turn_share": share["single_turn"],
            "sampled_share": share["sampled"],
            "long_answer_share": share["long_answer"],
            "reasoning_share": share["reasoning"],
            "logprobs_share": share["logprobs"],
            "completion_to_prompt_ratio": float(counts[BEHAVIOUR.index("completion_tokens")])
            / max(float(counts[BEHAVIOUR.index("prompt_tokens")]), 1.0),
            "task_focus": sum(count for _, count in heads.most_common(3)) / max(float(pop.recent[rows].sum()), 1.0),
            "prompt_overlap": float(edge_overlap.mean()) if len(edge_overlap) else 0.0,
        }

    def _reasons(self, identifier: str, size: int, edge_count: int, p: dict[str, float], evidence: dict[str, int],
                 shared: list[dict]) -> tuple[Reason, ...]:
        config = self.config
        floor = (-1.0, config.coordination_min)  # where independent keys' signs stay
        joined = ", ".join(f"{name} {count}" for name, count in evidence.items() if count)
        values = "; ".join(f"{item['signal']} {item['value']:x} ({item['members']} of {size} members, "
                           f"{item['keys_overall']} keys overall)" for item in shared) or "no value most members share"
        return (
            Reason("linked_keys", "cluster_size", float(size), (1.0, float(config.min_members - 1)),
                   f"cluster {identifier}: {size} keys joined by {edge_count} edges (edges carrying each kind of "
                   f"evidence: {joined}); shared: {values}"),
            Reason("harvest_character", "harvest_shaped_share", p["harvest_shaped_share"], (0.0, config.harvest_min),
                   f"single-turn {p['single_turn_share']:.0%}, sampled {p['sampled_share']:.0%}, long answers "
                   f"{p['long_answer_share']:.0%}, reasoning asked {p['reasoning_share']:.0%}, logprobs "
                   f"{p['logprobs_share']:.0%}, {p['completion_to_prompt_ratio']:.1f} answer tokens per prompt token"),
            Reason("one_template_family", "template_coherence", p["template_coherence"], (-1.0, config.family_min),
                   "how closely each member's prompts match the template centroid of the others (independent "
                   "keys: about 0)"),
            Reason("synchronised_activity", "synchrony", p["synchrony"], floor,
                   "how each member's 30-minute activity, beyond the gateway's daily rhythm, follows the rest of "
                   "the cluster's (people: about 0)"),
            Reason("even_split", "volume_evenness", p["volume_evenness"], floor,
                   f"1 - interquartile range / median of the members' daily requests: a scheduler splits work "
                   f"evenly, people do not; {p['requests_24h']:.0f} requests in 24 h together, "
                   f"{p['requests_per_key_24h']:.1f} per key"),
            Reason("task_focus", "task_focus", p["task_focus"], None,
                   "share of the cluster's requests opening with its three most common template openings"),
            Reason("shared_benchmark", "prompt_overlap", p["prompt_overlap"], (0.0, config.benchmark_overlap),
                   "exact prompts linked keys both sent (Jaccard); high means one public benchmark, not a campaign"),
        )

