"""The clustering pass: signatures -> buckets -> candidate pairs -> edges -> clusters ->
verdicts, and a per-key Verdict for every member of a flagged cluster, which goes through
the same decision ladder as the per-key detectors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..base import Reason, Verdict
from .clusters import communities, two_core
from .config import LinkageConfig
from .evidence import CLASSES, edges, pair_evidence, rarity
from .index import LinkageIndex
from .population import build_population
from .signature import KeySignature
from .verdicts import FITS, ClusterScorer, ClusterVerdict


@dataclass
class LinkageResult:
    clusters: list[ClusterVerdict]  # flagged first, then by size
    member_verdicts: dict[str, Verdict]  # key_id -> verdict, for members of flagged clusters
    stats: dict[str, float] = field(default_factory=dict)

    def cluster_of(self, key_id: str) -> ClusterVerdict | None:
        return next((cluster for cluster in self.clusters if key_id in cluster.members), None)


class LinkageDetector:
    """Periodic, over every active key's signature; pure and synchronous like the others."""

    name = "linkage"

    def __init__(self, config: LinkageConfig | None = None) -> None:
        self.config = config or LinkageConfig()

    def run(self, signatures: Mapping[str, KeySignature], now: float) -> LinkageResult:
        """Cluster every key active in the window ending `now`; flag what must be flagged."""
        config, clock = self.config, _Stages()
        population = build_population(signatures, now, config)
        clock.lap("population")
        index = LinkageIndex(population, config)
        pairs = index.candidate_pairs()
        clock.lap("buckets")
        evidence, overlap = pair_evidence(population, pairs, rarity(population, config), config)
        clock.lap("evidence")
        linked, weight = edges(evidence, config)
        pairs, evidence, overlap, weight = pairs[linked], evidence[linked], overlap[linked], weight[linked]
        core = two_core(pairs, len(population))
        pairs, evidence, overlap, weight = pairs[core], evidence[core], overlap[core], weight[core]
        groups = communities(pairs, weight, len(population))
        clock.lap("communities")
        labels = np.full(len(population), -1)
        for number, rows in enumerate(groups):
            labels[rows] = number
        inside = labels[pairs[:, 0]] == labels[pairs[:, 1]] if len(pairs) else np.zeros(0, dtype=bool)
        order = np.argsort(np.where(inside, labels[pairs[:, 0]], -1), kind="stable") if len(pairs) else inside
        edge_label = np.where(inside, labels[pairs[:, 0]], -1)[order] if len(pairs) else np.zeros(0, dtype=np.int64)
        bounds = np.searchsorted(edge_label, np.arange(len(groups) + 1))
        scorer = ClusterScorer(population, config, index.document_frequency)
        clusters, verdicts = [], {}
        for number, rows in enumerate(groups):
            mine = order[bounds[number]:bounds[number + 1]]
            cluster = scorer.score(rows, evidence[mine], overlap[mine])
            clusters.append(cluster)
            if cluster.flagged:
                verdicts.update(_member_verdicts(cluster, population.key_ids, rows, pairs[mine], evidence[mine],
                                                 config))
        clusters.sort(key=lambda cluster: (not cluster.flagged, -cluster.size))
        clock.lap("verdicts")
        stats = {"keys": len(signatures), "active": len(population), "eligible": int(population.eligible.sum()),
                 "buckets": len(index.sizes), "capped_buckets": int((index.sizes > config.bucket_cap).sum()),
                 "comparisons": index.comparisons, "edges": len(pairs), "clusters": len(clusters),
                 "flagged_clusters": sum(c.flagged for c in clusters), "seconds": round(clock.total(), 3),
                 "stage_seconds": clock.stages}
        return LinkageResult(clusters, verdicts, stats)


class _Stages:
    """Wall time of each stage of a pass, for the pass's stats."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.started


def _member_verdicts(cluster: ClusterVerdict, key_ids: list[str], rows: np.ndarray, pairs: np.ndarray,
                     evidence: np.ndarray, config: LinkageConfig) -> dict[str, Verdict]:
    """A verdict for each member that matches the rest on two counts of its own (template,
    rhythm, the cluster's own client values; a key caught in the cluster by what it shares
    innocently is left to its own detectors), with the cluster's reasons and its ties."""
    position = {row: n for n, row in enumerate(rows.tolist())}
    ends = np.vectorize(position.__getitem__, otypes=[np.int64])(pairs) if len(pairs) else pairs
    degree = np.bincount(ends.ravel(), minlength=len(rows))
    carried = np.zeros((len(rows), len(CLASSES)), dtype=bool)
    strong = evidence >= config.class_min
    for end in (0, 1):
        np.logical_or.at(carried, ends[:, end], strong)
    verdicts = {}
    for n, row in enumerate(rows.tolist()):
        key_id = key_ids[row]
        fit = cluster.member_fit[key_id]
        matching = [name for name, value, bar in zip(FITS, fit, config.member_fit) if value >= bar]
        if len(matching) < 2:
            continue
        classes = ", ".join(name for c, name in enumerate(CLASSES) if carried[n, c])
        member = Reason("linked_to_cluster", "member_fit", sorted(fit)[1], None,
                        f"member of cluster {cluster.cluster_id} ({cluster.size} keys, score {cluster.score:.2f}): "
                        f"linked to {int(degree[n])} of them by {classes}; matches the rest on "
                        + ", ".join(f"{name} {value:.2f} (needs {bar:g})"
                                    for name, value, bar in zip(FITS, fit, config.member_fit)),
                        cluster_id=cluster.cluster_id)
        verdicts[key_id] = Verdict("linkage", cluster.score, True, (member, *cluster.reasons))
    return verdicts
