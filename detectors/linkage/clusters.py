"""Edges -> groups of keys: the 2-core of the edge graph, then communities within it.

Keys with fewer than two edges are pruned (repeatedly), so one chance edge cannot hang an
honest key on a network; communities (weighted label propagation) rather than connected
components, so two networks touching through a few thousand chance edges stay two.
"""

from __future__ import annotations

import numpy as np


def two_core(pairs: np.ndarray, n: int) -> np.ndarray:
    """Which edges are left after repeatedly removing keys with fewer than two edges."""
    keep = np.ones(len(pairs), dtype=bool)
    while True:
        degree = np.bincount(pairs[keep].ravel(), minlength=n)
        weak = keep & ((degree[pairs[:, 0]] < 2) | (degree[pairs[:, 1]] < 2))
        if not weak.any():
            return keep
        keep &= ~weak


def communities(pairs: np.ndarray, weights: np.ndarray, n: int, rounds: int = 20) -> list[np.ndarray]:
    """Rows of each community of at least two keys, largest first, by weighted label
    propagation: every key takes the label its edges weigh most for, half of the keys at a
    time (fully synchronous updates can flip-flop). Two networks joined by a few thousand
    chance edges stay two communities, where connected components would merge them."""
    if len(pairs) == 0:
        return []
    labels = np.arange(n)
    source = np.concatenate((pairs[:, 0], pairs[:, 1]))
    target = np.concatenate((pairs[:, 1], pairs[:, 0]))
    weight = np.concatenate((weights, weights)).astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        codes = target * n + labels[source]
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
        totals = np.add.reduceat(weight[order], starts)
        codes = codes[starts]
        keys, candidates = codes // n, codes % n
        order = np.lexsort((candidates, -totals, keys))  # per key: heaviest label first, then smallest
        first = np.ones(len(order), dtype=bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        best = np.full(n, -1)
        best[keys[order][first]] = candidates[order][first]
        wanting = (best >= 0) & (best != labels)
        if wanting.sum() <= n // 1000:  # settled, but for a few keys torn between two labels
            break
        labels = np.where(wanting & (rng.random(n) < 0.5), best, labels)
    linked = np.unique(pairs.ravel())
    groups: dict[int, list[int]] = {}
    for row, label in zip(linked.tolist(), labels[linked].tolist()):
        groups.setdefault(label, []).append(row)
    return sorted((np.asarray(rows) for rows in groups.values() if len(rows) >= 2), key=len, reverse=True)
