"""Buckets of keys that share something, and the candidate pairs they give.

Each key lands in a few buckets: one per LSH band of its template centroid and of its
activity (random-hyperplane bits, so keys at high cosine share a band), and one per value
that covers a fair share of its traffic (address prefix, user agent, header order, system
prompt, sampling vector). Only keys in a common bucket are ever compared, so a key's
neighbours cost the size of its buckets, never a scan of all keys.

A bucket larger than `bucket_cap` (a carrier's prefix, an app's system prompt, a big
network's settings) is not compared all-pairs: each member is paired with its
`ring_span` next members in two orders (by template code and by activity code, ties in a
fixed random order), the sorted-neighbourhood method of record linkage. Cost stays linear
in the bucket's size, and a network inside a popular bucket still meets itself, since the
orders put keys of one template or one rhythm side by side. A bucket of a value held by
a "popular" share of all keys (an SDK's user agent and header order) gives no pairs at
all: it is evidence of nothing, and keys that share more are found through other buckets.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import LinkageConfig
from .population import BLOCKING_KINDS, Population

KIND_IDS = {"template": 1, "timing": 2, **{kind: 3 + n for n, kind in enumerate(BLOCKING_KINDS)}}
KIND_NAMES = {number: kind for kind, number in KIND_IDS.items()}
_VALUE_BITS = 56
_VALUE_MASK = np.uint64((1 << _VALUE_BITS) - 1)


def hyperplanes(dimensions: int, config: LinkageConfig, salt: int) -> np.ndarray:
    rng = np.random.default_rng([config.seed, salt])
    return rng.standard_normal((dimensions, config.bands * config.band_bits)).astype(np.float32)


def band_codes(vectors: np.ndarray, planes: np.ndarray, config: LinkageConfig) -> np.ndarray:
    """(n, bands) integer codes: the sign bits of each band's projections."""
    bits = (vectors @ planes > 0).reshape(len(vectors), config.bands, config.band_bits)
    return bits.astype(np.int64) @ (1 << np.arange(config.band_bits, dtype=np.int64))


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values; a plain sort, several times faster here than np.unique's hashing."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


@lru_cache(maxsize=512)
def _pairs_within(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(size, 1)


class LinkageIndex:
    """Bucket -> sorted member rows, with each bucket's size (its document frequency)."""

    def __init__(self, population: Population, config: LinkageConfig) -> None:
        self.config = config
        self.size = len(population)
        self.eligible = population.eligible
        template_codes = band_codes(population.centroid, hyperplanes(64, config, 1), config)
        timing_codes = band_codes(population.timing, hyperplanes(population.timing.shape[1], config, 2), config)
        tokens, rows = self._tokens(population, template_codes, timing_codes)
        order = np.lexsort((rows, tokens))
        self.tokens, self.rows = tokens[order], rows[order]
        self.bucket_tokens, self.starts, self.sizes = np.unique(self.tokens, return_index=True, return_counts=True)
        self._by_row = np.argsort(self.rows, kind="stable")
        self._row_starts = np.searchsorted(self.rows[self._by_row], np.arange(self.size + 1))
        random_rank = np.random.default_rng([config.seed, 3]).permutation(self.size)
        self.orders = (template_codes[:, 0] * self.size + random_rank, timing_codes[:, 0] * self.size + random_rank)
        self.comparisons = 0
        # A value held by this many keys is everyone's (an SDK's default headers): no pairs.
        self.popular = max(config.popular_keys, config.popular_share * self.size)

    def _tokens(self, population: Population, template_codes: np.ndarray,
                timing_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (bucket token, row): kind in the top 8 bits, band and code or value below."""
        config = self.config
        tokens, rows = [], []
        band_tag = np.arange(config.bands, dtype=np.int64)[None, :] << 32
        for kind, codes, ok in (("template", template_codes, population.template_ok),
                                ("timing", timing_codes, population.timing_ok)):
            chosen = np.flatnonzero(ok)
            tagged = (np.int64(KIND_IDS[kind]) << _VALUE_BITS) | band_tag | codes[chosen]
            tokens.append(tagged.ravel().astype(np.uint64))
            rows.append(np.repeat(chosen, config.bands))
        for kind in BLOCKING_KINDS:
            values, shares = population.values[kind], population.shares[kind]
            row, column = np.nonzero((values != 0) & (shares >= config.min_token_share))
            tokens.append((np.uint64(KIND_IDS[kind]) << np.uint64(_VALUE_BITS)) | (values[row, column] & _VALUE_MASK))
            rows.append(row)
        return np.concatenate(tokens), np.concatenate(rows).astype(np.int64)

    # --- pairs ---------------------------------------------------------------------------

    def candidate_pairs(self) -> np.ndarray:
        """Unique (i, j), i < j, of keys sharing a bucket; counts them in `comparisons`."""
        cap, found = self.config.bucket_cap, []
        for size in np.unique(self.sizes[(self.sizes >= 2) & (self.sizes <= cap)]):
            starts = self.starts[self.sizes == size]
            members = self.rows[starts[:, None] + np.arange(size)]
            first, second = _pairs_within(int(size))
            found.append(np.stack((members[:, first].ravel(), members[:, second].ravel()), axis=1))
        for bucket in np.flatnonzero((self.sizes > cap) & (self.sizes <= self.popular)):
            found.append(self._ring_pairs(self._members(bucket)))
        if not found:
            return np.zeros((0, 2), dtype=np.int64)
        pairs = np.concatenate(found)
        pairs = np.sort(pairs, axis=1)
        pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & self.eligible[pairs[:, 0]] & self.eligible[pairs[:, 1]]]
        codes = distinct(pairs[:, 0] * self.size + pairs[:, 1])
        self.comparisons += len(codes)
        return np.stack((codes // self.size, codes % self.size), axis=1)

    def _members(self, bucket: int) -> np.ndarray:
        return self.rows[self.starts[bucket]:self.starts[bucket] + self.sizes[bucket]]

    def _ring_pairs(self, members: np.ndarray) -> np.ndarray:
        pairs = []
        for rank in self.orders:
            ordered = members[np.argsort(rank[members], kind="stable")]
            for step in range(1, self.config.ring_span + 1):
                pairs.append(np.stack((ordered[:-step], ordered[step:]), axis=1))
        return np.concatenate(pairs)

    def neighbours(self, row: int) -> np.ndarray:
        """The rows one key is compared with: members of its buckets (ring neighbours in
        capped ones). Touches only those buckets; counts the rows in `comparisons`."""
        mine = np.unique(self.tokens[self._by_row[self._row_starts[row]:self._row_starts[row + 1]]])
        found = []
        for bucket in np.searchsorted(self.bucket_tokens, mine):
            members = self._members(bucket)
            if len(members) <= self.config.bucket_cap:
                found.append(members)
                continue
            if len(members) > self.popular:
                continue
            for rank in self.orders:
                ordered = members[np.argsort(rank[members], kind="stable")]
                at = int(np.flatnonzero(ordered == row)[0])
                span = self.config.ring_span
                found.append(ordered[max(0, at - span):at + span + 1])
        result = np.setdiff1d(np.concatenate(found) if found else np.zeros(0, dtype=np.int64), [row])
        result = result[self.eligible[result]]
        self.comparisons += len(result)
        return result

    def document_frequency(self, kind: str, value: int) -> int:
        """Keys whose top values include `value` in a share enough to block on."""
        token = (np.uint64(KIND_IDS[kind]) << np.uint64(_VALUE_BITS)) | (np.uint64(value) & _VALUE_MASK)
        at = np.searchsorted(self.bucket_tokens, token)
        return int(self.sizes[at]) if at < len(self.bucket_tokens) and self.bucket_tokens[at] == token else 0
