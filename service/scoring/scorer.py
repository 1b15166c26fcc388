"""The consumer-group worker: event streams -> key windows -> detectors -> flags and decisions.

How several scorers share the shards, and why each event counts exactly once:

- Membership. Each scorer heartbeats in `dg:scorers` (a ZSET scored by expiry time, on the
  scorer's own clock: keep hosts in NTP sync). With N live scorers sorted by name, scorer r
  owns the shards s with s % N == r.
- Leases. A scorer works on a shard only while it holds the shard's lease
  (`lease_take.lua`, renewed every quarter lease, checked again before each commit). Owners
  disagree for a moment while membership changes; the lease settles it. A lease taken anew
  starts from an empty cache: another scorer may have moved the shard's keys on meanwhile.
- Order. On taking a shard (and after any error) the scorer first re-claims every pending
  entry, a dead scorer's or its own, with XAUTOCLAIM from 0-0 in id order; only then does it
  read new entries (XREADGROUP >). So each key's events are applied in stream order.
- A batch. Load each key's state (cache, else its checkpoint, else new); skip entries at or
  below the state's `last_event_id` (counted before a crash between checkpoint and XACK);
  observe the rest; evaluate every due key in one `Pipeline.evaluate`; apply the ladder's
  changes at once (flags, decisions: see actions.py).
- A commit, every COMMIT_SECONDS or COMMIT_EVENTS, and whenever the shard runs dry:
  checkpoint the changed states (`checkpoint.lua`, which refuses a state older than the
  stored one, fencing a scorer that stalled past its lease), then XACK what they cover.
  Until then the entries stay pending, so a crash loses nothing: the next owner re-claims
  them and replays them on the last checkpoints. Any failure drops the shard's memory and
  starts again from the pending entries, never from half-applied state.

- Linkage (service/scoring/linkage.py). Each counted event also updates its key's signature, saved
  with the key's checkpoint; a clustering pass's verdict on a key arrives as an entry in the
  key's own stream and steps its ladder in stream order, so it counts once like an event.

Decisions are deterministic functions of the events (evaluation points are request counts,
times are the events' own), so two scorers reach the decisions one would. A decision set by
a person (`distillguard keys ...`) is never overwritten or lifted by the scorer. Shards are
polled rather than read with BLOCK, so one loop serves real Redis and the embedded store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass

from redis.exceptions import NoScriptError, RedisError, ResponseError

from detectors.features import RequestFeatures, from_fields
from detectors.pipeline import Evaluation, KeyState, Pipeline

from .. import metrics
from ..alerts.sender import AlertSender, public_url_of
from ..config import Settings
from ..decisions import Policy
from ..store import EVENT_GROUP, SCORER_REGISTRY, Store, event_stream, shard_lease_key
from .actions import apply_evaluations
from .activity import ActivityCounts
from .detection import (
    RECENT_EVENTS_KEPT,
    build_pipeline,
    event_id_key,
    event_record,
    load_states,
    queue_checkpoint,
)
from .linkage import LINKAGE_FIELD, SignatureBook, apply_member_verdict
from .linkage_pass import LinkagePass

log = logging.getLogger("distillguard.scorer")

BATCH = 500
# States are checkpointed (and their entries acknowledged) at most this long and this many
# events apart, and whenever a shard runs dry: serialising a key's window costs far more
# than counting one event in it, so a busy key pays it once per commit, not per batch.
COMMIT_SECONDS = 2.0
COMMIT_EVENTS = 10_000
IDLE_POLL_SECONDS = 0.1
ERROR_BACKOFF_SECONDS = 1.0
GAUGE_INTERVAL_SECONDS = 5.0
MAX_CACHED_KEYS = 100_000


class LeaseLost(Exception):
    """Another scorer holds the shard now: this batch must not be committed."""


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _key_of(fields: dict) -> str:
    raw = fields.get(b"key_id", b"")
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return ""


@dataclass(slots=True)
class ScoredBatch:
    records: dict[str, list[tuple[str, RequestFeatures]]]  # key_id -> newly counted events, oldest first
    replayed: int  # already counted in the key's checkpoint
    malformed: int  # unreadable entries, acknowledged and dropped rather than retried forever
    evaluations: list[Evaluation]


class Scorer:
    """Heartbeats, decides which shards it owns, and runs one ShardWorker per owned shard."""

    def __init__(self, store: Store, settings: Settings, *, pipeline: Pipeline | None = None,
                 name: str | None = None, alerts: AlertSender | None = None) -> None:
        self.store = store
        self.alerts = alerts  # the process's alert queues (service/alerts/sender.py); its owner starts and closes it
        self.client = store.client
        self.settings = settings
        self.detection = settings.detection
        self.pipeline = pipeline or build_pipeline(settings)
        # The door's policy; a throttle uses the tier of the ladder that decided it.
        self.policy = dataclasses.replace(Policy.of(settings), throttle_tier=self.pipeline.ladder.throttle_tier)
        self.name = name or default_name()
        self.lease_ms = int(self.detection.scorer_lease * 1000)
        self.heartbeat_seconds = max(self.detection.scorer_lease / 4, 0.1)
        self.workers: dict[int, ShardWorker] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._stopping = asyncio.Event()
        self._owned: set[int] = set()
        self.linkage = LinkagePass(store, settings, self.name) if self.detection.linkage.enabled else None
        self._linkage_task: asyncio.Task | None = None
        self._gauges_at = 0.0
        self._last_error_log = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until `stop()`: heartbeat, rebalance, refresh the stream gauges."""
        log.info("scorer %s starting on %d shard(s)", self.name, self.detection.streams)
        if self.linkage is not None:
            self._linkage_task = asyncio.create_task(self.linkage.run())
        try:
            while not self._stopping.is_set():
                try:
                    await self._heartbeat()
                    if time.monotonic() - self._gauges_at >= GAUGE_INTERVAL_SECONDS:
                        await self._refresh_gauges()
                except Exception as exc:  # keep heartbeating: the leases say who works
                    self.report_error("heartbeat", exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.heartbeat_seconds)
                except TimeoutError:
                    pass
        finally:
            await self._shutdown()

    async def _heartbeat(self) -> None:
        now = time.time()
        async with asyncio.timeout(max(self.settings.redis_timeout, 1.0)):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zadd(SCORER_REGISTRY, {self.name: now + self.detection.scorer_lease})
                pipe.zremrangebyscore(SCORER_REGISTRY, "-inf", now)
                pipe.zrange(SCORER_REGISTRY, 0, -1)
                _, _, members = await pipe.execute()
        names = sorted({_text(m) for m in members} | {self.name})
        rank, count = names.index(self.name), len(names)
        owned = {shard for shard in range(self.detection.streams) if shard % count == rank}
        if owned != self._owned:
            log.info("scorer %s owns shards %s (%d scorer(s) live)", self.name, sorted(owned), count)
            self._owned = owned
        for shard, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[shard], self.workers[shard]
        for shard in owned - self.workers.keys():
            worker = self.workers[shard] = ShardWorker(self, shard)
            self._tasks[shard] = asyncio.create_task(worker.run())
        for shard in self.workers.keys() - owned:
            self.workers[shard].stop()

    async def _refresh_gauges(self) -> None:
        self._gauges_at = time.monotonic()
        for shard in range(self.detection.streams):
            label = str(shard)
            if shard not in self._owned:
                for gauge in (metrics.STREAM_LAG, metrics.STREAM_PENDING):
                    try:
                        gauge.remove(label)
                    except KeyError:
                        pass
                continue
            try:
                groups = await self.client.xinfo_groups(event_stream(shard))
            except ResponseError:  # no stream yet
                continue
            for group in groups:
                if _text(group.get("name")) == EVENT_GROUP:
                    if group.get("lag") is not None:
                        metrics.STREAM_LAG.labels(label).set(group["lag"])
                    metrics.STREAM_PENDING.labels(label).set(group.get("pending", 0))

    async def _shutdown(self) -> None:
        if self._linkage_task is not None:  # a pass under way is given up; the next holder runs its slot
            self.linkage.stop()
            self._linkage_task.cancel()
            await asyncio.gather(self._linkage_task, return_exceptions=True)
        for worker in self.workers.values():
            worker.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        try:
            await self.client.zrem(SCORER_REGISTRY, self.name)
        except (RedisError, OSError, TimeoutError):
            pass
        log.info("scorer %s stopped", self.name)

    def report_error(self, stage: str, exc: BaseException) -> None:
        """Count every failure; log at most one every 5 s (with a traceback if unexpected)."""
        metrics.SCORER_ERRORS.labels(stage).inc()
        now = time.monotonic()
        if now - self._last_error_log >= 5.0:
            self._last_error_log = now
            expected = isinstance(exc, (RedisError, OSError, TimeoutError, LeaseLost))
            log.warning("scorer %s: %s failed (%s: %s)", self.name, stage, type(exc).__name__, exc,
                        exc_info=None if expected else exc)


class ShardWorker:
    """Consumes one stream shard while holding its lease."""

    def __init__(self, scorer: Scorer, shard: int) -> None:
        self.scorer = scorer
        self.client = scorer.client
        self.shard = shard
        self.stream = event_stream(shard)
        self.lease = shard_lease_key(shard)
        self.states: dict[str, KeyState] = {}
        self.signatures = SignatureBook(scorer.detection.linkage)  # beside the states, same keys
        self.activity = ActivityCounts()  # per-minute counts for the console, written after checkpoints
        self.claim_from: str | None = "0-0"  # not None: pending entries still to re-claim
        self.held = False
        self.renewed_at = 0.0
        self.stopping = False
        self.uncommitted_ids: list[str] = []
        self.uncommitted: dict[str, list[tuple[str, RequestFeatures]]] = {}  # key_id -> its newest events
        self.committed_at = time.monotonic()

    def stop(self) -> None:
        self.stopping = True

    def _reset(self) -> None:
        """Forget everything in memory; the next batch starts again from the pending entries."""
        self.states.clear()
        self.signatures.clear()
        self.activity.clear()
        self.uncommitted_ids.clear()
        self.uncommitted.clear()
        self.claim_from = "0-0"

    async def run(self) -> None:
        try:
            while not self.stopping:
                try:
                    await self._step()
                except Exception as exc:  # a worker that died would silently stall its shard
                    self._reset()
                    self.scorer.report_error("lease" if isinstance(exc, LeaseLost) else "batch", exc)
                    await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                    if isinstance(exc, NoScriptError):
                        with contextlib.suppress(RedisError, OSError, TimeoutError):
                            await self.scorer.store.load_scripts()
        finally:
            await self._hand_back()

    async def _step(self) -> None:
        if not await self._hold_lease():
            await asyncio.sleep(self.scorer.heartbeat_seconds)
            return
        entries = await self._next_batch()
        if entries:
            await self._process(entries)
        if self.uncommitted_ids and (
            not entries
            or len(self.uncommitted_ids) >= COMMIT_EVENTS
            or time.monotonic() - self.committed_at >= COMMIT_SECONDS
        ):
            await self._commit()
        if not entries and self.claim_from is None:
            await asyncio.sleep(IDLE_POLL_SECONDS)

    async def _hand_back(self) -> None:
        """Commit what was counted, then free the shard for its next owner."""
        if not self.held:
            return
        with contextlib.suppress(Exception):  # if this fails, the next owner replays from the checkpoints
            if self.uncommitted_ids:
                await self._commit()
        with contextlib.suppress(Exception):
            await self.scorer.store.scripts["lease_release"](keys=[self.lease], args=[self.scorer.name])
        self.held = False

    async def _take_lease(self) -> int:
        result = int(await self.scorer.store.scripts["lease_take"](
            keys=[self.lease], args=[self.scorer.name, self.scorer.lease_ms]
        ))
        if result == 0:
            if self.held:
                log.info("scorer %s lost shard %d's lease", self.scorer.name, self.shard)
            self.held = False
            self._reset()
        else:
            if result == 2:
                self._reset()
                await self._ensure_group()
            self.held = True
            self.renewed_at = time.monotonic()
        return result

    async def _hold_lease(self) -> bool:
        if self.held and time.monotonic() - self.renewed_at < self.scorer.heartbeat_seconds:
            return True
        return await self._take_lease() != 0

    async def _confirm_lease(self) -> None:
        """Right before writing: the shard is still ours, without a break."""
        if await self._take_lease() != 1:
            raise LeaseLost(f"shard {self.shard}")

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.stream, EVENT_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _next_batch(self) -> list:
        if self.claim_from is not None:
            next_id, entries, *_ = await self.client.xautoclaim(
                self.stream, EVENT_GROUP, self.scorer.name, min_idle_time=0, start_id=self.claim_from, count=BATCH
            )
            next_id = _text(next_id)
            self.claim_from = None if next_id == "0-0" else next_id
            return entries
        reply = await self.client.xreadgroup(EVENT_GROUP, self.scorer.name, {self.stream: ">"}, count=BATCH)
        return reply[0][1] if reply else []

    async def _process(self, entries: list) -> None:
        """Count a batch in its keys' windows and act on the evaluations it makes due."""
        started = time.perf_counter()
        events = [(_text(entry_id), fields) for entry_id, fields in entries if fields]
        key_ids = list(dict.fromkeys(_key_of(fields) for _, fields in events))
        missing = [key_id for key_id in key_ids if key_id not in self.states]
        if missing:
            self.states.update(await load_states(self.client, missing))
            await self.signatures.load(self.client, missing)
        for key_id in key_ids:  # most recently used last, for eviction
            self.states[key_id] = self.states.pop(key_id)
        batch = await asyncio.to_thread(self._score, events)
        await self._confirm_lease()
        await apply_evaluations(self.client, batch.evaluations, flags_kept=self.scorer.detection.flags_kept,
                                policy=self.scorer.policy, alerts=self.scorer.alerts)
        self.uncommitted_ids.extend(_text(entry_id) for entry_id, _ in entries)
        for key_id, records in batch.records.items():
            kept = self.uncommitted.setdefault(key_id, [])
            kept.extend(records)
            del kept[:-RECENT_EVENTS_KEPT]
            for _, features in records:
                self.activity.add(features)
        metrics.EVENTS_CONSUMED.labels("counted").inc(sum(len(r) for r in batch.records.values()))
        for outcome in ("replayed", "malformed"):
            if getattr(batch, outcome):
                metrics.EVENTS_CONSUMED.labels(outcome).inc(getattr(batch, outcome))
        metrics.SCORER_BATCH.observe(time.perf_counter() - started)

    def _score(self, events: list) -> ScoredBatch:
        """The pure part (windows, detectors, ladder); runs in a thread, off the event loop."""
        pipeline = self.scorer.pipeline
        records: dict[str, list[tuple[str, RequestFeatures]]] = {}
        due = []
        replayed = malformed = 0
        evaluations: list[Evaluation] = []
        for event_id, fields in events:
            if LINKAGE_FIELD in fields:  # a clustering pass's verdict on one key (service/scoring/linkage.py)
                evaluations += pipeline.evaluate(due)  # the key's earlier evaluations first: stream order
                due = []
                outcome, evaluation = apply_member_verdict(pipeline.ladder, self.states, event_id, fields)
                if evaluation is not None:
                    evaluations.append(evaluation)
                    records.setdefault(evaluation.key_id, [])  # its ladder moved: checkpoint it
                replayed += outcome == "replayed"
                malformed += outcome == "malformed"
                continue
            try:
                features = from_fields(fields)
            except (ValueError, TypeError, UnicodeDecodeError):
                malformed += 1
                continue
            state = self.states.get(features.key_id)
            if state is None:
                malformed += 1
                continue
            if event_id_key(event_id) <= event_id_key(state.last_event_id):
                replayed += 1
                continue
            snapshot = pipeline.observe(state, features)
            self.signatures.observe(features)
            state.last_event_id = event_id
            records.setdefault(features.key_id, []).append((event_id, features))
            if snapshot is not None:
                due.append((state, snapshot))
        return ScoredBatch(records, replayed, malformed, evaluations + pipeline.evaluate(due))

    async def _commit(self) -> None:
        """Checkpoint every state changed since the last commit, then acknowledge its entries."""
        await self._confirm_lease()
        sha = self.scorer.store.scripts["checkpoint"].sha
        key_ids = list(self.uncommitted)
        if key_ids:
            async with self.client.pipeline(transaction=False) as pipe:
                for key_id in key_ids:
                    events = [event_record(event_id, features) for event_id, features in self.uncommitted[key_id]]
                    queue_checkpoint(pipe, sha, key_id, self.states[key_id], events)
                self.signatures.queue_saves(pipe, self.scorer.store.scripts["signature_save"].sha, key_ids,
                                            self.states)
                written = await pipe.execute()
            for key_id, ok in zip(key_ids, written):
                if not ok:  # a newer checkpoint exists: ours is stale, reload it next time
                    log.info("scorer %s: checkpoint of %s refused as stale", self.scorer.name, key_id)
                    self.states.pop(key_id, None)
                    self.signatures.forget(key_id)
            accepted = [key_id for key_id, ok in zip(key_ids, written) if ok and key_id in self.activity.counts]
            if accepted:
                async with self.client.pipeline(transaction=False) as pipe:
                    self.activity.queue_writes(pipe, accepted)
                    await pipe.execute()
            self.activity.clear()
        await self.client.xack(self.stream, EVENT_GROUP, *self.uncommitted_ids)
        self.uncommitted_ids.clear()
        self.uncommitted.clear()
        self.committed_at = time.monotonic()
        while len(self.states) > MAX_CACHED_KEYS:
            evicted = next(iter(self.states))
            del self.states[evicted]
            self.signatures.forget(evicted)


async def run_scorer(settings: Settings, name: str | None = None) -> None:
    """`distillguard scorer`: until SIGTERM or SIGINT."""
    import signal

    from ..store import connect

    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 2.0))
    alerts = AlertSender(settings.alerts, public_url_of(settings))
    alerts.start()
    scorer = Scorer(store, settings, name=name, alerts=alerts)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, scorer.stop)
    try:
        await scorer.run()
    finally:
        await alerts.close()
        await store.close()
