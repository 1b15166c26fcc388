"""The clustering pass of the live scorer: one scorer at a time (a lease, like the stream
shards') runs it once per `every_s` slot over every active key's signature.

A pass reads the active sets, fetches the signatures in pipelined batches, runs
`LinkageDetector` in a worker thread (the scorer's event loop keeps consuming meanwhile),
stores the clusters for review, and appends each flagged member's verdict to the member's
own event stream, where the key's owner applies it (service/scoring/linkage.py says why). A pass
that loses its lease before writing writes nothing; one cut short by a crash is resumed
for the same slot by the next holder, and `linkage_publish.lua` keeps any shard from
receiving a slot's verdicts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from detectors.linkage import KeySignature, LinkageDetector, LinkageResult

from .. import metrics
from ..config import Settings
from ..events import shard_of
from ..records.batch import text_of
from ..records.clusters import compact_json
from ..store import (
    CLUSTER_INDEX,
    LINK_SHARDS,
    PASS_DONE,
    PASS_LEASE,
    PASS_LOG,
    Store,
    active_key,
    cluster_key,
    event_stream,
    key_cluster_key,
    publish_cursor_key,
    signature_key,
)
from .linkage import CURSOR_TTL_MS, PASSES_KEPT, linkage_config, verdict_dict

log = logging.getLogger("distillguard.linkage")

FETCH_BATCH = 2000


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
        self._tried = -1  # the last slot this scorer started a pass for: a failed one waits for the next
        self._last_log = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until `stop()`: take or keep the lease, and run the pass of each new slot."""
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except Exception as exc:  # the next slot tries again (in whichever scorer holds the lease)
                    self._failed("lease" if isinstance(exc, PassLeaseLost) else "pass", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)
        finally:
            if self._held:
                with contextlib.suppress(Exception):
                    await self.store.scripts["lease_release"](keys=[PASS_LEASE], args=[self.name])
                self._held = False

    async def run_now(self) -> dict:
        """One pass for the current slot, now, if no other scorer holds the lease (benchmarks,
        operators); returns the pass's record."""
        if not await self._take_lease():
            raise PassLeaseLost("another scorer holds the linkage pass lease")
        every = self.settings.every_s
        return await self.run_pass(int(time.time() // every * every * 1000))

    async def _tick(self) -> None:
        if not await self._take_lease():
            return
        every = self.settings.every_s
        slot = int(time.time() // every * every * 1000)
        done = await self.client.get(PASS_DONE)
        if slot == self._tried or (done is not None and int(done) >= slot):
            return
        self._tried = slot
        await self.run_pass(slot)

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
        clusters and publish the flagged members' verdicts; returns the pass's record. The
        lease is renewed meanwhile, however long the pass takes."""
        renewal = asyncio.create_task(self._keep_lease())
        try:
            return await self._pass(slot)
        finally:
            renewal.cancel()

    async def _pass(self, slot: int) -> dict:
        started = time.perf_counter()
        now = time.time()
        key_ids = await self._active_keys(now - self.settings.window_s)
        blobs = await self._fetch(key_ids)
        read = time.perf_counter()
        result, readable = await asyncio.to_thread(self._cluster, key_ids, blobs, now)
        clustered = time.perf_counter()
        await self._confirm_lease()
        await self._store_clusters(result, now, slot)
        published = await self.publish(result, now, slot)
        finished = time.perf_counter()
        flagged = [cluster for cluster in result.clusters if cluster.flagged]
        record = {
            "slot": slot, "scorer": self.name, "started_at": now, "finished_at": time.time(),
            "seconds": round(finished - started, 3), "keys": len(key_ids), "signatures": readable,
            "clusters": len(result.clusters), "flagged_clusters": len(flagged),
            "flagged_keys": len(result.member_verdicts), "verdicts_published": published,
            "phases": {"read_s": round(read - started, 3), "cluster_s": round(clustered - read, 3),
                       "write_s": round(finished - clustered, 3)},
            "detector": result.stats,
        }
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(PASS_DONE, slot, px=CURSOR_TTL_MS)
            pipe.lpush(PASS_LOG, compact_json(record))
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
        return [text_of(key_id) for members in replies[1::2] for key_id in members]

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
                pipe.set(cluster_key(cluster.cluster_id), compact_json(record), px=self.cluster_ttl_ms)
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
            by_shard.setdefault(shard_of(key_id, self.streams), []).extend((key_id, compact_json(entry)))
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
