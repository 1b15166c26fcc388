"""What two keys share, per class of evidence, and whether that makes an edge.

Vectorised over candidate pairs, in chunks so memory stays bounded however many pairs the
buckets give. See config.py for the classes, their weights and the edge rule.
"""

from __future__ import annotations

import numpy as np

from .config import BEHAVIOURAL, LinkageConfig
from .population import Population

CLASSES = ("template", "timing", "network", "client")
CLIENT_KINDS = ("agents", "orders", "systems", "sampling")
CHUNK = 100_000


def rarity(population: Population, config: LinkageConfig) -> dict[str, np.ndarray]:
    """Per kind, an (n, k) weight for each of a key's top values from how many keys have
    it: values shared by very many keys (an SDK's user agent, a carrier's prefix) weigh
    little instead of joining everything."""
    n = len(population)
    rare = max(config.rare_keys, config.rare_share * n)
    popular = max(config.popular_keys, config.popular_share * n, 2 * rare)
    weights = {}
    for kind, values in population.values.items():
        present = values[values != 0]
        distinct, keys = np.unique(present, return_counts=True)
        df = np.zeros(values.shape)
        found = values != 0
        df[found] = keys[np.searchsorted(distinct, values[found])]
        weight = np.log(popular / np.maximum(df, 1)) / np.log(popular / rare)
        weights[kind] = np.where(found, np.clip(weight, 0.0, 1.0), 0.0).astype(np.float32)
    return weights


def prompt_overlap(population: Population, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Jaccard of the two keys' exact-prompt samples: near 1 for teams running one
    benchmark, near 0 for keys of one template family with their own fillers."""
    a, b = population.prompts[first], population.prompts[second]
    same = (a[:, :, None] == b[:, None, :]) & (a != 0)[:, :, None]
    shared = same.any(axis=2).sum(axis=1)
    union = population.prompt_counts[first] + population.prompt_counts[second] - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 0.0)


def _shared(population: Population, weights: dict[str, np.ndarray], kind: str, first: np.ndarray,
            second: np.ndarray) -> np.ndarray:
    """The strongest value both keys have: min of its two shares times its rarity."""
    values, shares = population.values[kind], population.shares[kind]
    a, b = values[first], values[second]
    match = (a[:, :, None] == b[:, None, :]) & (a != 0)[:, :, None]
    strength = np.zeros(len(first))
    hit = np.flatnonzero(match.any(axis=(1, 2)))  # most pairs share nothing of this kind
    if len(hit):
        i, j = first[hit], second[hit]
        share = np.minimum(shares[i][:, :, None], shares[j][:, None, :]) * weights[kind][i][:, :, None]
        strength[hit] = np.where(match[hit], share, 0.0).max(axis=(1, 2))
    return strength


def _ramp(value: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    low, high = bounds
    return np.clip((value - low) / (high - low), 0.0, 1.0)


def pair_evidence(population: Population, pairs: np.ndarray, weights: dict[str, np.ndarray],
                  config: LinkageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(evidence (p, 4) in CLASSES order, each 0..1; exact-prompt overlap (p,)), with
    `weights` the `rarity` of each key's values."""
    evidence = np.zeros((len(pairs), len(CLASSES)), dtype=np.float32)
    overlap = np.zeros(len(pairs), dtype=np.float32)
    for at in range(0, len(pairs), CHUNK):
        first, second = pairs[at:at + CHUNK, 0], pairs[at:at + CHUNK, 1]
        rows = slice(at, at + len(first))
        cosine = np.einsum("ij,ij->i", population.centroid[first], population.centroid[second])
        template_ok = population.template_ok[first] & population.template_ok[second]
        template = np.where(template_ok, _ramp(cosine, config.template_cosine), 0.0)
        similar = np.flatnonzero(template > 0)  # keys sending the same prompts have similar centroids too
        shared_prompts = np.zeros(len(first))
        shared_prompts[similar] = prompt_overlap(population, first[similar], second[similar])
        overlap[rows] = shared_prompts
        evidence[rows, 0] = template * (1 - shared_prompts)
        correlation = np.einsum("ij,ij->i", population.timing[first], population.timing[second])
        timing_ok = population.timing_ok[first] & population.timing_ok[second]
        evidence[rows, 1] = np.where(timing_ok, _ramp(correlation, config.timing_correlation), 0.0)
        evidence[rows, 2] = _shared(population, weights, "ips", first, second)
        unexplained = np.ones(len(first))
        for kind in CLIENT_KINDS:
            unexplained *= 1 - _shared(population, weights, kind, first, second)
        evidence[rows, 3] = 1 - unexplained
    return evidence, overlap


def edges(evidence: np.ndarray, config: LinkageConfig) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs are edges, and every pair's weighted evidence. An edge needs weighted
    evidence of at least `edge_min`, from at least two classes of at least `class_min`,
    one of them behavioural."""
    weight = evidence @ np.asarray([config.weights[name] for name in CLASSES], dtype=np.float32)
    strong = evidence >= config.class_min
    behavioural = strong[:, [CLASSES.index(name) for name in BEHAVIOURAL]].any(axis=1)
    return (weight >= config.edge_min) & (strong.sum(axis=1) >= 2) & behavioural, weight
