"""Alerts: a real scorer's new flags reach a real loopback webhook once, signed the way a
receiver can check; 5xx and timeouts are retried, a 400 is not; a dead webhook is counted
and logged while flags keep landing in Redis; Slack bodies; a full queue drops and counts."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import socket
import time
from typing import Self

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from detectors.ladder import Change
from detectors.pipeline import Pipeline
from detectors.rules import RulesDetector, parse_rules
from service.alerts.sender import AlertSender, alert_on_flag
from service.app import GatewayState
from service.config import ConfigError, load_settings
from service.console.auth import Reviewer
from service.decisions import Actor, Policy, apply_decision
from service.events import shard_of
from service.records.flags import read_flag
from service.review.actions import act_on_key
from service.scoring.detection import ladder_config
from service.scoring.scorer import Scorer
from service.store import connect, event_stream
from tests.conftest import PLUMBING_MIN_DISTINCT_TASKS, TEST_SECRET
from tests.support.processes import LOOPBACK, free_port, start_redis, start_scorer
from tests.support.traffic import chat_request, event_fields, harvest_request, key_id, plumbing_evidence
from tests.support.webhooks import Receiver, verified

SECRET = "whsec-test-only"
STREAMS = 2
FAST = {"timeout": "1s", "backoff": "20ms", "backoff_max": "100ms", "max_attempts": 3, "shutdown_grace": "5s"}


def settings(redis_url: str | None, webhooks: list[dict], **alerts):
    return load_settings(
        key_secret=TEST_SECRET, redis_url=redis_url,
        detection={"streams": STREAMS, "scorer_lease": "1s", "linkage": {"enabled": False}},
        alerts={**FAST, **alerts, "webhooks": webhooks},
    )


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{what} not reached in {timeout}s")


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.stop()


async def write_traffic(client, traffic: dict, per_key: int) -> None:
    """`per_key` stream entries for each raw key, interleaved as live traffic would be."""
    async with client.pipeline(transaction=False) as pipe:
        for i in range(per_key):
            for n, (raw, make) in enumerate(traffic.items()):
                tokens = 1 if make is harvest_request else 150
                fields = event_fields(raw, make(i), 1.7e9 + i * 3.0 + n * 0.01, tokens)
                pipe.xadd(event_stream(shard_of(key_id(raw), STREAMS)), fields)
        await pipe.execute()


class RunningScorer:
    """A real Scorer (rules and ladder) over real Redis in this event loop, with its own alert sender."""

    def __init__(self, app_settings) -> None:
        self.settings = app_settings

    async def __aenter__(self) -> Self:
        self.store = await connect(self.settings.redis_url, timeout=2.0)
        await self.store.client.flushdb()
        self.alerts = AlertSender(self.settings.alerts)
        self.alerts.start()
        detection = self.settings.detection  # rules only: the forest's load is not what this tests
        pipeline = Pipeline(RulesDetector(parse_rules(detection.rules)), None, ladder_config(detection), plumbing_evidence())
        self.scorer = Scorer(self.store, self.settings, name="alerts-test", alerts=self.alerts, pipeline=pipeline)
        self.task = asyncio.create_task(self.scorer.run())
        return self

    async def __aexit__(self, *_) -> None:
        self.scorer.stop()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.alerts.close()
        await self.store.close()


async def test_a_new_flag_from_the_scorer_is_posted_once_with_a_valid_signature(redis_url):
    traffic = {"sk-alert-harvester": harvest_request, "sk-alert-chat": chat_request}
    harvester = key_id("sk-alert-harvester")
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    async with Receiver() as receiver:
        config = {"key_secret": TEST_SECRET, "admin": {"public_url": "https://guard.example.com/"},
                  "detection": {"streams": STREAMS, "scorer_lease": "1s", "linkage": {"enabled": False},
                                "evidence": {"min_distinct_tasks": PLUMBING_MIN_DISTINCT_TASKS}},
                  "alerts": {**FAST, "webhooks": [{"url": receiver.url, "secret": SECRET, "name": "security"}]}}
        scorer = await asyncio.to_thread(start_scorer, config, redis_url, name="alerts-scorer")
        try:
            await write_traffic(client, traffic, 60)
            await eventually(lambda: read_flag(client, harvester), what="harvester flagged")
            await write_traffic(client, traffic, 60)  # more evaluations of an already flagged key
            await eventually(lambda: any(b["event"] == "throttle" for b in receiver.bodies()), what="throttle alert")
        finally:
            await asyncio.to_thread(scorer.stop)  # SIGTERM: queued alerts are flushed before it exits
        await client.aclose()
    assert scorer.proc.returncode == 0, scorer.log()
    flags = [b for b in receiver.bodies() if b["event"] == "flag"]
    assert [b["key_id"] for b in flags] == [harvester]
    flag = flags[0]
    assert flag["action"] == "flag" and flag["actor"] == "scorer" and flag["detector"]
    assert flag["reasons"] and all(set(r) == {"name", "detail"} for r in flag["reasons"])
    assert flag["console_url"] == f"https://guard.example.com/admin/keys/{harvester}"
    assert flag["requests_before_flag"] >= 10 and 0 < flag["score"] <= 1
    for headers, body in receiver.received:
        assert verified(SECRET, headers, body)
        assert not verified("another-secret", headers, body)
        assert headers["X-Distillguard-Event"] == json.loads(body)["event"]
        assert headers["X-Distillguard-Delivery"] == json.loads(body)["id"]
        assert b"sk-alert" not in body  # raw keys never leave the gateway
    assert key_id("sk-alert-chat") not in {b["key_id"] for b in receiver.bodies()}


async def test_a_webhook_answering_500_is_retried_until_it_accepts():
    async with Receiver(statuses=(500, 503)) as receiver:
        alerts = AlertSender(settings(None, [{"url": receiver.url, "secret": SECRET, "name": "flaky"}]).alerts)
        sent, failed = sample("distillguard_alerts_sent_total", webhook="flaky"), \
            sample("distillguard_alert_failures_total", webhook="flaky", reason="status_5xx")
        alerts.start()
        await alerts.notify({"event": "block", "key_id": "00aa11bb22cc33dd", "action": "block", "score": 0.97})
        await eventually(lambda: len(receiver.received) == 3, what="third attempt")
        await alerts.close()
    assert len(receiver.received) == 3
    assert len({headers["X-Distillguard-Delivery"] for headers, _ in receiver.received}) == 1  # one alert, retried
    assert all(verified(SECRET, headers, body) for headers, body in receiver.received)
    assert sample("distillguard_alerts_sent_total", webhook="flaky") == sent + 1
    assert sample("distillguard_alert_failures_total", webhook="flaky", reason="status_5xx") == failed + 2


async def test_a_400_is_not_retried():
    async with Receiver(statuses=(400, 400, 400)) as receiver:
        alerts = AlertSender(settings(None, [{"url": receiver.url, "secret": SECRET, "name": "strict"}]).alerts)
        gave_up = sample("distillguard_alerts_dropped_total", reason="gave_up")
        alerts.start()
        await alerts.notify({"event": "flag", "key_id": "00aa11bb22cc33dd", "score": 0.8})
        await eventually(lambda: receiver.received, what="first attempt")
        await alerts.close()  # waits for the alert to settle: a retry would have come by now
    assert len(receiver.received) == 1
    assert sample("distillguard_alert_failures_total", webhook="strict", reason="status_4xx") == 1
    assert sample("distillguard_alerts_dropped_total", reason="gave_up") == gave_up + 1


async def test_dead_webhooks_are_counted_and_logged_while_the_scorer_keeps_flagging(redis_url, caplog):
    caplog.set_level(logging.INFO, logger="distillguard.alerts")
    closed_port = free_port()  # nothing listens there
    silent = socket.socket()  # accepts connections, never answers
    silent.bind((LOOPBACK, 0))
    silent.listen(16)
    silent_url = f"http://{LOOPBACK}:{silent.getsockname()[1]}/hook"
    harvesters = [f"sk-dead-hook-{i}" for i in range(3)]
    before = {reason: sample("distillguard_alert_failures_total", webhook=name, reason=reason)
              for name, reason in (("closed", "connection"), ("silent", "timeout"))}
    try:
        async with Receiver() as live:
            app_settings = settings(redis_url, [
                {"url": f"http://{LOOPBACK}:{closed_port}/hook", "secret": SECRET, "name": "closed"},
                {"url": silent_url, "secret": SECRET, "name": "silent"},
                {"url": live.url, "secret": SECRET, "name": "live", "events": ["flag"]},
            ], timeout="300ms", shutdown_grace="200ms")  # the dead ones never drain
            async with RunningScorer(app_settings) as running:
                writer = aioredis.Redis.from_url(redis_url)
                await write_traffic(writer, {raw: harvest_request for raw in harvesters}, 60)
                await writer.aclose()
                for raw in harvesters:  # the scorer went on: every flag is in Redis
                    await eventually(lambda raw=raw: read_flag(running.store.client, key_id(raw)),
                                     what=f"{raw} flagged")
                await eventually(lambda: len(live.received) == len(harvesters), what="live webhook's alerts")
                await eventually(
                    lambda: sample("distillguard_alert_failures_total", webhook="silent", reason="timeout")
                    > before["timeout"], what="a timeout counted")
    finally:
        silent.close()
    assert {b["key_id"] for b in live.bodies()} == {key_id(raw) for raw in harvesters}
    assert sample("distillguard_alert_failures_total", webhook="closed", reason="connection") > before["connection"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("webhook closed failing (connection)" in m for m in messages)
    assert any("webhook silent failing (timeout)" in m for m in messages)
    assert not any(str(closed_port) in m or "/hook" in m for m in messages)  # webhooks named, never their URL


async def test_slack_format_posts_text_and_blocks_with_the_fields_escaped():
    async with Receiver() as receiver:
        alerts = AlertSender(settings(None, [{"url": receiver.url, "format": "slack", "name": "slack"}]).alerts,
                             public_url="https://guard.example.com/")
        alerts.start()
        await alerts.notify({"event": "flag", "key_id": "00aa11bb22cc33dd", "action": "flag", "score": 0.912,
                             "detector": "rules", "reasons": [{"name": "logprob_harvest", "detail": "<script> & co",
                                                               "value": 1.0}]})
        await eventually(lambda: receiver.received, what="slack message")
        await alerts.close()
    headers, raw = receiver.received[0]
    message = json.loads(raw)
    assert message["text"] == "distillguard: key 00aa11bb22cc33dd flagged for review (logprob_harvest)"
    text = json.dumps(message["blocks"])
    assert "&lt;script&gt; &amp; co" in text and "<script>" not in text
    assert "<https://guard.example.com/admin/keys/00aa11bb22cc33dd|Open in the console>" in text
    assert {"type": "mrkdwn", "text": "*score*\n0.91"} in message["blocks"][1]["fields"]
    assert message["distillguard"]["reasons"] == [{"name": "logprob_harvest", "detail": "<script> & co"}]
    assert "X-Distillguard-Signature" not in headers  # no secret configured for this one


async def test_a_full_queue_drops_alerts_and_counts_them(caplog):
    caplog.set_level(logging.WARNING, logger="distillguard.alerts")
    async with Receiver(hold=True) as receiver:
        alerts = AlertSender(settings(None, [{"url": receiver.url, "secret": SECRET, "name": "slow"}],
                                      queue_size=2).alerts)
        dropped = sample("distillguard_alerts_dropped_total", reason="queue_full")
        alerts.start()
        for n in range(5):  # no await in between: the delivery task has taken none yet
            alerts.notify_nowait({"event": "flag", "key_id": f"{n:016x}"})
        assert sample("distillguard_alert_queue_depth", webhook="slow") == 2
        receiver.released.set()
        await alerts.close()
    assert sample("distillguard_alerts_dropped_total", reason="queue_full") == dropped + 3
    assert [b["key_id"] for b in receiver.bodies()] == [f"{n:016x}" for n in range(2)]
    assert any("alert queue of webhook slow is full" in record.getMessage() for record in caplog.records)


async def test_the_gateway_exposes_its_sender_and_flushes_a_reviewer_block_on_stop(redis_url):
    async with Receiver() as receiver:
        state = GatewayState(settings(redis_url, [{"url": receiver.url, "secret": SECRET, "name": "console",
                                                   "events": ["manual_block"]}]))
        await state.start()
        await state.alerts.notify({"event": "flag", "key_id": "00aa11bb22cc33dd"})  # not subscribed
        await state.alerts.notify({"event": "manual_block", "key_id": "00aa11bb22cc33dd", "actor": "alice",
                                   "reason": "confirmed harvesting", "prompt": "never sent", "api_key": "sk-x"})
        await act_on_key(state.store.client, state.settings, Reviewer("bob", "reviewer"), "11bb22cc33dd44ee",
                         "block", reason="same template as lk-0123456789", alerts=state.alerts)
        await act_on_key(state.store.client, state.settings, Reviewer("bob", "reviewer"), "11bb22cc33dd44ee",
                         "note", note="not an alert", alerts=state.alerts)
        await state.stop()
    [(headers, body), (_, reviewer_body)] = receiver.received
    alert = json.loads(body)
    assert headers["X-Distillguard-Event"] == "manual_block"
    assert (alert["action"], alert["actor"], alert["reason"], alert["detector"]) == \
        ("block", "alice", "confirmed harvesting", "reviewer")
    assert "prompt" not in alert and "api_key" not in alert and b"sk-x" not in body
    console_block = json.loads(reviewer_body)
    assert (console_block["event"], console_block["key_id"], console_block["actor"]) == \
        ("manual_block", "11bb22cc33dd44ee", "bob")


async def test_a_flagged_cluster_alerts_once_while_each_enforced_member_alerts(redis_url):
    def member(key: str, action: str) -> Change:
        reason = {"name": "linked_network", "detail": "member of cluster lk-0123456789 (12 keys)"}
        return Change(key, action, 0.9, "linkage", (reason,), 1.7e9, 40, True, 86400.0)

    async with Receiver() as receiver:
        store = await connect(redis_url, timeout=2.0)
        await store.client.flushdb()
        alerts = AlertSender(settings(redis_url, [{"url": receiver.url, "secret": SECRET}]).alerts)
        alerts.start()
        policy = Policy.of(settings(redis_url, []))
        for key in ("00000000000000a1", "00000000000000a2", "00000000000000a3"):
            await alert_on_flag(alerts, store.client, member(key, "flag"), first_flag=True)
        await apply_decision(store.client, policy, Actor("scorer", "linkage"), "00000000000000a1", "throttle",
                             change=member("00000000000000a1", "throttle"), alerts=alerts)
        shadow = dataclasses.replace(member("00000000000000a2", "throttle"), enforce=False)
        await apply_decision(store.client, policy, Actor("scorer", "linkage"), "00000000000000a2", "throttle",
                             change=shadow, alerts=alerts)  # shadow mode: flagged, not throttled, no throttle alert
        await alerts.close()
        await store.close()
    assert [(b["event"], b["key_id"], b["cluster_id"]) for b in receiver.bodies()] == [
        ("cluster_flag", "00000000000000a1", "lk-0123456789"), ("throttle", "00000000000000a1", "lk-0123456789")]


def test_backoff_doubles_with_jitter_up_to_its_cap():
    alerts = AlertSender(settings(None, [], backoff="1s", backoff_max="10s").alerts)
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)):
        delays = [alerts.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1
    assert alerts.backoff(1, retry_after=7) == 7 and alerts.backoff(1, retry_after=600) == 10


def test_webhook_secrets_come_from_the_environment_and_json_hooks_need_one(monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    hook = load_settings(alerts={"webhooks": [{"url": "https://hooks.example.com/x", "secret_env": "HOOK_SECRET"}]})
    assert hook.alerts.webhooks[0].secret.get_secret_value() == "from-env"
    assert "from-env" not in repr(hook.alerts)
    with pytest.raises(ConfigError, match="needs a secret"):
        load_settings(alerts={"webhooks": [{"url": "https://hooks.example.com/x"}]})
    with pytest.raises(ConfigError, match="MISSING_SECRET"):
        load_settings(alerts={"webhooks": [{"url": "https://hooks.example.com/x", "secret_env": "MISSING_SECRET"}]})
