"""Linkage in the live scorer: each key's signature kept in Redis beside its checkpoint, and
the periodic clustering pass that one scorer at a time runs over every active key.

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
exactly as `distillguard score` does (service/offline_linkage.py): one step per pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib

from detectors.base import Reason, Verdict
from detectors.features import RequestFeatures
from detectors.ladder import LadderConfig, step
from detectors.linkage import KeySignature, LinkageConfig, LinkageDetector, LinkageResult
from detectors.pipeline import Evaluation, KeyState

from . import metrics
from .config import LinkageSettings, Settings
from .detection import event_id_key
from .events import shard_of
from .store import Store, event_stream, key_state_key, queue_evalsha

log = logging.getLogger("distillguard.linkage")

LINK_SHARDS = 16
LINKAGE_FIELD = b"linkage"  # marks a stream entry that carries a pass's verdict, not a request
CLUSTER_INDEX = "dg:{clusters}"
PASS_LEASE = "dg:{linkage}:lease"
PASS_DONE = "dg:{linkage}:done"
PASS_LOG = "dg:{linkage}:passes"
PASSES_KEPT = 50
CURSOR_TTL_MS = 7 * 86400 * 1000
FETCH_BATCH = 2000


def signature_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:link"


def key_cluster_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:cluster"


def active_key(shard: int) -> str:
    return f"dg:{{link:{shard}}}:active"


def cluster_key(cluster_id: str) -> str:
    return f"dg:{{{cluster_id}}}:cluster"


def publish_cursor_key(stream_shard: int) -> str:
    return f"{event_stream(stream_shard)}:linkage"


def link_shard(key_id: str) -> int:
    return zlib.crc32(key_id.encode()) % LINK_SHARDS


def linkage_config(settings: LinkageSettings) -> LinkageConfig:
    """The detector's settings from the config: one construction for live and offline."""
    return LinkageConfig(window_s=settings.window_s, min_requests=settings.min_requests,
                         min_members=settings.min_members, edge_min=settings.edge_min,
                         harvest_min=settings.harvest_min, coordination_min=settings.coordination_min)


def _text(value) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _json(value) -> str:
    """Compact JSON; numpy scalars (in cluster properties) as plain numbers."""
    return json.dumps(value, separators=(",", ":"), default=lambda item: item.item())


# --- per event, in each shard worker -----------------------------------------------------


class SignatureBook:
    """The signatures of the keys a shard worker has cached, beside their KeyStates: loaded
    with them, updated by each counted event, saved with their checkpoints. Disabled, every
    method does nothing."""

    def __init__(self, settings: LinkageSettings) -> None:
        self.enabled = settings.enabled
        self.ttl_ms = int(settings.signature_ttl * 1000)
        self.signatures: dict[str, KeySignature] = {}

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

    def queue_saves(self, pipe, sha: str, key_ids: list[str], states: dict[str, KeyState]) -> None:
        """Adds, after the keys' checkpoints, each signature's fenced save and the keys' last
        event times to their active sets."""
        if not self.enabled:
            return
        active: dict[int, dict[str, float]] = {}
        for key_id in key_ids:
            signature = self.signatures.get(key_id)
            if signature is None or not signature.requests:
                continue
            queue_evalsha(pipe, sha, [key_state_key(key_id), signature_key(key_id)],
                          [states[key_id].last_event_id, signature.to_bytes(), self.ttl_ms])
            active.setdefault(link_shard(key_id), {})[key_id] = signature.last_ts
        for shard, members in active.items():
            pipe.zadd(active_key(shard), members)
            pipe.pexpire(active_key(shard), self.ttl_ms)

    def forget(self, key_id: str) -> None:
        self.signatures.pop(key_id, None)

    def clear(self) -> None:
        self.signatures.clear()


def _signature_from(key_id: str, blob: bytes | None) -> KeySignature:
    """An unreadable signature (another format version) starts afresh rather than stall the shard."""
    if not blob:
        return KeySignature()
    try:
        return KeySignature.from_bytes(blob)
    except ValueError as exc:
        metrics.SCORER_ERRORS.labels("signature_unreadable").inc()
        log.warning("linkage signature of %s is unreadable (%s); starting it afresh", key_id, exc)
        return KeySignature()


def apply_member_verdict(ladder: LadderConfig, states: dict[str, KeyState], event_id: str,
                         fields: dict) -> tuple[str, Evaluation | None]:
    """A pass's verdict entry -> one step of its key's ladder; the outcome is `counted`,
    `replayed` (already in the key's checkpoint) or `malformed`."""
    key_id = _text(fields.get(b"key_id", b""))
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
               tuple(r["benign_range"]) if r.get("benign_range") else None, str(r.get("detail", "")))
        for r in data["reasons"]
    )
    return Verdict(str(data["detector"]), float(data["score"]), bool(data["flagged"]), reasons)


# --- the pass ------------------------------------------------------------------------------


class PassLeaseLost(Exception):
    """Another scorer holds the pass lease now: this pass must not store or publish."""


class LinkagePass:
    """Runs one clustering pass per `every_s` slot while this scorer holds the pass lease."""

    def __init__(self, store: Store, settings: Settings, name: str) -> None:
        self.store = store
        self.client = store.client
        self.settings = settings.detection.linkage
        self.streams = settings.detection.streams
        self.maxlen = settings.detection.stream_maxlen
        self.name = name
        self.detector = LinkageDetector(linkage_config(self.settings))
        self.lease_ms = int(settings.detection.scorer_lease * 1000)
        self.renew_seconds = max(settings.detection.scorer_lease / 4, 0.05)
        self.poll_seconds = min(self.renew_seconds, max(self.settings.every_s / 4, 0.05))
        self.cluster_ttl_ms = int(max(2 * self.settings.every_s, 600) * 1000)
        self._stopping = asyncio.Event()
        self._held = False
        self._last_log = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until `stop()`: take or keep the lease, and run the pass of each new slot."""
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except Exception as exc:  # the next slot tries again
                    self._failed("lease" if isinstance(exc, PassLeaseLost) else "pass", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)
        finally:
            if self._held:
                with contextlib.suppress(Exception):
                    await self.store.scripts["lease_release"](keys=[PASS_LEASE], args=[self.name])
                self._held = False

    async def _tick(self) -> None:
        if not await self._take_lease():
            return
        every = self.settings.every_s
        slot = int(time.time() // every * every * 1000)
        done = await self.client.get(PASS_DONE)
        if done is not None and int(done) >= slot:
            return
        renewal = asyncio.create_task(self._keep_lease())
        try:
            await self.run_pass(slot)
        finally:
            renewal.cancel()

    async def _take_lease(self) -> int:
        """1 renewed, 2 newly taken, 0 held by another scorer (lease_take.lua)."""
        result = int(await self.store.scripts["lease_take"](keys=[PASS_LEASE], args=[self.name, self.lease_ms]))
        self._held = result != 0
        return result

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            with contextlib.suppress(Exception):  # a failed renewal shows in _confirm_lease
                if await self._take_lease() != 1:
                    return

    async def _confirm_lease(self) -> None:
        if await self._take_lease() != 1:
            raise PassLeaseLost("the linkage pass lease moved to another scorer")

    async def run_pass(self, slot: int) -> dict:
        """Read every active key's signature, cluster them off the event loop, store the
        clusters and publish the flagged members' verdicts; returns the pass's record."""
        started = time.perf_counter()
        now = time.time()
        key_ids = await self._active_keys(now - self.settings.window_s)
        blobs = await self._fetch(key_ids)
        result, readable = await asyncio.to_thread(self._cluster, key_ids, blobs, now)
        await self._confirm_lease()
        await self._store_clusters(result, now, slot)
        published = await self.publish(result, now, slot)
        flagged = [cluster for cluster in result.clusters if cluster.flagged]
        record = {
            "slot": slot, "scorer": self.name, "started_at": now, "finished_at": time.time(),
            "seconds": round(time.perf_counter() - started, 3), "keys": len(key_ids), "signatures": readable,
            "clusters": len(result.clusters), "flagged_clusters": len(flagged),
            "flagged_keys": len(result.member_verdicts), "verdicts_published": published,
            "detector": result.stats,
        }
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(PASS_DONE, slot, px=CURSOR_TTL_MS)
            pipe.lpush(PASS_LOG, _json(record))
            pipe.ltrim(PASS_LOG, 0, PASSES_KEPT - 1)
            pipe.pexpire(PASS_LOG, CURSOR_TTL_MS)
            await pipe.execute()
        metrics.LINKAGE_PASSES.inc()
        metrics.LINKAGE_PASS_SECONDS.observe(time.perf_counter() - started)
        metrics.LINKAGE_PASS_KEYS.set(len(key_ids))
        metrics.LINKAGE_CLUSTERS_FLAGGED.set(len(flagged))
        if flagged or published:
            log.info("linkage pass %d: %d keys, %d clusters (%d flagged), %d verdicts published in %.2fs",
                     slot, len(key_ids), len(result.clusters), len(flagged), published, record["seconds"])
        return record

    async def _active_keys(self, since: float) -> list[str]:
        """Every shard's keys active since `since`, after dropping the older ones."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in range(LINK_SHARDS):
                pipe.zremrangebyscore(active_key(shard), "-inf", f"({since!r}")
                pipe.zrangebyscore(active_key(shard), since, "+inf")
            replies = await pipe.execute()
        return [_text(key_id) for members in replies[1::2] for key_id in members]

    async def _fetch(self, key_ids: list[str]) -> list[bytes | None]:
        """Signatures in batches: MGET on one server; on a Cluster a pipeline of GETs, which
        redis-py sends to each key's node."""
        blobs: list[bytes | None] = []
        for at in range(0, len(key_ids), FETCH_BATCH):
            names = [signature_key(key_id) for key_id in key_ids[at:at + FETCH_BATCH]]
            if self.store.cluster:
                async with self.client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.get(name)
                    blobs += await pipe.execute()
            else:
                blobs += await self.client.mget(names)
        return blobs

    def _cluster(self, key_ids: list[str], blobs: list, now: float) -> tuple[LinkageResult, int]:
        """The pure part, in a thread: decode the signatures and run the detector."""
        signatures = {}
        for key_id, blob in zip(key_ids, blobs):
            if blob:
                with contextlib.suppress(ValueError):  # another format version: left out of this pass
                    signatures[key_id] = KeySignature.from_bytes(blob)
        return self.detector.run(signatures, now), len(signatures)

    async def _store_clusters(self, result: LinkageResult, now: float, slot: int) -> None:
        kept = result.clusters[: self.settings.clusters_kept]
        async with self.client.pipeline(transaction=False) as pipe:
            for cluster in kept:
                record = {**cluster.as_dict(), "seen_at": now, "pass_slot": slot}
                pipe.set(cluster_key(cluster.cluster_id), _json(record), px=self.cluster_ttl_ms)
                for member in cluster.members:
                    pipe.set(key_cluster_key(member), cluster.cluster_id, px=self.cluster_ttl_ms)
            await pipe.execute()
        pairs = [item for cluster in kept for item in (float(cluster.score), cluster.cluster_id)]
        await self.store.scripts["clusters_replace"](keys=[CLUSTER_INDEX], args=[self.cluster_ttl_ms, *pairs])

    async def publish(self, result: LinkageResult, now: float, slot: int) -> int:
        """Each flagged member's verdict into its key's stream shard, once per shard and slot."""
        cluster_of = {member: cluster.cluster_id for cluster in result.clusters if cluster.flagged
                      for member in cluster.members}
        by_shard: dict[int, list[str]] = {}
        for key_id, verdict in result.member_verdicts.items():
            entry = {"slot": slot, "ts": now, "cluster_id": cluster_of.get(key_id, ""), "verdict": verdict_dict(verdict)}
            by_shard.setdefault(shard_of(key_id, self.streams), []).extend((key_id, _json(entry)))
        script = self.store.scripts["linkage_publish"]
        appended = await asyncio.gather(*(
            script(keys=[event_stream(shard), publish_cursor_key(shard)],
                   args=[slot, self.maxlen, CURSOR_TTL_MS, *items])
            for shard, items in by_shard.items()
        ))
        return sum(int(count) for count in appended)

    def _failed(self, stage: str, exc: BaseException) -> None:
        """Count every failure; log at most one every 5 s."""
        metrics.LINKAGE_PASS_ERRORS.labels(stage).inc()
        now = time.monotonic()
        if now - self._last_log >= 5.0:
            self._last_log = now
            log.warning("linkage pass in %s: %s failed (%s: %s)", self.name, stage, type(exc).__name__, exc,
                        exc_info=None if isinstance(exc, (OSError, TimeoutError, PassLeaseLost)) else exc)


# --- for the admin API -----------------------------------------------------------------------


async def read_clusters(client, limit: int, flagged_only: bool = False) -> list[dict]:
    """The last pass's clusters, flagged first, then the largest."""
    cluster_ids = [_text(c) for c in await client.zrevrange(CLUSTER_INDEX, 0, -1)]
    if not cluster_ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for cluster_id in cluster_ids:
            pipe.get(cluster_key(cluster_id))
        raws = await pipe.execute()
    clusters = [json.loads(raw) for raw in raws if raw]
    if flagged_only:
        clusters = [cluster for cluster in clusters if cluster["flagged"]]
    clusters.sort(key=lambda cluster: (not cluster["flagged"], -cluster["size"], -cluster["score"]))
    return clusters[:limit]


async def read_cluster(client, cluster_id: str) -> dict | None:
    raw = await client.get(cluster_key(cluster_id))
    return json.loads(raw) if raw else None


async def key_cluster(client, key_id: str) -> str | None:
    raw = await client.get(key_cluster_key(key_id))
    return _text(raw) if raw else None


async def read_passes(client, limit: int) -> list[dict]:
    """The most recent passes' records, newest first."""
    return [json.loads(raw) for raw in await client.lrange(PASS_LOG, 0, limit - 1)]
