"""The console end to end in headless Chromium: real harvesting traffic from the `openai`
client gets a key flagged by the real scorer; a reviewer signs in, finds it in the queue,
opens it and blocks it; the same client then gets 403 and the block is in the audit trail
once. A viewer sees no action forms and a forced POST is refused, as is a POST without the
CSRF token. A prompt holding a script tag is shown as text and runs nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.conftest import base_config
from tests.support.processes import start_gateway, start_redis, start_scorer, wait_until
from tests.support.traffic import harvest_request, key_id

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]
HARVESTER = "sk-browser-harvester"
HOSTILE = "<script>alert(1)</script> describe photosynthesis"
REVIEWER_TOKEN, VIEWER_TOKEN = "browser-reviewer-token", "browser-viewer-token"


def ensure_browser() -> None:
    """Debian's chromium and Playwright's Python package, installed when missing (never
    `playwright install`: the system browser is the one used)."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0:
            pytest.fail("chromium is missing and the tests are not root: apt-get install chromium")
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    try:
        import playwright  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], check=True)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def harvest(client: openai.OpenAI, count: int) -> None:
    """New tasks invented around ever-new seeds: what the evidence score names synthetic_task_generation."""
    for i in range(count):
        prompt = HOSTILE if i == count - 1 else harvest_request(i)["messages"][0]["content"]
        client.chat.completions.create(model="sim", messages=[{"role": "user", "content": prompt}],
                                       logprobs=True, top_logprobs=10, max_tokens=256)


@pytest.fixture(scope="module")
def world(upstream, tmp_path_factory):
    ensure_browser()
    server = start_redis()
    cfg = base_config(
        upstream.base_url,
        admin={"reviewers": [{"name": "rita", "role": "reviewer", "token_sha256": sha256(REVIEWER_TOKEN)},
                             {"name": "vic", "role": "viewer", "token_sha256": sha256(VIEWER_TOKEN)}]},
        detection={"streams": 2, "scorer_lease": "1s"},
        recording={"enabled": True, "directory": str(tmp_path_factory.mktemp("recordings")), "bodies": "full"},
    )
    gateway = start_gateway(cfg, redis_url=server.url)
    scorer = start_scorer(cfg, server.url, name="browser-scorer")
    try:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=HARVESTER, max_retries=0)
        harvest(client, 40)
        bearer = {"authorization": f"Bearer {REVIEWER_TOKEN}"}
        wait_until(lambda: httpx.get(f"{gateway.url}/admin/api/keys/{key_id(HARVESTER)}", headers=bearer,
                                     timeout=5).json()["flag"], timeout=30, what="the harvester flagged")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                yield gateway, client, browser
            finally:
                browser.close()
    finally:
        scorer.stop()
        gateway.stop()
        server.stop()


def signed_in(browser, gateway, token: str):
    """A new browser context signed in through the sign-in form; (context, page, dialogs, requests)."""
    context = browser.new_context()
    page = context.new_page()
    dialogs, requests = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{gateway.url}/admin")
    assert "/admin/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway.url}/admin")
    return context, page, dialogs, requests


def test_a_reviewer_finds_the_flagged_key_blocks_it_and_the_block_is_enforced_and_audited_once(world):
    gateway, client, browser = world
    key = key_id(HARVESTER)
    context, page, dialogs, requests = signed_in(browser, gateway, REVIEWER_TOKEN)
    try:
        row = page.locator(f"#queue tr:has(a[href='/admin/keys/{key}'])")
        assert "synthetic_task_generation" in row.inner_text()
        row.locator("a.key-link").click()
        page.wait_for_url(f"{gateway.url}/admin/keys/{key}")
        assert "synthetic_task_generation" in page.locator("#reasons").inner_text()
        assert page.locator("svg#activity-chart rect").count() >= 2
        assert HOSTILE in page.locator("#samples").inner_text()  # shown as text ...
        assert dialogs == []  # ... and nothing ran
        page.fill("#form-block input[name=reason]", "harvests soft labels over many prompts")
        page.select_option("#form-block select[name=expires_in]", "7d")
        page.click("#form-block button[type=submit]")
        page.wait_for_url(f"{gateway.url}/admin/keys/{key}?done=block")
        assert "Blocked" in page.locator("#message").inner_text()
        assert "block" in page.locator("#decision").inner_text()

        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "one more"}],
                                           max_tokens=1)
        assert refused.value.status_code == 403

        page.goto(f"{gateway.url}/admin/audit?target={key}")
        blocks = page.locator("table.audit tbody tr:has(td.action-block)")
        assert blocks.count() == 1
        assert "rita" in blocks.inner_text() and "harvests soft labels" in blocks.inner_text()
        assert all(url.startswith(gateway.url) for url in requests), "the console asked another origin"
    finally:
        context.close()


def test_a_viewer_sees_no_action_forms_and_a_forced_post_is_refused(world):
    gateway, _, browser = world
    key = key_id(HARVESTER)
    context, page, _, _ = signed_in(browser, gateway, VIEWER_TOKEN)
    try:
        page.goto(f"{gateway.url}/admin/keys/{key}")
        assert page.locator("#key-id").inner_text() == key
        assert page.locator("form[action$='/actions']").count() == 0
        assert page.locator("#form-reveal").count() == 0
        csrf = page.locator("form.signout input[name=csrf_token]").get_attribute("value")
        forced = context.request.post(f"{gateway.url}/admin/keys/{key}/actions", max_redirects=0,
                                      form={"csrf_token": csrf, "action": "unblock", "reason": "viewer tries"})
        assert forced.status == 403
    finally:
        context.close()


def test_an_action_without_the_csrf_token_is_refused(world):
    gateway, _, browser = world
    key = key_id(HARVESTER)
    context, page, _, _ = signed_in(browser, gateway, REVIEWER_TOKEN)
    try:
        before = page.goto(f"{gateway.url}/admin/keys/{key}") and page.locator("#decision").inner_text()
        refused = context.request.post(f"{gateway.url}/admin/keys/{key}/actions", max_redirects=0,
                                       form={"action": "unblock", "reason": "no token"})
        assert refused.status == 403
        page.reload()
        assert page.locator("#decision").inner_text() == before
    finally:
        context.close()
