"""One door for decisions: `distillguard keys block` writes what the console's block writes
(decision, audit entry, label, review status) and sends the same alert to a real webhook."""

from __future__ import annotations

import asyncio
import json
import os

import yaml

from service.alerts.sender import AlertSender
from service.config import load_settings
from service.console.auth import Reviewer
from service.records.audit import read_audit
from service.records.decisions import get_decision
from service.records.labels import read_label
from service.records.reviews import review_status
from service.review.actions import act_on_key
from service.store import connect
from tests.conftest import TEST_SECRET
from tests.support.processes import _cli
from tests.support.webhooks import Receiver

CONSOLE_KEY = "0123456789abcdef"
CLI_KEY = "fedcba9876543210"
ALERTS = {"timeout": "2s", "backoff": "20ms", "backoff_max": "100ms", "max_attempts": 3, "shutdown_grace": "5s"}


def config(redis_url: str, webhook_url: str) -> dict:
    return {"key_secret": TEST_SECRET, "redis_url": redis_url,
            "alerts": {**ALERTS, "webhooks": [{"url": webhook_url, "secret": "whsec-test-only", "events": ["manual_block"]}]}}


async def cli(*args: str, env: dict) -> tuple[int, str, str]:
    """The CLI as an operator runs it, while this loop keeps the webhook answering."""
    proc = await asyncio.create_subprocess_exec(*_cli(*args), env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


async def written(client, key_id: str) -> dict:
    """What a block wrote about a key, less who wrote it and when."""
    decision = (await get_decision(client, key_id)).as_dict()
    [entry] = await read_audit(client, target=key_id)
    label = await read_label(client, key_id)
    review = await review_status(client, key_id)
    return {
        "decision": {name: value for name, value in decision.items() if name not in ("set_by", "set_at", "expires_at")},
        "expires_in": round(decision["expires_at"] - decision["set_at"]),
        "audit": {"action": entry["action"], "reason": entry["reason"],
                  "previous": entry["details"]["previous_decision"],
                  "decision": {name: value for name, value in entry["details"]["decision"].items()
                               if name not in ("set_by", "set_at", "expires_at")}},
        "label": {name: label[name] for name in ("label", "action", "reason")},
        "review": {name: review[name] for name in ("status", "action", "reason", "label")},
    }


async def test_the_cli_block_writes_and_alerts_what_the_console_block_does(redis_server, tmp_path):
    async with Receiver() as receiver:
        settings = load_settings(**config(redis_server.url, receiver.url))
        store = await connect(redis_server.url, timeout=2.0)
        client = store.client
        await client.delete(*[f"dg:{{{key}}}:{part}" for key in (CONSOLE_KEY, CLI_KEY)
                              for part in ("decision", "audit", "label", "review", "dismissed")])
        alerts = AlertSender(settings.alerts)
        alerts.start()
        await act_on_key(client, settings, Reviewer("alice", "reviewer"), CONSOLE_KEY, "block",
                         reason="harvesting", expires_in="1h", note="same template", alerts=alerts)
        await alerts.close()

        path = tmp_path / "distillguard.yaml"
        path.write_text(yaml.safe_dump(config(redis_server.url, receiver.url)))
        env = {**os.environ, "USER": "ops"}
        code, out, err = await cli("keys", "block", CLI_KEY, "--config", str(path), "--reason", "harvesting",
                                   "--ttl", "1h", "--note", "same template", env=env)
        assert code == 0, err
        assert json.loads(out)["action"] == "block"

        console, from_cli = await written(client, CONSOLE_KEY), await written(client, CLI_KEY)
        assert console == from_cli
        assert console["decision"]["action"] == "block" and console["label"]["label"] == "confirmed"
        assert (await get_decision(client, CLI_KEY)).set_by == "cli:ops"
        assert (await read_audit(client, target=CLI_KEY))[0]["actor"] == "cli:ops"
        await store.close()
    bodies = {body["key_id"]: body for body in receiver.bodies()}
    assert set(bodies) == {CONSOLE_KEY, CLI_KEY}
    same = ("event", "action", "detector", "reason")
    assert [bodies[CLI_KEY][name] for name in same] == [bodies[CONSOLE_KEY][name] for name in same] == \
        ["manual_block", "block", "reviewer", "harvesting"]
    assert (bodies[CONSOLE_KEY]["actor"], bodies[CLI_KEY]["actor"]) == ("alice", "cli:ops")


async def test_the_cli_refuses_what_the_console_refuses_and_writes_nothing(redis_server):
    env = {**os.environ, "USER": "ops"}
    code, _, err = await cli("keys", "--redis-url", redis_server.url, "block", "not-a-key-id", "--reason", "x",
                             env=env)
    assert code == 2 and "Not a key_id" in err
    code, _, err = await cli("keys", "block", "00000000000000ee", "--redis-url", redis_server.url, "--reason",
                             "x", "--ttl", "soon", env=env)
    assert code == 2 and "expires_in" in err
    store = await connect(redis_server.url, timeout=2.0)
    assert (await get_decision(store.client, "00000000000000ee")).action == "allow"
    assert await read_audit(store.client, target="00000000000000ee") == []
    await store.close()
