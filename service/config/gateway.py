"""The request path's settings: rate-limit tiers and keys, the upstream, traffic recording."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import StrictModel, parse_duration


class WindowLimit(StrictModel):
    """At most `limit` units in any sliding window of `window` seconds."""

    limit: int = Field(ge=0)
    window: float = 60.0

    _parse_window = field_validator("window", mode="before")(lambda cls, v: parse_duration(v))


class TierLimits(StrictModel):
    """The limits of one tier; an absent limit means unlimited."""

    requests: WindowLimit | None = None
    tokens: WindowLimit | None = None
    concurrency: int | None = Field(default=None, ge=0)


class KeyEntry(StrictModel):
    """One known key in the registry, named by its key_id (never the raw key)."""

    tier: str | None = None
    requests: WindowLimit | None = None
    tokens: WindowLimit | None = None
    concurrency: int | None = Field(default=None, ge=0)
    note: str | None = None


class IpLimit(StrictModel):
    """Requests per client IP across all keys, against key spraying from one host."""

    limit: int = Field(ge=1)
    window: float = 60.0

    _parse_window = field_validator("window", mode="before")(lambda cls, v: parse_duration(v))


class LimitsConfig(StrictModel):
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
    def _tiers_exist(self) -> LimitsConfig:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of tiers {sorted(self.tiers)}")
        for key_id, entry in self.keys.items():
            if entry.tier is not None and entry.tier not in self.tiers:
                raise ValueError(f"keys.{key_id}.tier {entry.tier!r} is not one of tiers {sorted(self.tiers)}")
        return self


class UpstreamConfig(StrictModel):
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: str | None = None
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_connections: int = Field(default=1000, ge=1)
    # Idle pooled connections are dropped after this, below the 5 s idle timeout of uvicorn,
    # vLLM and many servers, so a request is never sent on a connection the upstream is closing
    # (that race answers 502 mid-conversation). Raise it only for upstreams that keep longer.
    keepalive_timeout: float = Field(default=4.0, gt=0)

    _parse_timeouts = field_validator("timeout", "connect_timeout", "keepalive_timeout", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/]+", url):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")


SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})


class RecordingConfig(StrictModel):
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
