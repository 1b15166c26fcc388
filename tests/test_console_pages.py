"""The console's review pages: the flag queue (sorted, filtered, paged), a key's page (why it
was flagged against the honest range, its activity chart, its prompts shown as text), the
cluster pages, and the reviewer actions posted from them.

One gateway, scorer and Redis for the module: a logprob harvester sends real traffic through
the gateway (with prompts recorded) and the real scorer flags it; more flags and a cluster
are written with the scorer's own writers, so the queue has enough to sort and page.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from html import unescape

import httpx
import pytest
import redis.asyncio as aioredis

from detectors.base import Reason
from detectors.ladder import Change
from detectors.linkage.verdicts import ClusterVerdict
from service.console.sessions import COOKIE, create_session, load_session
from service.records.audit import read_audit
from service.records.clusters import compact_json
from service.records.flags import write_flag
from service.store import CLUSTER_INDEX, cluster_key, key_cluster_key
from tests.conftest import base_config
from tests.support.processes import start_gateway, start_redis, start_scorer, wait_until
from tests.support.traffic import harvest_request, key_id, send

HARVESTER = "sk-pages-harvester"
HOSTILE = "<script>alert(1)</script> what is a prime?"
LONG_PROMPT = "Explain in detail " + "why the sky is blue and the sea is too, " * 8 + "END-OF-LONG-PROMPT"
REVIEWER_TOKEN, VIEWER_TOKEN = "reviewer-token-for-page-tests", "viewer-token-for-page-tests"
SYNTHETIC = 90
CLUSTER = "lk-00c0ffee00"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_key(n: int) -> str:
    return sha256(f"synthetic-{n}")[:16]


def config(upstream_url: str, recordings: str) -> dict:
    return base_config(
        upstream_url,
        admin={"reviewers": [{"name": "alice", "role": "reviewer", "token_sha256": sha256(REVIEWER_TOKEN)},
                             {"name": "victor", "role": "viewer", "token_sha256": sha256(VIEWER_TOKEN)}]},
        # No linkage passes: a pass replaces the cluster index, and the test's cluster is written by hand.
        detection={"streams": 2, "scorer_lease": "1s", "linkage": {"enabled": False}},
        recording={"enabled": True, "directory": recordings, "bodies": "full"},
    )


@dataclass
class Console:
    url: str
    redis_url: str
    base_url: str
    sessions: dict[str, tuple[str, str]]  # name -> (cookie, csrf token)

    def client(self, name: str | None) -> httpx.Client:
        cookies = {COOKIE: self.sessions[name][0]} if name else {}
        return httpx.Client(base_url=self.url, cookies=cookies, follow_redirects=False, timeout=10)

    def csrf(self, name: str) -> str:
        return self.sessions[name][1]

    def run(self, coroutine_function, *args):
        async def with_client():
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                return await coroutine_function(client, *args)
            finally:
                await client.aclose()

        return asyncio.run(with_client())


def harvester_traffic() -> list[dict]:
    bodies = [harvest_request(i) for i in range(40)]
    bodies[-2]["messages"][0]["content"] = HOSTILE  # among the last: the newest 10 prompts are kept
    bodies[-1]["messages"][0]["content"] = LONG_PROMPT
    return bodies


async def seed_flags_and_cluster(client) -> None:
    """Flags as the scorer writes them: two detectors, three actions, spread over two days."""
    now = time.time()
    for n in range(SYNTHETIC):
        detector = "iforest" if n % 3 == 0 else "rules"
        reason = "unusual_template_diversity" if detector == "iforest" else ("reasoning_trace_harvest" if n % 2
                                                                              else "broad_capability_harvest")
        action = ("flag", "throttle", "block")[n % 3 if n % 3 else 0] if detector == "rules" else "flag"
        change = Change(synthetic_key(n), action, 0.5 + n / 200, detector,
                        ({"name": reason, "feature": "template_diversity", "value": 0.9, "benign_range": None,
                          "detail": "synthetic"},), now - n * 3600, 40 + n, True, 3600.0)
        await write_flag(client, change, 100_000)
    members = (synthetic_key(1), synthetic_key(2), synthetic_key(4))
    cluster = ClusterVerdict(
        CLUSTER, members, 0.93, True, {"requests_24h": 1234.0}, {"template": 3}, (),
        (Reason("linked_keys", "cluster_size", 3.0, (1.0, 2.0), f"cluster {CLUSTER}: 3 keys joined by 3 edges"),),
        {},
    )
    await client.set(cluster_key(CLUSTER), compact_json({**cluster.as_dict(), "seen_at": now}))
    for member in members:
        await client.set(key_cluster_key(member), CLUSTER)
    await client.zadd(CLUSTER_INDEX, {CLUSTER: 0.93})


async def sessions_for(client) -> dict[str, tuple[str, str]]:
    sessions = {}
    for name, role in (("alice", "reviewer"), ("victor", "viewer")):
        cookie = await create_session(client, name=name, role=role, ttl_seconds=3600)
        sessions[name] = (cookie, (await load_session(client, cookie))["csrf"])
    return sessions


@pytest.fixture(scope="module")
def console(upstream, tmp_path_factory):
    server = start_redis()
    cfg = config(upstream.base_url, str(tmp_path_factory.mktemp("recordings")))
    gateway = start_gateway(cfg, redis_url=server.url)
    scorer = start_scorer(cfg, server.url, name="pages-scorer")
    try:
        asyncio.run(send(gateway.base_url, HARVESTER, harvester_traffic()))
        bearer = {"authorization": f"Bearer {REVIEWER_TOKEN}"}

        def counted() -> bool:
            return (httpx.get(f"{gateway.url}/admin/api/keys/{key_id(HARVESTER)}", headers=bearer,
                              timeout=5).json()["window"] or {}).get("requests_seen") == 40

        wait_until(counted, timeout=30, what="the harvester's requests scored")
        console = Console(gateway.url, server.url, gateway.base_url, {})
        console.run(seed_flags_and_cluster)
        console.sessions = console.run(sessions_for)
        yield console
    finally:
        scorer.stop()
        gateway.stop()
        server.stop()


def queue_keys(page: str) -> list[str]:
    return re.findall(r"href=\"/admin/keys/([0-9a-f]{16})\"", page)


def test_signed_out_the_queue_redirects_to_sign_in(console):
    response = console.client(None).get("/admin?sort=recent")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=%2Fadmin%3Fsort%3Drecent"


def test_the_queue_shows_the_harvester_the_scorer_flagged_with_its_reason(console):
    response = console.client("victor").get("/admin", params={"sort": "recent"})
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    row = re.search(rf"<tr class=\"row-\w+\">\s*<td><a class=\"key-link\" href=\"/admin/keys/{key_id(HARVESTER)}\""
                    r".*?</tr>", response.text, re.DOTALL)
    assert row, "the harvester is in the queue"
    assert "synthetic_task_generation" in row.group() and "rules" in row.group()


def test_the_queue_sorts_by_score_and_pages_fifty_at_a_time(console):
    viewer = console.client("victor")
    first = viewer.get("/admin", params={"detector": "rules"}).text
    second = viewer.get("/admin", params={"detector": "rules", "page": 2}).text
    rules_keys = [synthetic_key(n) for n in range(SYNTHETIC) if n % 3] + [key_id(HARVESTER)]
    assert len(queue_keys(first)) == 50 and "page 1 of 2" in first
    assert sorted(queue_keys(first) + queue_keys(second)) == sorted(rules_keys)
    scores = [float(s) for s in re.findall(r"<td class=\"num\">(\d\.\d\d)</td>", first)]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    assert 'rel="next" href="/admin?detector=rules&amp;page=2"' in first


def test_the_queue_filters_by_action_detector_reason_cluster_and_time(console):
    viewer = console.client("victor")

    def keys(**params) -> set[str]:
        return set(queue_keys(viewer.get("/admin", params=params).text))

    blocked = {synthetic_key(n) for n in range(SYNTHETIC) if n % 3 == 2}
    assert keys(action="block") == blocked
    assert keys(detector="iforest") == {synthetic_key(n) for n in range(SYNTHETIC) if n % 3 == 0}
    assert keys(reason="reasoning_trace_harvest", action="block") == {k for n, k in
                                                                      ((n, synthetic_key(n)) for n in range(SYNTHETIC))
                                                                      if n % 3 == 2 and n % 2}
    assert keys(cluster=CLUSTER) == set()  # the scorer's flags name a cluster only for linkage flags
    recent = keys(since="330m")
    assert {synthetic_key(n) for n in range(6)} <= recent and synthetic_key(6) not in recent
    assert keys(until="2000-01-01") == set()


def test_the_key_page_explains_the_flag_against_the_honest_range(console):
    page = console.client("victor").get(f"/admin/keys/{key_id(HARVESTER)}").text
    reasons = re.search(r"<table class=\"data\" id=\"reasons\">.*?</table>", page, re.DOTALL).group()
    assert "synthetic_task_generation" in reasons and "invented_tasks" in reasons
    row = re.search(r"<tr class=\"outside\"><td><code>task_generation_share</code></td><td class=\"num\">[0-9.]+</td>\s*"
                    r"<td class=\"num nowrap\">([^<]+)</td>", page)
    assert row, "task_generation_share is shown outside its honest range"
    low, high = (float(part) for part in row.group(1).split(" – "))
    assert low <= high < 1.0
    assert "<span class=\"badge badge-throttle\">throttle</span>" in page or "badge-flag" in page


def test_the_key_page_charts_every_request_the_scorer_counted(console):
    page = console.client("victor").get(f"/admin/keys/{key_id(HARVESTER)}").text
    chart = re.search(r"<svg id='activity-chart'.*?</svg>", page, re.DOTALL).group()
    requests = [int(n.replace(",", "")) for n in re.findall(r"UTC: ([\d,]+) requests</title>", chart)]
    tokens = [int(n.replace(",", "")) for n in re.findall(r"UTC: ([\d,]+) tokens</title>", chart)]
    assert sum(requests) == 40 and sum(tokens) > 40


def test_a_prompt_holding_a_script_tag_is_shown_as_text(console):
    page = console.client("victor").get(f"/admin/keys/{key_id(HARVESTER)}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; what is a prime?" in page
    assert "<script>alert(1)" not in page


def test_revealing_full_prompts_is_a_reviewer_action_that_is_audited(console):
    key = key_id(HARVESTER)
    shown = console.client("alice").get(f"/admin/keys/{key}").text
    assert "END-OF-LONG-PROMPT" not in shown and 'id="form-reveal"' in shown
    assert 'id="form-reveal"' not in console.client("victor").get(f"/admin/keys/{key}").text
    refused = console.client("victor").post(f"/admin/keys/{key}/reveal", data={"csrf_token": console.csrf("victor")})
    assert refused.status_code == 403 and "END-OF-LONG-PROMPT" not in refused.text
    revealed = console.client("alice").post(f"/admin/keys/{key}/reveal", data={"csrf_token": console.csrf("alice")})
    assert revealed.status_code == 200 and "END-OF-LONG-PROMPT" in revealed.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in revealed.text
    reveals = [e for e in console.run(read_audit, ) if e["action"] == "reveal_prompts" and e["target"] == key]
    assert [(e["actor"], e["target"]) for e in reveals] == [("alice", key)]


def test_a_viewer_sees_no_action_forms_and_its_posts_are_refused(console):
    key = synthetic_key(10)
    page = console.client("victor").get(f"/admin/keys/{key}").text
    assert "form-block" not in page and "/actions" not in page
    response = console.client("victor").post(f"/admin/keys/{key}/actions", data={
        "csrf_token": console.csrf("victor"), "action": "block", "reason": "viewer tries"})
    assert response.status_code == 403
    assert "block" not in console.client("victor").get(f"/admin/keys/{key}").text.split('id="decision"')[1][:80]


def test_an_action_without_the_csrf_token_is_refused(console):
    key = synthetic_key(11)
    response = console.client("alice").post(f"/admin/keys/{key}/actions",
                                            data={"action": "block", "reason": "no token"})
    assert response.status_code == 403
    forged = console.client("alice").post(f"/admin/keys/{key}/actions",
                                          data={"action": "block", "reason": "wrong", "csrf_token": "x" * 43})
    assert forged.status_code == 403
    assert not [e for e in console.run(read_audit) if e["target"] == key and e["action"] == "block"]


def test_blocking_from_the_key_page_is_enforced_and_audited_once(console):
    key = key_id(HARVESTER)
    alice = console.client("alice")
    response = alice.post(f"/admin/keys/{key}/actions", data={
        "csrf_token": console.csrf("alice"), "action": "block", "reason": "harvests soft labels", "expires_in": "24h"})
    assert response.status_code == 303 and response.headers["location"] == f"/admin/keys/{key}?done=block"
    page = alice.get(response.headers["location"]).text
    assert 'id="message"' in page and "badge-block" in page and "harvests soft labels" in page
    refused = httpx.post(f"{console.base_url}/chat/completions", json=harvest_request(1),
                         headers={"authorization": f"Bearer {HARVESTER}"}, timeout=10)
    assert refused.status_code == 403
    blocks = [e for e in console.run(read_audit) if e["target"] == key and e["action"] == "block"]
    assert [(e["actor"], e["reason"]) for e in blocks] == [("alice", "harvests soft labels")]
    history = re.search(r"<table class=\"data\" id=\"history\">.*?</table>", page, re.DOTALL).group()
    assert "harvests soft labels" in history and "alice" in history


def test_an_invalid_action_is_explained_on_the_page_and_changes_nothing(console):
    key = synthetic_key(12)
    response = console.client("alice").post(f"/admin/keys/{key}/actions", data={
        "csrf_token": console.csrf("alice"), "action": "throttle", "tier": "no-such-tier", "reason": "r"})
    assert response.status_code == 400
    assert "Unknown tier" in unescape(re.search(r"id=\"error\"[^>]*>(.*?)</p>", response.text, re.DOTALL).group(1))
    assert not [e for e in console.run(read_audit) if e["target"] == key]


def test_the_cluster_pages_list_members_and_act_on_all_of_them(console):
    listing = console.client("victor").get("/admin/clusters").text
    assert f'href="/admin/clusters/{CLUSTER}"' in listing
    page = console.client("victor").get(f"/admin/clusters/{CLUSTER}").text
    members = (synthetic_key(1), synthetic_key(2), synthetic_key(4))
    assert all(f'href="/admin/keys/{member}"' in page for member in members)
    assert "1,234" in page or "1234" in page
    assert "form-throttle" not in page
    response = console.client("alice").post(f"/admin/clusters/{CLUSTER}/actions", data={
        "csrf_token": console.csrf("alice"), "action": "throttle", "tier": "throttled", "reason": "one operator"})
    assert response.status_code == 303
    page = console.client("alice").get(response.headers["location"]).text
    assert page.count("badge-throttle") >= 3 and "one operator" in page
    for member in members:
        key_page = console.client("victor").get(f"/admin/keys/{member}").text
        assert "badge-throttle" in key_page.split('id="decision"')[1][:120]
        assert f'href="/admin/clusters/{CLUSTER}"' in key_page


def test_a_malformed_key_id_is_not_found(console):
    assert console.client("victor").get("/admin/keys/not-a-key").status_code == 404
