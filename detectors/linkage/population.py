"""The keys of one pass as arrays: signatures -> centroids, activity, top values, behaviour.

One Python loop over the signatures fills preallocated arrays; everything after it (LSH,
evidence, cluster properties) is vectorised over keys or pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .config import LinkageConfig
from .signature import (
    ACTIVITY_BUCKET_S,
    ACTIVITY_BUCKETS,
    BEHAVIOUR,
    PROMPT_SAMPLE,
    TOKEN_KINDS,
    TOP,
    KeySignature,
)

POOL = 3  # 10-minute buckets pooled to 30 minutes for timing: fewer, fuller bins
TIMING_BINS = ACTIVITY_BUCKETS // POOL
MIN_ACTIVE_BINS = 4
BLOCKING_KINDS = ("ips", "agents", "orders", "systems", "sampling")  # exact values keys are grouped by


@dataclass
class Population:
    """Row i of every array is key `key_ids[i]`."""

    key_ids: list[str]
    eligible: np.ndarray  # enough requests to be linked
    recent: np.ndarray  # requests the behaviour counts cover
    day_requests: np.ndarray  # requests in the last 24 hours
    centroid: np.ndarray  # (n, 64) unit vectors: the key's bit shares less ordinary text's
    template_ok: np.ndarray
    activity: np.ndarray  # (n, 48) requests per 30 minutes, oldest first
    timing: np.ndarray  # (n, 48) activity less the overall rhythm's share, unit length
    timing_ok: np.ndarray
    values: dict[str, np.ndarray]  # kind -> (n, k) top values, 0 = none
    shares: dict[str, np.ndarray]  # kind -> (n, k) share of the key's requests
    prompts: np.ndarray  # (n, 16) bottom-16 exact prompt hashes, 0 = none
    prompt_counts: np.ndarray
    behaviour: np.ndarray  # (n, len(BEHAVIOUR)) counts

    def __len__(self) -> int:
        return len(self.key_ids)


def build_population(signatures: Mapping[str, KeySignature], now: float, config: LinkageConfig) -> Population:
    """Every key active in the window, in `signatures` order. All of them count for how
    common a value is; only `eligible` ones (enough requests) are linked."""
    chosen = [(key_id, sig) for key_id, sig in signatures.items() if sig.last_ts >= now - config.window_s]
    sigs = [sig for _, sig in chosen]
    n = len(sigs)
    now_bucket = int(now // ACTIVITY_BUCKET_S)
    recent = np.fromiter((sig.recent for sig in sigs), dtype=np.float64, count=n)
    voted = np.fromiter((sig.voted for sig in sigs), dtype=np.float64, count=n)
    newest = np.fromiter((sig.newest_bucket for sig in sigs), dtype=np.int64, count=n)
    votes = np.frombuffer(b"".join(sig.votes.to_bytes(128, "little") for sig in sigs), dtype="<u2")
    votes = votes.reshape(n, 64).astype(np.float32)
    rings = np.frombuffer(b"".join(sig.activity.tobytes() for sig in sigs), dtype=np.uint16)
    rings = rings.reshape(n, ACTIVITY_BUCKETS).astype(np.float32)
    behaviour = np.asarray([sig.behaviour for sig in sigs], dtype=np.float64).reshape(n, len(BEHAVIOUR))
    prompt_counts = np.fromiter((len(sig.prompts) for sig in sigs), dtype=np.int64, count=n)
    prompts = _padded((sig.prompts for sig in sigs), n, PROMPT_SAMPLE)
    values, counts = {}, {}
    for kind in TOKEN_KINDS:
        values[kind] = _padded((sig.tops[kind] for sig in sigs), n, TOP[kind])  # dict order: any order will do
        counts[kind] = _padded((sig.tops[kind].values() for sig in sigs), n, TOP[kind]).astype(np.float32)
    activity = _aligned(rings, newest, now_bucket).reshape(n, TIMING_BINS, POOL).sum(axis=2)
    centroid, template_ok = _centroids(votes, voted, config.template_min_prompts, config.typical_bits)
    timing, timing_ok = _timing(activity, config.timing_min_events)
    eligible = recent >= config.min_requests
    shares = {kind: counts[kind] / np.maximum(recent, 1)[:, None] for kind in TOKEN_KINDS}
    return Population([key_id for key_id, _ in chosen], eligible, recent, activity.sum(axis=1), centroid,
                      template_ok & eligible, activity, timing, timing_ok & eligible, values, shares, prompts,
                      prompt_counts, behaviour)


def _padded(rows, n: int, width: int) -> np.ndarray:
    """Rows of up to `width` unsigned ints as an (n, width) array, zeros after each row's end."""
    flat: list[int] = []
    for row in rows:
        row = list(row)
        flat.extend(row)
        flat.extend([0] * (width - len(row)))
    return np.asarray(flat, dtype=np.uint64).reshape(n, width)


def _aligned(rings: np.ndarray, newest: np.ndarray, now_bucket: int) -> np.ndarray:
    """Each key's ring as the 144 buckets ending now; slots not written since a bucket
    was last current (or written after `now`) read 0."""
    buckets = now_bucket - ACTIVITY_BUCKETS + 1 + np.arange(ACTIVITY_BUCKETS)
    aligned = rings[:, buckets % ACTIVITY_BUCKETS]
    fresh = (buckets[None, :] <= newest[:, None]) & (buckets[None, :] > newest[:, None] - ACTIVITY_BUCKETS)
    return np.where(fresh, aligned, np.float32(0.0))


def _centroids(votes: np.ndarray, voted: np.ndarray, min_prompts: int,
               typical: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bit shares less those of ordinary text (typical.py), as unit vectors: what every
    prompt has in common cancels out, what a key's prompts share remains."""
    ok = voted >= min_prompts
    shares = votes / np.maximum(voted, 1)[:, None] - np.asarray(typical, dtype=np.float32)
    norms = np.linalg.norm(shares, axis=1)
    ok &= norms > 1e-6
    centroid = np.where(ok[:, None], shares / np.maximum(norms, 1e-9)[:, None], 0.0).astype(np.float32)
    return centroid, ok


def _timing(activity: np.ndarray, min_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Each key's activity less what the gateway's overall rhythm predicts for it, as a unit
    vector: two keys correlate only where they both depart from the day everybody follows
    (so early in a window, when every key's activity is recent, nobody correlates for that).
    A key active in fewer than `MIN_ACTIVE_BINS` half-hours (one benchmark run, one burst)
    has no timing evidence: it matches anything busy at that moment."""
    totals = activity.sum(axis=1)
    rhythm = (activity / np.maximum(totals, 1)[:, None]).sum(axis=0)  # every key counts once
    rhythm /= max(float(rhythm.sum()), 1e-9)
    residual = activity - totals[:, None] * rhythm[None, :]
    norms = np.linalg.norm(residual, axis=1)
    spread = (activity > 0).sum(axis=1) >= MIN_ACTIVE_BINS
    ok = (totals >= min_events) & spread & (norms > 1e-9)
    timing = np.where(ok[:, None], residual / np.maximum(norms, 1e-9)[:, None], 0.0).astype(np.float32)
    return timing, ok
