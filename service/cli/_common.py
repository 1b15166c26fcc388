"""What every command shares: settings from the config and flags, handing flags to worker processes."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import CONFIG_PATH_ENV, ConfigError, Settings, load_settings


def settings_from(args: argparse.Namespace, **extra) -> Settings:
    """Validate the config now, with CLI flags on top, so errors show before anything starts."""
    flags = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "redis_url": getattr(args, "redis_url", None),
        **extra,
    }
    upstream = getattr(args, "upstream", None)
    if upstream:
        flags["upstream"] = {"base_url": upstream}
    try:
        return load_settings(getattr(args, "config", None), **flags)
    except ConfigError as exc:
        sys.exit(f"distillguard: {exc}")


def export_flags(args: argparse.Namespace) -> None:
    """Hand CLI flags to worker processes through the environment they inherit."""
    if getattr(args, "config", None):
        os.environ[CONFIG_PATH_ENV] = os.path.abspath(args.config)
    for flag, env in (
        ("host", "DISTILLGUARD_HOST"),
        ("port", "DISTILLGUARD_PORT"),
        ("workers", "DISTILLGUARD_WORKERS"),
        ("redis_url", "DISTILLGUARD_REDIS_URL"),
        ("upstream", "DISTILLGUARD_UPSTREAM__BASE_URL"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[env] = str(value)


def uvicorn_options() -> dict:
    options = {
        "http": "httptools", "access_log": False, "log_level": "warning", "lifespan": "on",
        "proxy_headers": False,  # client addresses are the socket's; X-Forwarded-For is not trusted
    }
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options


def hasher_and_secret(settings: Settings):
    from ..keys import KeyHasher, resolve_key_secret

    secret = resolve_key_secret(settings)
    return KeyHasher(secret), secret
