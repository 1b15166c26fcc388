"""A key's linkage signature: bounded whatever the key sends, stored without pickle, and
describing the key's recent traffic."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from detectors.features import RequestFeatures
from detectors.linkage import MAX_BYTES, KeySignature
from detectors.linkage.signature import ACTIVITY_BUCKET_S, HALVE_AT, PROMPT_SAMPLE, TOP
from detectors.linkage.typical import TYPICAL_BITS
from detectors.text import fingerprint_window, template_fingerprint

START = 1_700_000_000.0

BASE = RequestFeatures(
    ts=START, key_id="k", path="/v1/chat/completions", prompt_chars=400, prompt_tokens=100,
    completion_tokens=700, message_count=1, system_hash="", user_hash="00000000000000aa", template_fp=0xF0F0,
    template_head=7, model="gpt-4o", max_tokens=4096, temperature=0.8, top_p=-1.0, n=1, logprobs=False,
    top_logprobs=0, stream=False, has_tools=False, response_format="", reasoning_marker=False,
    reasoning_effort="", ip_prefix="0123456789ab", ua_hash="ba9876543210", status=200, latency_ms=900.0,
    header_order="00000000000f",
)


def event(**fields) -> RequestFeatures:
    return dataclasses.replace(BASE, **fields)


def hostile_event(rng: random.Random, ts: float) -> RequestFeatures:
    """Every value new: the worst case for a bounded signature."""
    return event(
        ts=ts, template_fp=rng.getrandbits(64), template_head=rng.getrandbits(32),
        system_hash=format(rng.getrandbits(64), "016x"), user_hash=format(rng.getrandbits(64), "016x"),
        ip_prefix=format(rng.getrandbits(48), "012x"), ua_hash=format(rng.getrandbits(48), "012x"),
        header_order=format(rng.getrandbits(48), "012x"), model=f"m{rng.random()}", max_tokens=rng.randint(1, 9999),
        message_count=rng.choice((1, 3)), completion_tokens=rng.randint(0, 4000),
    )


def test_signature_round_trips_through_bytes():
    rng = random.Random(1)
    signature = KeySignature()
    for n in range(300):
        signature.update(hostile_event(rng, START + n * 37.0))
    assert KeySignature.from_bytes(signature.to_bytes()) == signature


def test_signature_stays_within_its_stated_size_whatever_the_key_sends():
    rng = random.Random(2)
    signature = KeySignature()
    for n in range(3 * HALVE_AT):
        signature.update(hostile_event(rng, START + n * 5.0))
    assert all(len(signature.tops[kind]) <= k for kind, k in TOP.items())
    assert len(signature.prompts) == PROMPT_SAMPLE
    blob = signature.to_bytes()
    assert len(blob) <= MAX_BYTES <= 1024
    assert KeySignature.from_bytes(blob) == signature


def test_a_blob_that_is_no_signature_is_refused():
    with pytest.raises(ValueError, match="signature"):
        KeySignature.from_bytes(b"not a signature")
    truncated = KeySignature().to_bytes()[:-3]
    with pytest.raises(ValueError):
        KeySignature.from_bytes(truncated)


def test_activity_older_than_a_day_is_forgotten():
    signature = KeySignature()
    signature.update(event(ts=START))
    signature.update(event(ts=START + 60))
    later = START + 30 * 3600
    signature.update(event(ts=later))
    now_bucket = int(later // ACTIVITY_BUCKET_S)
    counts = signature.activity_ending(now_bucket)
    assert sum(counts) == 1 and counts[-1] == 1


def test_activity_is_counted_in_ten_minute_buckets_ending_now():
    signature = KeySignature()
    for minutes in (0, 3, 12, 125):
        signature.update(event(ts=START + minutes * 60))
    first = int(START // ACTIVITY_BUCKET_S)  # START is 200 s into its bucket
    counts = signature.activity_ending(first + 12)
    assert (sum(counts), counts[131:133], counts[143]) == (4, [2, 1], 1)


def test_counts_are_halved_so_the_signature_follows_recent_traffic():
    signature = KeySignature()
    for n in range(HALVE_AT):
        signature.update(event(ts=START + n, temperature=0.0))
    for n in range(HALVE_AT // 4):
        signature.update(event(ts=START + HALVE_AT + n, temperature=0.8))
    sampled = signature.behaviour[1] / signature.recent
    assert signature.recent == HALVE_AT // 2 + HALVE_AT // 4
    assert sampled == pytest.approx(1 / 3)  # without halving: 1/5
    assert max(signature.vote_counts()) < 2**15


def test_follow_up_turns_vote_for_no_template():
    signature = KeySignature()
    signature.update(event(message_count=1, template_fp=0b1011))
    signature.update(event(message_count=3, template_fp=0b0100))  # "thanks, shorter please" in a chat
    assert signature.voted == 1
    assert signature.vote_counts()[:4] == [1, 1, 0, 1]


def test_the_same_prompt_is_sampled_once():
    signature = KeySignature()
    for _ in range(5):
        signature.update(event(user_hash="00000000000000ff"))
    signature.update(event(user_hash="0000000000000001"))
    assert signature.prompts == [1, 255]


def test_typical_bits_are_those_of_real_human_prompts():
    """Regenerates detectors/linkage/typical.py's reference: if the fingerprint changes,
    this fails, and the printed values are the new TYPICAL_BITS."""
    from traffic import prompts

    texts = list(prompts.human_prompts()) + list(prompts.coding_prompts())
    bits = np.array([[template_fingerprint(fingerprint_window(text))[0] >> i & 1 for i in range(64)] for text in texts])
    measured = bits.mean(axis=0)
    assert np.abs(measured - np.asarray(TYPICAL_BITS)).max() < 0.002, np.round(measured, 3).tolist()
