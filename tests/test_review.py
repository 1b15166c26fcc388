"""Reviewer actions and verdicts: block, throttle, unblock, dismiss and note on a key or a whole
cluster through `/admin/api` (in-process gateway, real Redis), each stored as a decision the
gateway enforces, a label, a review status and exactly one audit entry; dismissal respected
by a real scorer process; `distillguard labels export`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys

import httpx
import openai
import pytest
import redis

from detectors.base import Reason
from detectors.linkage.verdicts import ClusterVerdict
from detectors.pipeline import KeyState
from service.app import create_app
from service.config import load_settings
from service.console.auth import Reviewer
from service.events import shard_of
from service.records.audit import read_audit
from service.records.labels import read_labels
from service.records.reviews import is_dismissed, review_status
from service.review.actions import act_on_key
from service.store import (
    AUDIT_STREAM,
    LABEL_INDEX,
    cluster_key,
    decision_key,
    dismissed_key,
    event_stream,
    flag_key,
    key_cluster_key,
    key_state_key,
)
from tests.conftest import base_config
from tests.support.processes import wait_until
from tests.support.traffic import chat_request, event_fields, harvest_request, key_id

TOKENS = {"alice": "alice-token-for-tests-0123456789", "victor": "victor-token-for-tests-0123456789"}
STREAMS = 2


def admin_section() -> dict:
    return {"reviewers": [
        {"name": "alice", "role": "reviewer", "token_sha256": hashlib.sha256(TOKENS["alice"].encode()).hexdigest()},
        {"name": "victor", "role": "viewer", "token_sha256": hashlib.sha256(TOKENS["victor"].encode()).hexdigest()},
    ], "dismiss_quiet_period": "3d"}


def config(upstream_url: str = "http://127.0.0.1:9/v1", **extra) -> dict:
    extra.setdefault("detection", {"streams": STREAMS, "scorer_lease": "1s"})
    return base_config(upstream_url, admin=admin_section(), **extra)


def auth(name: str) -> dict:
    return {"authorization": f"Bearer {TOKENS[name]}"}


@pytest.fixture
def redis_db(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def gateway(redis_server, redis_db):
    """The gateway in process (lifespan run), over the shared real Redis."""
    app = create_app(load_settings(None, **config(), redis_url=redis_server.url))
    async with app.api.router.lifespan_context(app.api), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as http:
        http.app = app
        yield http


async def audited(http, target: str) -> list[dict]:
    return await read_audit(http.app.state.store.client, target=target)


async def test_a_reviewer_blocks_a_key_and_the_openai_client_gets_403_with_one_audit_entry(gateway, redis_db):
    key = key_id("sk-harvester")
    response = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"),
                                  json={"action": "block", "reason": "harvesting logprobs", "expires_in": "7d"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["decision"]["action"] == "block" and result["decision"]["set_by"] == "reviewer:alice"
    assert result["label"]["label"] == "confirmed" and result["review"]["status"] == "confirmed"
    assert 7 * 86400 - 60 < redis_db.ttl(decision_key(key)) <= 7 * 86400
    client = openai.AsyncOpenAI(api_key="sk-harvester", base_url="http://gateway/v1", max_retries=0,
                                http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app)))
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(**harvest_request(0))
    entries = await audited(gateway, key)
    assert [(e["actor"], e["action"], e["reason"]) for e in entries] == [("alice", "block", "harvesting logprobs")]
    shown = (await gateway.get(f"/admin/api/keys/{key}", headers=auth("victor"))).json()
    assert shown["review"]["status"] == "confirmed" and shown["label"]["reviewer"] == "alice"


async def test_a_viewer_cannot_act_and_nothing_is_written(gateway, redis_db):
    key = key_id("sk-someone")
    response = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("victor"),
                                  json={"action": "block", "reason": "looks odd"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_role"
    assert not redis_db.exists(decision_key(key)) and await audited(gateway, key) == []
    missing = await gateway.post(f"/admin/api/keys/{key}/actions", json={"action": "note", "note": "x"})
    assert missing.status_code == 401 and "error" in missing.json()


@pytest.mark.parametrize("path_key, body, code", [
    ("not-a-key", {"action": "block", "reason": "r"}, "invalid_key_id"),
    (None, {"action": "ban", "reason": "r"}, "invalid_action"),
    (None, {"action": "block"}, "reason_required"),
    (None, {"action": "dismiss", "reason": "  "}, "reason_required"),
    (None, {"action": "throttle", "tier": "platinum"}, "unknown_tier"),
    (None, {"action": "throttle"}, "tier_required"),
    (None, {"action": "block", "reason": "r", "expires_in": "soon"}, "invalid_expiry"),
    (None, {"action": "note"}, "note_required"),
])
async def test_an_invalid_action_is_refused_with_a_clear_error_and_nothing_written(gateway, redis_db, path_key,
                                                                                    body, code):
    key = path_key or key_id("sk-valid")
    response = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert not redis_db.exists(decision_key(key), LABEL_INDEX, AUDIT_STREAM)


async def test_throttle_puts_the_key_on_the_tier_and_unblock_lifts_it(gateway, redis_db):
    key = key_id("sk-throttled")
    throttled = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"),
                                   json={"action": "throttle", "tier": "throttled", "reason": "bursty"})
    assert throttled.json()["decision"] | {"set_at": 0} == {
        "action": "throttle", "reason": "bursty", "tier": "throttled", "note": "", "set_by": "reviewer:alice",
        "set_at": 0, "expires_at": None}
    statuses = [(await gateway.post("/v1/chat/completions", headers={"authorization": "Bearer sk-throttled"},
                                    json=chat_request(i))).status_code for i in range(4)]
    assert statuses[-1] == 429  # the throttled tier allows 2 a minute
    lifted = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"),
                                json={"action": "unblock", "reason": "talked to the customer"})
    assert lifted.json()["decision"]["action"] == "allow" and not redis_db.exists(decision_key(key))
    assert lifted.json()["label"]["label"] == "confirmed"  # unblocking is not a false-positive verdict
    assert [e["action"] for e in await audited(gateway, key)] == ["unblock", "throttle"]


async def test_dismiss_lifts_the_scorers_throttle_labels_the_key_and_quiets_it_for_the_configured_period(
    gateway, redis_db
):
    key = key_id("sk-false-positive")
    redis_db.hset(decision_key(key), mapping={"action": "throttle", "tier": "throttled", "set_by": "scorer:rules",
                                              "reason": "suspected_distillation", "set_at": "1.0"})
    redis_db.set(flag_key(key), json.dumps({"key_id": key, "action": "throttle", "status": "open"}), ex=3600)
    response = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"),
                                  json={"action": "dismiss", "reason": "our own eval harness"})
    assert response.status_code == 200, response.text
    assert not redis_db.exists(decision_key(key))
    client = gateway.app.state.store.client
    assert await is_dismissed(client, key)
    assert 3 * 86400 - 60 < redis_db.ttl(dismissed_key(key)) <= 3 * 86400
    flag = json.loads(redis_db.get(flag_key(key)))
    assert flag["review"] == "dismissed" and flag["status"] == "open"  # the scorer's own field is untouched
    assert 3500 < redis_db.ttl(flag_key(key)) <= 3600
    noted = await gateway.post(f"/admin/api/keys/{key}/actions", headers=auth("alice"),
                               json={"action": "note", "note": "harness runs nightly from 10.2.0.0/16"})
    review = noted.json()["review"]
    assert review["status"] == "dismissed" and review["label"] == "dismissed"
    assert review["notes"][0]["note"].startswith("harness runs nightly")
    labels = (await gateway.get("/admin/api/labels", headers=auth("victor"))).json()["labels"]
    assert [(item["key_id"], item["label"], item["reviewer"]) for item in labels] == [(key, "dismissed", "alice")]
    assert [e["action"] for e in await audited(gateway, key)] == ["note", "dismiss"]


async def test_a_block_after_a_dismissal_ends_the_quiet_period(redis_server, redis_db):
    settings = load_settings(None, **config(), redis_url=redis_server.url)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    key, alice = key_id("sk-changed-mind"), Reviewer("alice", "reviewer")
    try:
        await act_on_key(client, settings, alice, key, "dismiss", reason="looked like a test")
        await act_on_key(client, settings, alice, key, "block", reason="it was not")
        assert not await is_dismissed(client, key)
        assert (await review_status(client, key))["status"] == "confirmed"
        assert [label["label"] for label in await read_labels(client)] == ["confirmed"]
    finally:
        await client.aclose()


def store_cluster(redis_db, members: list[str]) -> str:
    """A cluster as the linkage pass stores it (service/scoring/linkage_pass.py `_store_clusters`)."""
    cluster = ClusterVerdict(
        cluster_id="lk-0123456789", members=tuple(members), score=0.93, flagged=True,
        properties={"requests_24h": 900.0}, evidence={"template": 3}, shared_values=(),
        reasons=(Reason(name="linked_network", feature="cluster_score", value=0.93, detail="cluster lk-0123456789"),),
        member_fit={},
    )
    redis_db.set(cluster_key(cluster.cluster_id), json.dumps({**cluster.as_dict(), "seen_at": 1.0}))
    for member in members:
        redis_db.set(key_cluster_key(member), cluster.cluster_id)
    return cluster.cluster_id


async def test_a_cluster_block_acts_on_every_member_with_one_audit_entry_each_and_one_for_the_cluster(
    gateway, redis_db
):
    members = [key_id(f"sk-hydra-{n}") for n in range(3)]
    cluster_id = store_cluster(redis_db, members)
    response = await gateway.post(f"/admin/api/clusters/{cluster_id}/actions", headers=auth("alice"),
                                  json={"action": "block", "reason": "one network", "expires_in": "1d"})
    assert response.status_code == 200, response.text
    assert response.json()["members"] == members
    for member in members:
        assert redis_db.hget(decision_key(member), "set_by") == b"reviewer:alice"
        entries = await audited(gateway, member)
        assert [(e["action"], e["details"]["cluster_id"]) for e in entries] == [("block", cluster_id)]
    assert [e["action"] for e in await audited(gateway, cluster_id)] == ["cluster_block"]
    assert sorted(label["key_id"] for label in await read_labels(gateway.app.state.store.client)) == sorted(members)
    unknown = await gateway.post("/admin/api/clusters/lk-ffffffffff/actions", headers=auth("alice"),
                                 json={"action": "block", "reason": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_without_reviewers_the_action_route_does_not_exist(redis_server, redis_db):
    settings = load_settings(None, **base_config("http://127.0.0.1:9/v1"), redis_url=redis_server.url)
    app = create_app(settings)
    async with app.api.router.lifespan_context(app.api), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as http:
        response = await http.post(f"/admin/api/keys/{key_id('sk-x')}/actions", headers=auth("alice"),
                                   json={"action": "block", "reason": "r"})
    assert response.status_code == 404


def test_labels_export_writes_every_verdict_as_json_lines(redis_server, redis_db, tmp_path):
    settings = load_settings(None, **config(), redis_url=redis_server.url)
    alice = Reviewer("alice", "reviewer")

    async def label_two():
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await act_on_key(client, settings, alice, key_id("sk-a"), "block", reason="harvester")
            await act_on_key(client, settings, alice, key_id("sk-b"), "dismiss", reason="benchmark team")
            await act_on_key(client, settings, alice, key_id("sk-c"), "note", note="watch this one")
        finally:
            await client.aclose()

    asyncio.run(label_two())
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config(redis_url=redis_server.url)))
    out = tmp_path / "labels.jsonl"
    subprocess.run([sys.executable, "-m", "service.cli", "labels", "--config", str(config_file), "export",
                    "--out", str(out)], check=True, timeout=60, env={**os.environ})
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["key_id"], line["label"], line["action"], line["reviewer"], line["reason"]) for line in lines] == [
        (key_id("sk-a"), "confirmed", "block", "alice", "harvester"),
        (key_id("sk-b"), "dismissed", "dismiss", "alice", "benchmark team"),
    ]
    assert all(isinstance(line["ts"], float) for line in lines)


def write_harvest_events(client, raws: list[str], first: int, count: int) -> None:
    """Harvesting requests' events, as the gateway appends them, 3 s apart per key."""
    pipe = client.pipeline(transaction=False)
    for i in range(first, first + count):
        for n, raw in enumerate(raws):
            fields = event_fields(raw, harvest_request(i), 1.7e9 + i * 3.0 + n * 0.01, completion_tokens=300)
            pipe.xadd(event_stream(shard_of(key_id(raw), STREAMS)), fields)
    pipe.execute()


def test_the_scorer_leaves_a_dismissed_key_alone_while_an_identical_key_is_blocked(own_redis, scorer_factory):
    cfg = config(detection={"streams": STREAMS, "scorer_lease": "1s", "ladder": {"block_after": 12}})
    client = redis.Redis.from_url(own_redis.url)
    scorer_factory(cfg, own_redis.url, name="scorer")
    dismissed, kept = "sk-eval-harness", "sk-harvester-twin"
    write_harvest_events(client, [dismissed, kept], 0, 40)  # 7 evaluations: throttled, not yet blocked
    wait_until(lambda: all(requests_scored(client, raw) == 40 for raw in (dismissed, kept)), timeout=30,
               what="the first events scored")
    for raw in (dismissed, kept):
        assert client.hget(decision_key(key_id(raw)), "action") == b"throttle"
    assert client.hget(decision_key(key_id(dismissed)), "set_by").startswith(b"scorer:")

    async def dismiss():
        async_client = redis.asyncio.Redis.from_url(own_redis.url)
        try:
            settings = load_settings(None, **cfg, redis_url=own_redis.url)
            await act_on_key(async_client, settings, Reviewer("alice", "reviewer"), key_id(dismissed), "dismiss",
                             reason="our nightly eval harness")
        finally:
            await async_client.aclose()

    asyncio.run(dismiss())
    write_harvest_events(client, [dismissed, kept], 40, 140)
    wait_until(lambda: client.hget(decision_key(key_id(kept)), "action") == b"block", timeout=30,
               what="the twin blocked")
    wait_until(lambda: requests_scored(client, dismissed) == 180, timeout=30, what="every event scored")
    assert not client.exists(decision_key(key_id(dismissed)))
    flag = json.loads(client.get(flag_key(key_id(dismissed))))
    assert flag["action"] == "block" and flag["left_alone"] == "dismissed"
    assert json.loads(client.get(flag_key(key_id(kept)))).get("left_alone") is None
    client.close()


def requests_scored(client, raw: str) -> int:
    blob = client.hget(key_state_key(key_id(raw)), "state")
    return KeyState.from_bytes(blob).window.requests_seen if blob else 0
