"""One key's linkage signature: what it shares with other keys, in bounded memory.

Updated once per event with constant work (a few dict updates and integer adds), and read
by the clustering pass. Everything is counts over hashes the features already carry; no
prompt text. Counts are halved whenever `recent` reaches `HALVE_AT`, so the signature describes
the key's recent traffic and never overflows.

Fields (and why each is there):
  votes / voted     per-bit counts of the template SimHash over the key's single-turn
                    prompts: the key's template *centroid*. Keys of one template family
                    converge on the family's centroid even when single prompts differ by
                    20+ bits; follow-up turns ("shorter, please") are no template.
  heads             top template openings (first four masked words): the tasks asked for.
  systems, ips, agents, orders, sampling
                    top system prompts, client /24 or /64 prefixes, user agents, header
                    orders and sampling vectors (model, temperature, top_p, max_tokens, n,
                    logprobs, format, effort): what a script or an app fixes.
  prompts           bottom-16 sample of exact prompt hashes: tells a shared benchmark (the
                    same prompts sent by many keys) from a template family (other fillers).
  activity          requests per 10 minutes over the last 24 hours, as a ring.
  behaviour         counts of single-turn, sampled, long-answer, harvest-shaped,
                    reasoning, logprob, system-prompt and multi-choice requests, and token sums.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass, field
from functools import lru_cache

from ..features import RequestFeatures
from ..task_sketch import keep_smallest

ACTIVITY_BUCKET_S = 600
ACTIVITY_BUCKETS = 144  # 24 hours
HALVE_AT = 4096
PROMPT_SAMPLE = 16
TOP = {"heads": 8, "systems": 3, "ips": 4, "agents": 3, "orders": 3, "sampling": 3}
TOKEN_KINDS = tuple(TOP)
BEHAVIOUR = ("single_turn", "sampled", "long_answer", "harvest_shaped", "reasoning", "logprobs", "system_prompt",
             "multi_choice", "prompt_tokens", "completion_tokens")
LONG_ANSWER_TOKENS = 256
MAX_COUNT = 2**32 - 1

# Template votes: 64 counters of 16 bits packed in one int (bit i of a fingerprint adds 1 to
# lane i), so a vote is 8 table lookups and one big-int add instead of a 64-step loop.
_LANE = 16
_SPREAD = [[sum(1 << (_LANE * (8 * byte + bit)) for bit in range(8) if value >> bit & 1) for value in range(256)]
           for byte in range(8)]
_LANE_MASK = (1 << _LANE) - 1
_HALF_MASK = sum(((1 << (_LANE - 1)) - 1) << (_LANE * lane) for lane in range(64))

_VERSION = 1
_HEAD = struct.Struct("<BIIIddq")


@lru_cache(maxsize=4096)
def sampling_vector(model: str, temperature: float, top_p: float, max_tokens: int, n: int, logprobs: bool,
                    top_logprobs: int, response_format: str, reasoning_effort: str) -> int:
    """32-bit id of the settings a script or an app fixes for every request."""
    text = f"{model}|{temperature:g}|{top_p:g}|{max_tokens}|{n}|{int(logprobs)}|{top_logprobs}|{response_format}|" \
           f"{reasoning_effort}"
    return zlib.crc32(text.encode("utf-8", "replace"))


def _hex(value: str) -> int:
    return int(value, 16) if value else 0


def _count_top(counts: dict[int, int], value: int, k: int) -> None:
    """Space-Saving: exact for the top values of a skewed stream, never more than k entries."""
    if value in counts:
        counts[value] += 1
    elif len(counts) < k:
        counts[value] = 1
    else:
        smallest = min(counts, key=counts.__getitem__)
        counts[value] = counts.pop(smallest) + 1


@dataclass(slots=True)
class KeySignature:
    requests: int = 0
    recent: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    votes: int = 0
    voted: int = 0
    tops: dict[str, dict[int, int]] = field(default_factory=lambda: {kind: {} for kind in TOKEN_KINDS})
    prompts: list[int] = field(default_factory=list)
    activity: array = field(default_factory=lambda: array("H", bytes(2 * ACTIVITY_BUCKETS)))
    newest_bucket: int = -1
    behaviour: list[int] = field(default_factory=lambda: [0] * len(BEHAVIOUR))

    def update(self, event: RequestFeatures) -> None:
        """Add one finished request."""
        if self.requests == 0:
            self.first_ts = event.ts
        self.requests += 1
        self.recent += 1
        self.last_ts = max(self.last_ts, event.ts)
        single_turn = event.message_count <= 1 or (event.message_count == 2 and bool(event.system_hash))
        fingerprint = event.template_fp
        if fingerprint and single_turn:  # a follow-up ("thanks, shorter please") is no template
            spread = _SPREAD
            self.votes += (spread[0][fingerprint & 255] + spread[1][fingerprint >> 8 & 255]
                           + spread[2][fingerprint >> 16 & 255] + spread[3][fingerprint >> 24 & 255]
                           + spread[4][fingerprint >> 32 & 255] + spread[5][fingerprint >> 40 & 255]
                           + spread[6][fingerprint >> 48 & 255] + spread[7][fingerprint >> 56 & 255])
            self.voted += 1
        tops = self.tops
        if event.template_head and single_turn:
            _count_top(tops["heads"], event.template_head, TOP["heads"])
        if event.system_hash:
            _count_top(tops["systems"], _hex(event.system_hash), TOP["systems"])
        if event.ip_prefix:
            _count_top(tops["ips"], _hex(event.ip_prefix), TOP["ips"])
        if event.ua_hash:
            _count_top(tops["agents"], _hex(event.ua_hash), TOP["agents"])
        if event.header_order:
            _count_top(tops["orders"], _hex(event.header_order), TOP["orders"])
        _count_top(tops["sampling"], sampling_vector(
            event.model, event.temperature, event.top_p, event.max_tokens, event.n, event.logprobs,
            event.top_logprobs, event.response_format, event.reasoning_effort), TOP["sampling"])
        if event.user_hash:
            keep_smallest(self.prompts, _hex(event.user_hash), PROMPT_SAMPLE)
        self._count_activity(event.ts)
        self._count_behaviour(event, single_turn)
        if self.recent >= HALVE_AT:
            self._halve()

    def _count_activity(self, ts: float) -> None:
        bucket = int(ts // ACTIVITY_BUCKET_S)
        newest = self.newest_bucket
        if bucket > newest:
            if newest >= 0:
                for stale in range(newest + 1, min(bucket, newest + ACTIVITY_BUCKETS) + 1):
                    self.activity[stale % ACTIVITY_BUCKETS] = 0
            self.newest_bucket = newest = bucket
        elif newest - bucket >= ACTIVITY_BUCKETS:
            return
        slot = bucket % ACTIVITY_BUCKETS
        if self.activity[slot] < 0xFFFF:
            self.activity[slot] += 1

    def _count_behaviour(self, event: RequestFeatures, single_turn: bool) -> None:
        counts = self.behaviour
        sampled = event.temperature != 0
        long_answer = event.completion_tokens >= LONG_ANSWER_TOKENS
        reasoning = event.reasoning_marker or bool(event.reasoning_effort)
        counts[0] += single_turn
        counts[1] += sampled
        counts[2] += long_answer
        counts[3] += single_turn and (reasoning or event.logprobs or (
            sampled and long_answer and event.completion_tokens >= 2 * event.prompt_tokens))
        counts[4] += reasoning
        counts[5] += event.logprobs
        counts[6] += bool(event.system_hash)
        counts[7] += event.n > 1
        counts[8] = min(counts[8] + event.prompt_tokens, MAX_COUNT)
        counts[9] = min(counts[9] + max(event.completion_tokens, 0), MAX_COUNT)  # -1: unknown

    def _halve(self) -> None:
        """Older traffic counts half: the signature follows what the key does now."""
        self.votes = (self.votes >> 1) & _HALF_MASK
        self.voted >>= 1
        for counts in self.tops.values():
            for value in list(counts):
                counts[value] = max(1, counts[value] >> 1)
        self.behaviour = [count >> 1 for count in self.behaviour]
        self.recent >>= 1

    def vote_counts(self) -> list[int]:
        """How many voted prompts had each of the 64 fingerprint bits set."""
        votes = self.votes
        return [(votes >> (_LANE * lane)) & _LANE_MASK for lane in range(64)]

    def activity_ending(self, bucket: int) -> list[int]:
        """Requests per 10 minutes for the 144 buckets ending with `bucket` (oldest first)."""
        first = bucket - ACTIVITY_BUCKETS + 1
        counts = [0] * ACTIVITY_BUCKETS
        for moment in range(max(first, self.newest_bucket - ACTIVITY_BUCKETS + 1), min(bucket, self.newest_bucket) + 1):
            counts[moment - first] = self.activity[moment % ACTIVITY_BUCKETS]
        return counts

    # --- storage -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact and versioned (no pickle): at most `MAX_BYTES`, zlib-compressed."""
        parts = [_HEAD.pack(_VERSION, min(self.requests, MAX_COUNT), self.recent, self.voted, self.first_ts,
                            self.last_ts, self.newest_bucket),
                 self.votes.to_bytes(128, "little"), struct.pack(f"<{len(BEHAVIOUR)}I", *self.behaviour)]
        for kind in TOKEN_KINDS:
            counts = self.tops[kind]
            parts.append(struct.pack("<B", len(counts)))
            parts.extend(struct.pack("<QI", value, count) for value, count in counts.items())
        parts.append(struct.pack(f"<B{len(self.prompts)}Q", len(self.prompts), *self.prompts))
        parts.append(struct.pack(f"<{ACTIVITY_BUCKETS}H", *self.activity))
        return zlib.compress(b"".join(parts), 1)

    @classmethod
    def from_bytes(cls, blob: bytes) -> KeySignature:
        """Raises ValueError on a blob of another version or a truncated one."""
        try:
            data = zlib.decompress(blob)
            version, requests, recent, voted, first_ts, last_ts, newest = _HEAD.unpack_from(data, 0)
            if version != _VERSION:
                raise ValueError(f"linkage signature version {version}, expected {_VERSION}")
            at = _HEAD.size
            votes = int.from_bytes(data[at:at + 128], "little")
            at += 128
            behaviour = list(struct.unpack_from(f"<{len(BEHAVIOUR)}I", data, at))
            at += 4 * len(BEHAVIOUR)
            tops = {}
            for kind in TOKEN_KINDS:
                count = data[at]
                tops[kind] = {value: seen for value, seen in struct.iter_unpack("<QI", data[at + 1:at + 1 + 12 * count])}
                at += 1 + 12 * count
            count = data[at]
            prompts = list(struct.unpack_from(f"<{count}Q", data, at + 1))
            at += 1 + 8 * count
            activity = array("H", struct.unpack_from(f"<{ACTIVITY_BUCKETS}H", data, at))
        except (zlib.error, struct.error, IndexError) as exc:
            raise ValueError(f"unreadable linkage signature: {exc}") from None
        return cls(requests, recent, first_ts, last_ts, votes, voted, tops, prompts, activity, newest, behaviour)


MAX_BYTES = (_HEAD.size + 128 + 4 * len(BEHAVIOUR) + sum(1 + 12 * k for k in TOP.values()) + 1 + 8 * PROMPT_SAMPLE
             + 2 * ACTIVITY_BUCKETS)
