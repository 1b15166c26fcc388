"""Review settings: who may sign in to the console, audit retention, alert webhooks."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from .base import StrictModel, parse_duration

ALERT_EVENTS = ("flag", "throttle", "block", "cluster_flag", "manual_block")


class WebhookConfig(StrictModel):
    """One alert receiver (service/alerts/sender.py). `name` labels its metrics and log lines, since
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
    def _secret_resolved(self) -> WebhookConfig:
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


class AlertsConfig(StrictModel):
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
    def _names_unique(self) -> AlertsConfig:
        names = [webhook.name for webhook in self.webhooks if webhook.name]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return self


class ReviewerEntry(StrictModel):
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


class AdminConfig(StrictModel):
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
    def _names_and_tokens_unique(self) -> AdminConfig:
        names = [reviewer.name for reviewer in self.reviewers]
        if len(names) != len(set(names)):
            raise ValueError("reviewer names must be unique")
        hashes = [reviewer.token_sha256 for reviewer in self.reviewers]
        if len(hashes) != len(set(hashes)):
            raise ValueError("two reviewers share one token; give each person their own")
        return self
