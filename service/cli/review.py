"""The commands of reviewers and operators: key-id, keys, admin hash-token, audit export, labels export."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from ..config import Settings
from ._common import redis_errors, settings_from, shared_state_settings


def cmd_key_id(args: argparse.Namespace) -> None:
    from ..keys import KeyHasher, resolve_key_secret

    hasher = KeyHasher(resolve_key_secret(settings_from(args)))
    raw_keys = args.raw_keys or (line.rstrip("\r\n") for line in sys.stdin)
    for raw_key in raw_keys:
        if raw_key:
            print(hasher.key_id(raw_key), flush=not args.raw_keys)


def cmd_keys(args: argparse.Namespace) -> None:
    """`keys block|throttle|allow|show`: a person's decision, through the same door as the
    console's (service/decisions.py): decision, label, review status, audit entry and alert."""
    settings = shared_state_settings(args, f"keys {args.keys_command}")
    with redis_errors(f"keys {args.keys_command}"):
        code = asyncio.run(_keys(args, settings))
    if code:
        sys.exit(code)


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from ..alerts.sender import AlertSender, public_url_of
    from ..decisions import Actor, Policy, apply_decision
    from ..errors import GatewayError
    from ..records.decisions import get_decision
    from ..store import connect

    store = await connect(settings.redis_url, timeout=max(settings.redis_timeout, 2.0))
    # The CLI has no long-running sender: this one delivers the command's alert, then closes,
    # waiting up to `alerts.shutdown_grace` for the webhooks to answer.
    alerts = AlertSender(settings.alerts, public_url_of(settings))
    alerts.start()
    try:
        if args.keys_command != "show":
            action = "unblock" if args.keys_command == "allow" else args.keys_command
            try:
                await apply_decision(store.client, Policy.of(settings), Actor("cli", os.environ.get("USER", "cli")),
                                     args.key_id, action, reason=getattr(args, "reason", None) or "",
                                     expires_in=getattr(args, "ttl", None), tier=getattr(args, "tier", None),
                                     note=getattr(args, "note", None), alerts=alerts)
            except GatewayError as exc:
                print(f"distillguard keys {args.keys_command}: {exc.message}", file=sys.stderr)
                return 2
        decision = await get_decision(store.client, args.key_id)
        print(json.dumps({"key_id": args.key_id, **decision.as_dict()}, indent=2))
        return 0
    finally:
        await alerts.close()
        await store.close()


def cmd_admin_hash_token(args: argparse.Namespace) -> None:
    from ..console.auth import hash_token_command

    hash_token_command(args.token)


def cmd_audit(args: argparse.Namespace) -> None:
    """`audit export`: the audit stream as JSON Lines (see service/records/audit.py)."""
    from ..records.audit import export_command

    settings = shared_state_settings(args, "audit export")
    try:
        with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout) as out:
            with redis_errors("audit export"):
                written = asyncio.run(export_command(settings, out, since=args.since, until=args.until))
    except ValueError as exc:
        sys.exit(f"distillguard audit export: {exc}")
    print(f"{written} audit entries", file=sys.stderr)


def cmd_labels(args: argparse.Namespace) -> None:
    """`labels export`: reviewers' verdicts as JSON Lines (see service/records/labels.py)."""
    from ..records.labels import export_command

    settings = shared_state_settings(args, "labels export")
    with redis_errors("labels export"):
        written = export_command(settings, out=args.out)
    print(f"{written} labels", file=sys.stderr)
