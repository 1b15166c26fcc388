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
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .base import ConfigError, StrictModel, parse_duration
from .detection import DetectionConfig, LadderSettings, LinkageSettings, SpoolSettings
from .gateway import (
    SECRET_HEADERS,
    IpLimit,
    KeyEntry,
    LimitsConfig,
    RecordingConfig,
    TierLimits,
    UpstreamConfig,
    WindowLimit,
)
from .review import ALERT_EVENTS, AdminConfig, AlertsConfig, ReviewerEntry, WebhookConfig

__all__ = [
    "ALERT_EVENTS",
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "SECRET_HEADERS",
    "AdminConfig",
    "AlertsConfig",
    "ConfigError",
    "DetectionConfig",
    "IpLimit",
    "KeyEntry",
    "LadderSettings",
    "LimitsConfig",
    "LinkageSettings",
    "RecordingConfig",
    "ReviewerEntry",
    "Settings",
    "SpoolSettings",
    "StrictModel",
    "TierLimits",
    "UpstreamConfig",
    "WebhookConfig",
    "WindowLimit",
    "load_settings",
    "parse_duration",
]

ENV_PREFIX = "DISTILLGUARD_"


CONFIG_PATH_ENV = "DISTILLGUARD_CONFIG"


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
    max_json_depth: int = Field(default=64, ge=2)
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
    def _throttle_tier_exists(self) -> Settings:
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
