"""Detection wiring shared by the live scorer, the admin API and the offline commands: the
pipeline built from config, and each key's scorer state as it is kept in Redis.

A key's state lives in one hash, `dg:{key_id}:state` (`state`: the `KeyState` blob,
`last_event_id`: the newest stream entry counted in it), next to a capped list of its
recent events' features. Both are written only by `checkpoint.lua`, which refuses a state
older than the stored one, so a scorer that stalled past its lease cannot undo newer work.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

from detectors.evidence import EvidenceConfig, EvidenceDetector
from detectors.features import RequestFeatures
from detectors.iforest import ForestDetector, ForestModel
from detectors.ladder import LadderConfig
from detectors.pipeline import KeyState, Pipeline
from detectors.rules import RulesDetector, parse_rules
from models import DEFAULT_MODEL

from .. import metrics
from ..config import DetectionConfig, Settings
from ..store import key_state_key, queue_evalsha, recent_events_key

log = logging.getLogger("distillguard.detection")

STATE_TTL_SECONDS = 7 * 86400
RECENT_EVENTS_KEPT = 50
FEATURE_FIELDS = tuple(field.name for field in fields(RequestFeatures))


def ladder_config(detection: DetectionConfig) -> LadderConfig:
    ladder = detection.ladder
    return LadderConfig(
        throttle_after=ladder.throttle_after, block_after=ladder.block_after, release_after=ladder.release_after,
        release_after_requests=ladder.release_after_requests, release_after_seconds=ladder.release_after_seconds,
        clear_below=ladder.clear_below, action_ttl_seconds=ladder.action_ttl, throttle_tier=ladder.throttle_tier,
        shadow=ladder.shadow, sticky=ladder.sticky,
        release_scales_with_harvest=ladder.release_scales_with_harvest, allowlist=frozenset(ladder.allowlist),
    )


def load_forest(detection: DetectionConfig) -> ForestDetector | None:
    """The configured model (an error if it cannot load), else the shipped default if
    present, else None: the rules still run, with a warning."""
    if detection.model_path:
        return _forest(ForestModel.load(detection.model_path), detection.model_path, detection)
    if not (DEFAULT_MODEL.with_suffix(".skops").exists() and DEFAULT_MODEL.with_suffix(".json").exists()):
        log.warning("no isolation-forest model at %s(.skops/.json); running the rules only", DEFAULT_MODEL)
        return None
    try:
        model = ForestModel.load(DEFAULT_MODEL)
    except Exception as exc:  # a broken default must not stop the rules
        log.warning("could not load the default model %s (%s); running the rules only", DEFAULT_MODEL, exc)
        return None
    return _forest(model, DEFAULT_MODEL, detection)


def _forest(model: ForestModel, path: str | Path, detection: DetectionConfig) -> ForestDetector:
    """Says which model runs: an operator (and the wheel test) can tell it from the rules alone."""
    log.info("isolation forest loaded from %s (threshold %.4f, %s training windows)",
             path, model.threshold, model.card.get("training_rows", "?"))
    return ForestDetector(model, detection.iforest_min_requests)


def build_pipeline(settings: Settings) -> Pipeline:
    """Rules, forest and ladder from the settings: one construction for live and offline."""
    detection = settings.detection
    return Pipeline(RulesDetector(parse_rules(detection.rules)), load_forest(detection), ladder_config(detection),
                    evidence_detector(detection))


def evidence_detector(detection: DetectionConfig) -> EvidenceDetector | None:
    """The graded evidence score from its settings; None when disabled."""
    evidence = detection.evidence
    if not evidence.enabled:
        return None
    return EvidenceDetector(EvidenceConfig(min_requests=evidence.min_requests, min_total=evidence.min_total,
                                           min_groups=evidence.min_groups,
                                           min_distinct_tasks=evidence.min_distinct_tasks))


def event_id_key(event_id: str | bytes) -> tuple[int, int]:
    """A stream id as a sortable pair; `""` (nothing counted yet) sorts first."""
    if isinstance(event_id, bytes):
        event_id = event_id.decode()
    if not event_id:
        return (-1, -1)
    ms, _, seq = event_id.partition("-")
    return (int(ms), int(seq or 0))


def event_record(event_id: str, features: RequestFeatures) -> str:
    """One recent event as the admin API shows it: features only (hashes, no text)."""
    record = {"event_id": event_id}
    record.update((name, getattr(features, name)) for name in FEATURE_FIELDS)
    return json.dumps(record, separators=(",", ":"))


async def load_states(client, key_ids: list[str]) -> dict[str, KeyState]:
    """Each key's checkpointed state, or a new one; one pipelined round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for key_id in key_ids:
            pipe.hget(key_state_key(key_id), "state")
        blobs = await pipe.execute()
    return {key_id: _state_from(key_id, blob) for key_id, blob in zip(key_ids, blobs)}


def _state_from(key_id: str, blob: bytes | None) -> KeyState:
    """A checkpoint this version cannot read (an older window format) starts the key afresh:
    failing instead would stall its whole shard on every retry."""
    return read_or_afresh(blob, KeyState.from_bytes, KeyState, key_id=key_id, what="state")


def read_or_afresh(blob: bytes | None, parse, fresh, *, key_id: str, what: str, errors=(Exception,)):
    """`parse(blob)`, or `fresh()` when there is no blob or it cannot be read: counted as
    `<what>_unreadable` and logged, rather than stall the key's shard on every retry."""
    if not blob:
        return fresh()
    try:
        return parse(blob)
    except errors as exc:
        metrics.SCORER_ERRORS.labels(f"{what}_unreadable").inc()
        log.warning("%s of %s is unreadable (%s: %s); starting it afresh", what, key_id, type(exc).__name__, exc)
        return fresh()


async def load_state(client, key_id: str) -> KeyState | None:
    blob = await client.hget(key_state_key(key_id), "state")
    return _state_from(key_id, blob) if blob else None


async def recent_events(client, key_id: str) -> list[dict]:
    """The key's last events, newest first."""
    raw = await client.lrange(recent_events_key(key_id), 0, -1)
    return [json.loads(item) for item in reversed(raw)]


def queue_checkpoint(pipe, checkpoint_sha: str, key_id: str, state: KeyState, events: list[str]) -> None:
    """Adds one key's checkpoint (state + its newest events) to a pipeline."""
    queue_evalsha(
        pipe, checkpoint_sha, [key_state_key(key_id), recent_events_key(key_id)],
        [state.last_event_id, state.to_bytes(), STATE_TTL_SECONDS * 1000, RECENT_EVENTS_KEPT,
         *events[-RECENT_EVENTS_KEPT:]],
    )
