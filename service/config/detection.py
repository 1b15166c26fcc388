"""Detection settings: rules, forest, ladder and cross-key linkage."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from detectors.evidence import EvidenceConfig
from detectors.ladder import LadderConfig
from detectors.linkage import LinkageConfig
from detectors.rules import DEFAULT_RULES, RuleError, parse_rules

from .base import StrictModel, parse_duration

# The detectors' own defaults are the one source: the settings below only validate them.
LADDER = LadderConfig()
LINKAGE = LinkageConfig()


class LadderSettings(StrictModel):
    """How detector verdicts become actions (see detectors/ladder.py, whose defaults these are)."""

    throttle_after: int = Field(default=LADDER.throttle_after, ge=0)
    block_after: int = Field(default=LADDER.block_after, ge=0)
    # Stepping down takes all three: clean evaluations, clean requests, clean time.
    release_after: int = Field(default=LADDER.release_after, ge=1)
    release_after_requests: int = Field(default=LADDER.release_after_requests, ge=0)
    release_after_seconds: float = Field(default=LADDER.release_after_seconds, ge=0)
    clear_below: float = Field(default=LADDER.clear_below, ge=0, le=1)
    action_ttl: float = LADDER.action_ttl_seconds
    throttle_tier: str = LADDER.throttle_tier
    shadow: bool = LADDER.shadow
    # A flagged key stays flagged (on the review queue) until a reviewer acts on it.
    sticky: bool = LADDER.sticky
    # A harvest seen over N requests takes at least N clean requests to relax a step.
    release_scales_with_harvest: bool = LADDER.release_scales_with_harvest
    allowlist: list[str] = Field(default_factory=list)

    _parse_ttl = field_validator("action_ttl", mode="before")(lambda cls, v: parse_duration(v))
    _parse_clean_time = field_validator("release_after_seconds", mode="before")(
        lambda cls, v: 0.0 if v in (0, "0") else parse_duration(v)
    )


_EVIDENCE = EvidenceConfig()


class EvidenceSettings(StrictModel):
    """The graded evidence score (detectors/evidence.py): a flag needs harvested output,
    evidence from `min_groups` groups and `min_total` in all, after `min_requests` requests
    and `min_distinct_tasks` distinct tasks."""

    enabled: bool = True
    min_requests: int = Field(default=_EVIDENCE.min_requests, ge=1)
    min_total: float = Field(default=_EVIDENCE.min_total, gt=0, le=4)
    min_groups: int = Field(default=_EVIDENCE.min_groups, ge=1, le=4)
    min_distinct_tasks: int = Field(default=_EVIDENCE.min_distinct_tasks, ge=0)


class LinkageSettings(StrictModel):
    """Cross-key linkage in the scorer (service/scoring/linkage.py, detectors/linkage/, docs/detection.md)."""

    enabled: bool = True
    # One clustering pass per this period, in one scorer at a time.
    every_s: float = 300.0
    # Keys active this recently take part in a pass.
    window_s: float = LINKAGE.window_s
    # How long a key's signature outlives its last event in Redis.
    signature_ttl: float = 172800.0
    # Clusters kept for review per pass (flagged first, then the largest).
    clusters_kept: int = Field(default=500, ge=1, le=2000)
    # The detector's main thresholds (detectors/linkage/config.py says why each default).
    min_requests: int = Field(default=LINKAGE.min_requests, ge=1)
    min_members: int = Field(default=LINKAGE.min_members, ge=2)
    edge_min: float = Field(default=LINKAGE.edge_min, gt=0)
    harvest_min: float = Field(default=LINKAGE.harvest_min, ge=0, le=1)
    coordination_min: float = Field(default=LINKAGE.coordination_min, ge=0, le=1)

    _parse_durations = field_validator("every_s", "window_s", "signature_ttl", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @model_validator(mode="after")
    def _periods_fit(self) -> LinkageSettings:
        if self.every_s < 1:
            raise ValueError(f"every_s must be at least 1s, got {self.every_s:g}s")
        if self.every_s >= self.window_s:
            raise ValueError(f"every_s ({self.every_s:g}s) must be shorter than window_s ({self.window_s:g}s)")
        if self.signature_ttl < self.window_s:
            raise ValueError(f"signature_ttl ({self.signature_ttl:g}s) must be at least window_s ({self.window_s:g}s)")
        return self


class DiskSpoolSettings(StrictModel):
    """The spool's part on local disk (service/events_disk.py): off unless `directory` is set."""

    # Each worker writes its segments here; one gateway's workers (and the next gateway,
    # after a restart) share it. Local disk, not shared between machines.
    directory: str | None = None
    # Bytes of segment files per worker; past it the oldest segments are dropped and counted.
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)


class SpoolSettings(StrictModel):
    """The gateway's buffer of events not yet in Redis (service/events_spool.py, docs/operations.md)."""

    # Per gateway worker (an event is about 630 bytes as held). Past either bound the oldest
    # waiting events are dropped and counted.
    max_events: int = Field(default=50_000, ge=100)
    max_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    # While Redis fails, appends are retried after a pause that doubles up to this long.
    retry_max: float = 2.0
    disk: DiskSpoolSettings = Field(default_factory=DiskSpoolSettings)

    _parse_retry = field_validator("retry_max", mode="before")(lambda cls, v: parse_duration(v))


class DetectionConfig(StrictModel):
    enabled: bool = True
    streams: int = Field(default=8, ge=1, le=1024)
    stream_maxlen: int = Field(default=200_000, ge=1000)
    model_path: str | None = None
    iforest_min_requests: int = Field(default=20, ge=1)
    rules: dict[str, dict] = Field(default_factory=lambda: dict(DEFAULT_RULES))
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    ladder: LadderSettings = Field(default_factory=LadderSettings)
    flags_kept: int = Field(default=100_000, ge=100)
    # With Redis, `distillguard scorer` processes consume the streams; this also runs one
    # inside each gateway worker. Without Redis (embedded store) the gateway always does.
    embedded_scorer: bool = False
    # How long a scorer's claim on a stream shard outlives it: a killed scorer's shards
    # move to the others after about this long.
    scorer_lease: float = 10.0
    linkage: LinkageSettings = Field(default_factory=LinkageSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

    _parse_lease = field_validator("scorer_lease", mode="before")(lambda cls, v: parse_duration(v))

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, rules: dict[str, dict]) -> dict[str, dict]:
        try:
            parse_rules(rules)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return rules
