"""Linkage in the live scorer, the per-key side: each key's signature kept in Redis beside its
checkpoint, the verdict entries by which a clustering pass (service/scoring/linkage_pass.py) steps
a member's ladder, and the reads behind the admin API's clusters.

Redis layout (everything expires; no one key holds every key's evidence):
  dg:{<key_id>}:link          the key's `KeySignature.to_bytes()`, saved with its checkpoint by
                              `signature_save.lua`: only if that checkpoint was written, so a
                              scorer that stalled past its lease cannot undo newer counts.
  dg:{link:<n>}:active        16 sorted sets, key_id -> its last event's ts (n = crc32 % 16):
                              the pass finds its keys without SCAN and trims them to window_s.
  dg:{<cluster_id>}:cluster   a cluster of the last pass (`ClusterVerdict.as_dict()` + when),
                              and `dg:{clusters}` the index of the last pass's clusters.
  dg:{<key_id>}:cluster       the cluster the key was last found in.
  dg:{linkage}:lease|done|passes   the pass lease, the last pass slot finished, recent passes.
  dg:{events:<n>}:linkage     the last pass slot whose verdicts stream shard n received.
A pass slot is the start of its `every_s` period in epoch milliseconds: it grows with time
whatever `every_s` is, so changing the period never replays or skips much.

How a verdict reaches a key's ladder. The ladder lives in the key's KeyState, which only the
scorer holding the key's stream shard may change, under its lease and fenced checkpoint. So
the pass does not write ladders: it appends one entry per flagged member to the member's own
event stream (`linkage_publish.lua`, at most once per shard and pass slot, so a pass re-run
after a crash or run twice adds nothing twice), and the shard's owner applies it in stream
order like any event. A verdict is thus counted exactly once (the same last_event_id fence,
checkpoint and XACK as events), never races the key's own evaluations, and steps the ladder
exactly as `distillguard score` does (service/offline/linkage.py): one step per pass.
"""

from __future__ import annotations

import json
import logging

from detectors.base import Reason, Verdict
from detectors.features import RequestFeatures
from detectors.ladder import LadderConfig, step
from detectors.linkage import KeySignature, LinkageConfig
from detectors.pipeline import Evaluation, KeyState

from ..config import LinkageSettings
from ..records.batch import text_of
from ..store import active_key, key_state_key, link_shard, queue_evalsha, signature_key
from .detection import event_id_key, read_or_afresh

log = logging.getLogger("distillguard.linkage")

LINKAGE_FIELD = b"linkage"  # marks a stream entry that carries a pass's verdict, not a request
PASSES_KEPT = 50
CURSOR_TTL_MS = 7 * 86400 * 1000


def linkage_config(settings: LinkageSettings) -> LinkageConfig:
    """The detector's settings from the config: one construction for live and offline."""
    return LinkageConfig(window_s=settings.window_s, min_requests=settings.min_requests,
                         min_members=settings.min_members, edge_min=settings.edge_min,
                         harvest_min=settings.harvest_min, coordination_min=settings.coordination_min)


# --- per event, in each shard worker -----------------------------------------------------


class SignatureBook:
    """The signatures of the keys a shard worker has cached, beside their KeyStates: loaded
    with them, updated by each counted event, saved with their checkpoints. Disabled, every
    method does nothing."""

    def __init__(self, settings: LinkageSettings) -> None:
        self.enabled = settings.enabled
        self.ttl_ms = int(settings.signature_ttl * 1000)
        self.signatures: dict[str, KeySignature] = {}
        self.changed: set[str] = set()  # keys with events counted since their last save

    async def load(self, client, key_ids: list[str]) -> None:
        """Each key's saved signature, or a new one; one pipelined round trip."""
        if not self.enabled or not key_ids:
            return
        async with client.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.get(signature_key(key_id))
            blobs = await pipe.execute()
        for key_id, blob in zip(key_ids, blobs):
            self.signatures[key_id] = _signature_from(key_id, blob)

    def observe(self, event: RequestFeatures) -> None:
        if self.enabled:
            signature = self.signatures.get(event.key_id)
            if signature is None:
                signature = self.signatures[event.key_id] = KeySignature()
            signature.update(event)
            self.changed.add(event.key_id)

    def queue_saves(self, pipe, sha: str, key_ids: list[str], states: dict[str, KeyState]) -> None:
        """Adds, after the keys' checkpoints, the fenced save of each signature that counted new
        events and the keys' last event times to their active sets."""
        if not self.enabled:
            return
        active: dict[int, dict[str, float]] = {}
        for key_id in key_ids:
            signature = self.signatures.get(key_id)
            if signature is None or key_id not in self.changed:
                continue
            self.changed.discard(key_id)
            queue_evalsha(pipe, sha, [key_state_key(key_id), signature_key(key_id)],
                          [states[key_id].last_event_id, signature.to_bytes(), self.ttl_ms])
            active.setdefault(link_shard(key_id), {})[key_id] = signature.last_ts
        for shard, members in active.items():
            pipe.zadd(active_key(shard), members)
            pipe.pexpire(active_key(shard), self.ttl_ms)

    def forget(self, key_id: str) -> None:
        self.signatures.pop(key_id, None)
        self.changed.discard(key_id)

    def clear(self) -> None:
        self.signatures.clear()
        self.changed.clear()


def _signature_from(key_id: str, blob: bytes | None) -> KeySignature:
    """An unreadable signature (another format version) starts afresh rather than stall the shard."""
    return read_or_afresh(blob, KeySignature.from_bytes, KeySignature, key_id=key_id, what="signature",
                          errors=(ValueError,))


def apply_member_verdict(ladder: LadderConfig, states: dict[str, KeyState], event_id: str,
                         fields: dict) -> tuple[str, Evaluation | None]:
    """A pass's verdict entry -> one step of its key's ladder; the outcome is `counted`,
    `replayed` (already in the key's checkpoint) or `malformed`."""
    key_id = text_of(fields.get(b"key_id", b""))
    state = states.get(key_id)
    if state is None:
        return "malformed", None
    if event_id_key(event_id) <= event_id_key(state.last_event_id):
        return "replayed", None
    try:
        entry = json.loads(fields[LINKAGE_FIELD])
        verdict, ts = verdict_from(entry["verdict"]), float(entry["ts"])
    except (ValueError, KeyError, TypeError):
        return "malformed", None
    state.last_event_id = event_id
    seen = state.window.requests_seen
    change = step(ladder, state.ladder, key_id, [verdict], ts, seen)
    return "counted", Evaluation(key_id, seen, [], (verdict,), change)


def verdict_dict(verdict: Verdict) -> dict:
    return {"detector": verdict.detector, "score": float(verdict.score), "flagged": verdict.flagged,
            "reasons": [reason.as_dict() for reason in verdict.reasons]}


def verdict_from(data: dict) -> Verdict:
    reasons = tuple(
        Reason(str(r["name"]), str(r["feature"]), float(r["value"]),
               tuple(r["benign_range"]) if r.get("benign_range") else None, str(r.get("detail", "")),
               str(r["cluster_id"]) if r.get("cluster_id") else None)
        for r in data["reasons"]
    )
    return Verdict(str(data["detector"]), float(data["score"]), bool(data["flagged"]), reasons)
