"""What every command shares: settings from the config and flags, handing flags to worker processes."""

from __future__ import annotations

import argparse
import contextlib
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


def shared_state_settings(args: argparse.Namespace, command: str) -> Settings:
    """Settings for a command that reads or writes the gateway's shared state in Redis. The
    embedded store lives inside one gateway process, so such a command refuses to run
    without a Redis URL (exit 2) rather than read an empty store of its own."""
    settings = settings_from(args)
    if settings.redis_url is None:
        print(f"distillguard {command}: needs the gateway's Redis: pass --redis-url, or set redis_url in the "
              f"config (--config) or DISTILLGUARD_REDIS_URL; the embedded store lives inside one gateway process, "
              f"so there is nothing to read here", file=sys.stderr)
        sys.exit(2)
    return settings


@contextlib.contextmanager
def redis_errors(command: str):
    """A Redis that cannot be reached ends the command with one line (exit 1), not a traceback;
    the URL is not repeated, since it may carry a password."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        print(f"distillguard {command}: cannot reach the gateway's Redis ({type(exc).__name__})", file=sys.stderr)
        sys.exit(1)


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
