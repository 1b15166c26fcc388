"""The audit trail: one Redis stream, entries read back newest first and filtered, trimmed by
age and never by count, written once per automatic decision, exported as JSON Lines, and
shown escaped in the console. Real Redis (a database of its own, emptied per test)."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis
import redis.asyncio as aioredis

from detectors.ladder import Change
from detectors.pipeline import Evaluation
from service import metrics
from service.cli import main
from service.decisions import Policy
from service.records.audit import append_audit, audit_quietly, parse_time, read_audit
from service.records.decisions import get_decision
from service.scoring.actions import apply_evaluations
from service.store import AUDIT_STREAM, audit_target_key
from tests.test_console_auth import ALICE, console, form_csrf, settings_for, sign_in

KEY = "0123456789abcdef"
OTHER = "fedcba9876543210"
DAY = 86400.0


@pytest.fixture
def audit_url(redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
async def client(audit_url):
    client = aioredis.Redis.from_url(audit_url)
    yield client
    await client.aclose()


def add_at(sync_client, ts: float, seq: int = 0, **fields) -> str:
    """An entry written as append_audit writes it, but at a chosen past time."""
    entry = {"ts": repr(ts), "actor": "alice", "action": "note", "target": "", "reason": "", "details": "{}", **fields}
    return sync_client.xadd(AUDIT_STREAM, entry, id=f"{int(ts * 1000)}-{seq}").decode()


async def test_an_entry_is_appended_once_and_read_back_with_its_fields(client):
    entry_id = await append_audit(client, actor="alice", action="block", target=KEY, reason="harvesting",
                                  details={"expires_in": "7d"})
    entries = await read_audit(client)
    assert entries == [{"id": entry_id, "ts": entries[0]["ts"], "actor": "alice", "action": "block", "target": KEY,
                        "reason": "harvesting", "details": {"expires_in": "7d"}}]
    assert abs(entries[0]["ts"] - time.time()) < 60


async def test_entries_come_newest_first_filtered_by_target_actor_and_time(client):
    first = await append_audit(client, actor="scorer", action="flag", target=KEY)
    await append_audit(client, actor="alice", action="note", target=OTHER)
    third = await append_audit(client, actor="alice", action="block", target=KEY)
    assert [entry["action"] for entry in await read_audit(client)] == ["block", "note", "flag"]
    assert [entry["id"] for entry in await read_audit(client, target=KEY)] == [third, first]
    assert [entry["action"] for entry in await read_audit(client, actor="alice")] == ["block", "note"]
    assert [entry["action"] for entry in await read_audit(client, target=KEY, actor="scorer")] == ["flag"]
    assert await read_audit(client, since=time.time() + 60) == []
    assert await read_audit(client, until=time.time() - 60) == []
    assert [entry["action"] for entry in await read_audit(client, limit=1, before=third)] == ["note"]


async def test_paging_with_before_walks_the_whole_trail_once(client):
    ids = [await append_audit(client, actor="alice", action="note", target=KEY, reason=str(n)) for n in range(25)]
    seen, before = [], None
    while True:
        page = await read_audit(client, limit=10, before=before)
        if not page:
            break
        seen += [entry["id"] for entry in page]
        before = page[-1]["id"]
    assert seen == ids[::-1]


async def test_retention_trims_by_age_never_by_count(client, audit_url):
    sync_client = redis.Redis.from_url(audit_url)
    now = time.time()
    for n in range(1000):  # older than the 30-day retention
        add_at(sync_client, now - 40 * DAY + n, action="old")
    pipe = sync_client.pipeline(transaction=False)
    for _ in range(10_000):  # recent, and far more than any count limit would keep
        pipe.xadd(AUDIT_STREAM, {"ts": repr(now), "actor": "scorer", "action": "flag", "target": KEY,
                                 "reason": "", "details": "{}"})
    pipe.execute()
    await append_audit(client, actor="alice", action="block", target=KEY, retention_seconds=30 * DAY)
    assert await client.xlen(AUDIT_STREAM) == 10_001
    oldest = (await client.xrange(AUDIT_STREAM, count=1))[0]
    assert int(oldest[0].decode().split("-")[0]) >= (now - 30 * DAY) * 1000
    assert all(entry["action"] != "old" for entry in await read_audit(client, limit=20_000))


async def test_a_targets_history_skips_entries_the_stream_trimmed(client, audit_url):
    sync_client = redis.Redis.from_url(audit_url)
    old = add_at(sync_client, time.time() - 40 * DAY, target=KEY, action="old")
    sync_client.lpush(audit_target_key(KEY), old)
    kept = await append_audit(client, actor="alice", action="block", target=KEY, retention_seconds=30 * DAY)
    assert [entry["id"] for entry in await read_audit(client, target=KEY)] == [kept]
    assert 0 < await client.ttl(audit_target_key(KEY)) <= 30 * DAY


def policy(audit_retention: float | None = None) -> Policy:
    return Policy(tiers=frozenset({"throttled"}), throttle_tier="throttled", audit_retention=audit_retention,
                  quiet_period=7 * DAY)


def change(key_id: str, action: str) -> Evaluation:
    ladder_change = Change(key_id=key_id, action=action, score=0.93, detector="rules",
                           reasons=({"name": "high_uniqueness", "detail": "0.99 > 0.9"},),
                           first_flagged_at=time.time(), requests_before_flag=40, enforce=True, ttl_seconds=3600)
    return Evaluation(key_id=key_id, requests_seen=40, features=[], verdicts=(), change=ladder_change)


async def test_each_automatic_decision_is_audited_exactly_once(client):
    await apply_evaluations(client, [change(KEY, "flag"), change(OTHER, "flag"), change(KEY, "throttle")],
                            flags_kept=100, policy=policy(audit_retention=30 * DAY))
    entries = await read_audit(client, target=KEY)
    assert [(entry["actor"], entry["action"]) for entry in entries] == [("scorer", "throttle"), ("scorer", "flag")]
    assert entries[0]["reason"] == "high_uniqueness"
    assert entries[0]["details"]["detector"] == "rules" and entries[0]["details"]["score"] == 0.93
    assert entries[0]["details"]["enforced"] is True
    assert len(await read_audit(client, target=OTHER)) == 1


async def test_a_failed_audit_write_never_fails_the_scorer(client, caplog):
    await client.set(AUDIT_STREAM, "not a stream")  # every XADD now fails with WRONGTYPE
    before = metrics.AUDIT_ERRORS.labels("scorer")._value.get()
    await apply_evaluations(client, [change(KEY, "throttle")], flags_kept=100, policy=policy())
    assert metrics.AUDIT_ERRORS.labels("scorer")._value.get() == before + 1
    assert (await get_decision(client, KEY)).action == "throttle"  # the decision went on
    assert any("audit entry throttle on " + KEY in record.getMessage() for record in caplog.records)
    assert await audit_quietly(client, "console", actor="alice", action="note") is None


def test_audit_export_writes_json_lines_oldest_first_within_since_and_until(audit_url, tmp_path, capsys):
    sync_client = redis.Redis.from_url(audit_url)
    now = time.time()
    for days_ago in (10, 5, 3, 1):
        add_at(sync_client, now - days_ago * DAY, reason=f"{days_ago}d ago", details=json.dumps({"n": days_ago}))
    out = tmp_path / "audit.jsonl"
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2 * DAY))
    main(["audit", "--redis-url", audit_url, "export", "--since", "7d", "--until", until, "--out", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["reason"] for line in lines] == ["5d ago", "3d ago"]
    assert lines[0]["details"] == {"n": 5} and set(lines[0]) == {"id", "ts", "actor", "action", "target", "reason",
                                                                  "details"}
    main(["audit", "--redis-url", audit_url, "export"])
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_audit_export_reads_the_trail_in_batches(audit_url, tmp_path):
    sync_client = redis.Redis.from_url(audit_url)
    pipe = sync_client.pipeline(transaction=False)
    for n in range(2500):
        pipe.xadd(AUDIT_STREAM, {"ts": repr(time.time()), "actor": "scorer", "action": "flag", "target": KEY,
                                 "reason": str(n), "details": "{}"})
    pipe.execute()
    out = tmp_path / "all.jsonl"
    main(["audit", "--redis-url", audit_url, "export", "--out", str(out)])
    assert [json.loads(line)["reason"] for line in out.read_text().splitlines()] == [str(n) for n in range(2500)]


def test_times_are_iso_or_a_duration_ago():
    assert parse_time("2026-11-01T00:00:00Z") == 1793491200.0
    assert parse_time("7d", now=1_000_000.0) == 1_000_000.0 - 7 * DAY
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last week")


async def test_the_audit_page_shows_entries_escaped_filtered_and_paged(audit_url, client):
    await append_audit(client, actor="scorer", action="flag", target=OTHER)
    for n in range(105):
        await append_audit(client, actor="alice", action="note", target=KEY, reason=f"note {n}")
    await append_audit(client, actor="alice", action="block", target=KEY, reason="<script>alert(1)</script>")
    async with console(settings_for(audit_url)) as browser:
        await sign_in(browser, ALICE)
        page = await browser.get("/admin/audit", params={"target": KEY})
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert OTHER not in page.text
        assert len(re.findall(r"data-entry-id=", page.text)) == 100
        older = re.search(r'href="(/admin/audit\?[^"]+)">Older entries', page.text).group(1).replace("&amp;", "&")
        rest = await browser.get(older)
        assert len(re.findall(r"data-entry-id=", rest.text)) == 6
        assert "note 0<" in rest.text and "Older entries" not in rest.text
        by_actor = await browser.get("/admin/audit", params={"actor": "scorer"})
        assert OTHER in by_actor.text and "note 0<" not in by_actor.text
        bad = await browser.get("/admin/audit", params={"since": "yesterday-ish"})
        assert bad.status_code == 400
        form_csrf(page)  # the sign-out form is on every page


def test_decisions_set_from_the_command_line_are_audited_once(audit_url, monkeypatch):
    monkeypatch.setenv("USER", "oncall")
    main(["keys", "--redis-url", audit_url, "block", KEY, "--reason", "abuse", "--ttl", "1h"])
    main(["keys", "--redis-url", audit_url, "show", KEY])
    main(["keys", "--redis-url", audit_url, "allow", KEY])
    entries = [json.loads(line) for line in _export_lines(audit_url)]
    assert [(entry["actor"], entry["action"], entry["reason"]) for entry in entries] == [
        ("cli:oncall", "block", "abuse"), ("cli:oncall", "unblock", "")]
    decision = entries[0]["details"]["decision"]
    assert decision["expires_at"] - decision["set_at"] == pytest.approx(3600) and entries[0]["target"] == KEY


def _export_lines(audit_url: str) -> list[str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["audit", "--redis-url", audit_url, "export"])
    return out.getvalue().splitlines()
