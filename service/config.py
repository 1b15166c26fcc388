"""Typed settings, read once at start from one YAML file and `DISTILLGUARD_*` variables.

Precedence, highest first: explicit overrides (CLI flags), environment variables,
the YAML file, defaults. Nested fields use `__` in the environment, e.g.
`DISTILLGUARD_UPSTREAM__BASE_URL`. See `service/examples/distillguard.yaml`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detectors.rules import DEFAULT_RULES, RuleError, parse_rules

ENV_PREFIX = "DISTILLGUARD_"
CONFIG_PATH_ENV = "DISTILLGUARD_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file, field and why."""


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `1h`, `250ms`, `7d`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 1m, 1h, 1d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowLimit(_Strict):
    """At most `limit` units in any sliding window of `window` seconds."""

    limit: int = Field(ge=0)
    window: float = 60.0

    _parse_window = field_validator("window", mode="before")(lambda cls, v: parse_duration(v))


class TierLimits(_Strict):
    """The limits of one tier; an absent limit means unlimited."""

    requests: WindowLimit | None = None
    tokens: WindowLimit | None = None
    concurrency: int | None = Field(default=None, ge=0)


class KeyEntry(_Strict):
    """One known key in the registry, named by its key_id (never the raw key)."""

    tier: str | None = None
    requests: WindowLimit | None = None
    tokens: WindowLimit | None = None
    concurrency: int | None = Field(default=None, ge=0)
    note: str | None = None


class IpLimit(_Strict):
    """Requests per client IP across all keys, against key spraying from one host."""

    limit: int = Field(ge=1)
    window: float = 60.0

    _parse_window = field_validator("window", mode="before")(lambda cls, v: parse_duration(v))


class LimitsConfig(_Strict):
    default_tier: str = "default"
    unknown_keys: Literal["default_tier", "reject"] = "default_tier"
    tiers: dict[str, TierLimits] = Field(
        default_factory=lambda: {
            "default": TierLimits(
                requests=WindowLimit(limit=600, window=60),
                tokens=WindowLimit(limit=1_000_000, window=60),
                concurrency=32,
            ),
            "throttled": TierLimits(
                requests=WindowLimit(limit=10, window=60),
                tokens=WindowLimit(limit=20_000, window=60),
                concurrency=2,
            ),
        }
    )
    keys: dict[str, KeyEntry] = Field(default_factory=dict)
    per_ip: IpLimit | None = None
    default_max_tokens: int = Field(default=4096, ge=1)
    lease_seconds: float = 30.0

    _parse_lease = field_validator("lease_seconds", mode="before")(lambda cls, v: parse_duration(v))

    @field_validator("keys")
    @classmethod
    def _key_ids_are_hashed(cls, keys: dict[str, KeyEntry]) -> dict[str, KeyEntry]:
        for key_id in keys:
            if not re.fullmatch(r"[0-9a-f]{16}", key_id):
                raise ValueError(
                    f"registry key {key_id!r} is not a key_id (16 hex characters); "
                    "list keys by `distillguard key-id RAW_KEY`, never raw"
                )
        return keys

    @model_validator(mode="after")
    def _tiers_exist(self) -> "LimitsConfig":
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of tiers {sorted(self.tiers)}")
        for key_id, entry in self.keys.items():
            if entry.tier is not None and entry.tier not in self.tiers:
                raise ValueError(f"keys.{key_id}.tier {entry.tier!r} is not one of tiers {sorted(self.tiers)}")
        return self


class UpstreamConfig(_Strict):
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: str | None = None
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_connections: int = Field(default=1000, ge=1)

    _parse_timeouts = field_validator("timeout", "connect_timeout", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/]+", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")


class LadderSettings(_Strict):
    """How detector verdicts become actions (see detectors/ladder.py)."""

    throttle_after: int = Field(default=3, ge=0)
    block_after: int = Field(default=0, ge=0)
    release_after: int = Field(default=10, ge=1)
    clear_below: float = Field(default=0.3, ge=0, le=1)
    action_ttl: float = 86400.0
    throttle_tier: str = "throttled"
    shadow: bool = False
    allowlist: list[str] = Field(default_factory=list)

    _parse_ttl = field_validator("action_ttl", mode="before")(lambda cls, v: parse_duration(v))


class LinkageSettings(_Strict):
    """Cross-key linkage in the scorer (service/linkage.py, detectors/linkage/, docs/detection.md)."""

    enabled: bool = True
    # One clustering pass per this period, in one scorer at a time.
    every_s: float = 300.0
    # Keys active this recently take part in a pass.
    window_s: float = 86400.0
    # How long a key's signature outlives its last event in Redis.
    signature_ttl: float = 172800.0
    # Clusters kept for review per pass (flagged first, then the largest).
    clusters_kept: int = Field(default=500, ge=1, le=2000)
    # The detector's main thresholds (detectors/linkage/config.py says why each default).
    min_requests: int = Field(default=5, ge=1)
    min_members: int = Field(default=5, ge=2)
    edge_min: float = Field(default=1.2, gt=0)
    harvest_min: float = Field(default=0.6, ge=0, le=1)
    coordination_min: float = Field(default=0.5, ge=0, le=1)

    _parse_durations = field_validator("every_s", "window_s", "signature_ttl", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @model_validator(mode="after")
    def _periods_fit(self) -> "LinkageSettings":
        if self.every_s < 1:
            raise ValueError(f"every_s must be at least 1s, got {self.every_s:g}s")
        if self.every_s >= self.window_s:
            raise ValueError(f"every_s ({self.every_s:g}s) must be shorter than window_s ({self.window_s:g}s)")
        if self.signature_ttl < self.window_s:
            raise ValueError(f"signature_ttl ({self.signature_ttl:g}s) must be at least window_s ({self.window_s:g}s)")
        return self


class DetectionConfig(_Strict):
    enabled: bool = True
    streams: int = Field(default=8, ge=1, le=1024)
    stream_maxlen: int = Field(default=200_000, ge=1000)
    model_path: str | None = None
    iforest_min_requests: int = Field(default=20, ge=1)
    rules: dict[str, dict] = Field(default_factory=lambda: dict(DEFAULT_RULES))
    ladder: LadderSettings = Field(default_factory=LadderSettings)
    flags_kept: int = Field(default=100_000, ge=100)
    # With Redis, `distillguard scorer` processes consume the streams; this also runs one
    # inside each gateway worker. Without Redis (embedded store) the gateway always does.
    embedded_scorer: bool = False
    # How long a scorer's claim on a stream shard outlives it: a killed scorer's shards
    # move to the others after about this long.
    scorer_lease: float = 10.0
    linkage: LinkageSettings = Field(default_factory=LinkageSettings)

    _parse_lease = field_validator("scorer_lease", mode="before")(lambda cls, v: parse_duration(v))

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, rules: dict[str, dict]) -> dict[str, dict]:
        try:
            parse_rules(rules)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return rules


SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})


class RecordingConfig(_Strict):
    """Traffic recording (docs/recording.md): each finished request appended to a traffic file."""

    enabled: bool = False
    # Empty: $DISTILLGUARD_HOME/recordings.
    directory: str | None = None
    bodies: Literal["full", "features", "none"] = "features"
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    keep_files: int | None = Field(default=None, ge=1)
    gzip: bool = True
    queue_size: int = Field(default=10_000, ge=1)
    queue_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    reorder_window: float = 60.0
    # Headers whose values are kept (a trailing * matches a prefix); other names keep "".
    headers: list[str] = Field(
        default_factory=lambda: ["user-agent", "content-type", "accept", "accept-encoding", "accept-language",
                                 "x-stainless-*"]
    )

    _parse_window = field_validator("reorder_window", mode="before")(lambda cls, v: parse_duration(v))

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, names: list[str]) -> list[str]:
        names = [name.strip().lower() for name in names]
        for name in names:
            if not name or "*" in name[:-1]:
                raise ValueError(f"{name!r} is not a header name (a * may only end it)")
            secret = sorted(s for s in SECRET_HEADERS if s == name or (name.endswith("*") and s.startswith(name[:-1])))
            if secret:
                raise ValueError(f"{name!r} would record {', '.join(secret)}, which carries credentials")
        return names


ALERT_EVENTS = ("flag", "throttle", "block", "cluster_flag", "manual_block")


class WebhookConfig(_Strict):
    """One alert receiver (service/alerts.py). `name` labels its metrics and log lines, since
    the URL may carry a token; the secret signs each body and may come from `secret_env`."""

    url: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    secret: SecretStr | None = None
    secret_env: str | None = None
    format: Literal["json", "slack"] = "json"
    events: list[Literal["flag", "throttle", "block", "cluster_flag", "manual_block"]] = Field(
        default_factory=lambda: list(ALERT_EVENTS)
    )

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/]+", url):
            raise ValueError("must be an http:// or https:// URL")  # the URL itself may hold a token
        return url

    @model_validator(mode="after")
    def _secret_resolved(self) -> "WebhookConfig":
        if self.secret_env:
            if self.secret is not None:
                raise ValueError("give secret or secret_env, not both")
            value = os.environ.get(self.secret_env)
            if not value:
                raise ValueError(f"secret_env {self.secret_env!r} is not set in the environment")
            self.secret, self.secret_env = SecretStr(value), None
        if self.secret is None and self.format == "json":
            raise ValueError("a json webhook needs a secret (or secret_env) to sign its alerts")
        return self


class AlertsConfig(_Strict):
    """Flags and blocks POSTed to webhooks, signed, retried with backoff (docs/review.md, Alerts)."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    timeout: float = 5.0
    max_attempts: int = Field(default=6, ge=1, le=20)
    # The first retry waits about `backoff`, each next one twice as long, at most `backoff_max`.
    backoff: float = 1.0
    backoff_max: float = 60.0
    queue_size: int = Field(default=1000, ge=1)
    # On shutdown, queued alerts get this long to go out.
    shutdown_grace: float = 2.0

    _parse_durations = field_validator("timeout", "backoff", "backoff_max", "shutdown_grace", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @model_validator(mode="after")
    def _names_unique(self) -> "AlertsConfig":
        names = [webhook.name for webhook in self.webhooks if webhook.name]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return self


class ReviewerEntry(_Strict):
    """One person who may sign in to the review console; only the SHA-256 of their token is
    kept here (`distillguard admin hash-token`), so a leaked config does not let anyone in."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["viewer", "reviewer"] = "viewer"
    token_sha256: str

    @field_validator("token_sha256")
    @classmethod
    def _is_sha256_hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64 hex characters `distillguard admin hash-token` prints, never the token")
        return value


class AdminConfig(_Strict):
    """The review console and admin API (docs/review.md). No reviewers (and no legacy
    `admin_token`) means both are off and answer 404."""

    reviewers: list[ReviewerEntry] = Field(default_factory=list)
    session_ttl: float = 8 * 3600.0
    # Failed sign-ins per client IP within `sign_in_window` before sign-in answers 429.
    sign_in_attempts: int = Field(default=5, ge=1)
    sign_in_window: float = 300.0
    # The audit stream is trimmed by age (XADD MINID), never by count.
    audit_retention: float = 365 * 86400.0
    # After a reviewer dismisses a key, automatic actions leave it alone this long.
    dismiss_quiet_period: float = 7 * 86400.0
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto, mark session cookies Secure.
    trust_forwarded_proto: bool = False
    # The console's external address, for links in alerts (e.g. https://guard.example.com).
    public_url: str | None = None

    _parse_durations = field_validator(
        "session_ttl", "sign_in_window", "audit_retention", "dismiss_quiet_period", mode="before"
    )(lambda cls, v: parse_duration(v))

    @model_validator(mode="after")
    def _names_and_tokens_unique(self) -> "AdminConfig":
        names = [reviewer.name for reviewer in self.reviewers]
        if len(names) != len(set(names)):
            raise ValueError("reviewer names must be unique")
        hashes = [reviewer.token_sha256 for reviewer in self.reviewers]
        if len(hashes) != len(set(hashes)):
            raise ValueError("two reviewers share one token; give each person their own")
        return self


class Settings(BaseSettings):
    """Every setting of the gateway and its commands."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    redis_url: str | None = None
    redis_timeout: float = 1.0
    redis_failure_policy: Literal["open", "closed"] = "open"
    key_secret: str | None = None
    admin_token: str | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)

    _parse_redis_timeout = field_validator("redis_timeout", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url in (None, ""):
            return None
        if not re.match(r"^(redis|rediss|unix)://", url):
            raise ValueError("must start with redis://, rediss:// or unix:// (a Redis Cluster is detected)")
        return url

    @model_validator(mode="after")
    def _throttle_tier_exists(self) -> "Settings":
        tier = self.detection.ladder.throttle_tier
        if tier not in self.limits.tiers:
            raise ValueError(f"detection.ladder.throttle_tier {tier!r} is not one of tiers {sorted(self.limits.tiers)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown setting"
        lines.append(f"  {field}: {reason}")
    return "\n".join(lines)


def load_settings(path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (or `$DISTILLGUARD_CONFIG`), the environment, then overrides."""
    path = path or os.environ.get(CONFIG_PATH_ENV)
    file_values = _read_yaml(Path(path)) if path else {}
    source = str(path) if path else "environment"
    explicit = {name: value for name, value in overrides.items() if value is not None}
    try:
        env_only = Settings(**explicit)
        merged = _deep_merge(file_values, _env_values(env_only))
        merged = _deep_merge(merged, explicit)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def _env_values(settings: Settings) -> dict[str, Any]:
    """The fields that the environment (or overrides) actually set, as plain data."""
    return settings.model_dump(include=settings.model_fields_set, exclude_unset=True)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _deep_merge(merged[name], value)
        else:
            merged[name] = value
    return merged
