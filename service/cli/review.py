"""The commands of reviewers and operators: key-id, keys, admin hash-token, audit export, labels export."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from ..config import Settings, parse_duration
from ._common import settings_from


def cmd_key_id(args: argparse.Namespace) -> None:
    from ..keys import KeyHasher, resolve_key_secret

    hasher = KeyHasher(resolve_key_secret(settings_from(args)))
    raw_keys = args.raw_keys or (line.rstrip("\r\n") for line in sys.stdin)
    for raw_key in raw_keys:
        if raw_key:
            print(hasher.key_id(raw_key), flush=not args.raw_keys)


def cmd_keys(args: argparse.Namespace) -> None:
    settings = settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `keys` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    asyncio.run(_keys(args, settings))


async def _keys(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from ..decisions import get_decision, set_decision
    from ..store import connect

    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 2.0))
    try:
        who = os.environ.get("USER", "cli")
        if args.keys_command == "block":
            ttl = parse_duration(args.ttl) if args.ttl else None
            await set_decision(store.client, args.key_id, "block", reason=args.reason, note=args.note or "",
                               set_by=f"cli:{who}", ttl_seconds=ttl)
        elif args.keys_command == "throttle":
            if args.tier not in settings.limits.tiers:
                sys.exit(f"distillguard: tier {args.tier!r} is not one of {sorted(settings.limits.tiers)}")
            ttl = parse_duration(args.ttl) if args.ttl else None
            await set_decision(store.client, args.key_id, "throttle", tier=args.tier, reason=args.reason or "",
                               note=args.note or "", set_by=f"cli:{who}", ttl_seconds=ttl)
        elif args.keys_command == "allow":
            await set_decision(store.client, args.key_id, "allow", set_by=f"cli:{who}")
        if args.keys_command != "show":
            from ..review.audit import append_audit

            await append_audit(store.client, actor=f"cli:{who}", target=args.key_id,
                               action="unblock" if args.keys_command == "allow" else args.keys_command,
                               reason=getattr(args, "reason", None) or "",
                               details={"tier": getattr(args, "tier", None), "ttl": getattr(args, "ttl", None),
                                        "note": getattr(args, "note", None)},
                               retention_seconds=settings.admin.audit_retention)
        decision = await get_decision(store.client, args.key_id)
        print(json.dumps({"key_id": args.key_id, **decision.as_dict()}, indent=2))
    finally:
        await store.close()


def cmd_admin_hash_token(args: argparse.Namespace) -> None:
    from ..console.auth import hash_token_command

    hash_token_command(args.token)


def cmd_audit(args: argparse.Namespace) -> None:
    """`audit export`: the audit stream as JSON Lines (see service/review/audit.py)."""
    from ..review.audit import export_command

    settings = settings_from(args)
    try:
        with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout) as out:
            written = asyncio.run(export_command(settings, out, since=args.since, until=args.until))
    except ValueError as exc:
        sys.exit(f"distillguard audit export: {exc}")
    print(f"{written} audit entries", file=sys.stderr)


def cmd_labels(args: argparse.Namespace) -> None:
    """`labels export`: reviewers' verdicts as JSON Lines (see service/review/labels.py)."""
    from ..review.labels import export_command

    settings = settings_from(args)
    if settings.redis_url is None:
        sys.exit("distillguard: `labels` needs --redis-url (or DISTILLGUARD_REDIS_URL): the gateway's Redis")
    print(f"{export_command(settings, out=args.out)} labels", file=sys.stderr)
