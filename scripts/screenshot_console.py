"""Screenshots of the review console in a realistic state, for docs/review.md.

Starts Redis, the upstream simulator, a gateway (recording prompts) and a scorer on loopback,
sends honest chat traffic and a few logprob harvesters through the gateway for a minute or
two, lets a reviewer act on two of the flagged keys, then photographs the flag queue and the
busiest harvester's key page with Debian's chromium (never `playwright install`).

    python scripts/screenshot_console.py            # docs/images/console-queue.png, console-key.png
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.screenshot_report import CHROMIUM, LAUNCH_ARGS
from tests.conftest import base_config
from tests.support.processes import (
    start_gateway,
    start_mock_upstream,
    start_redis,
    start_scorer,
    wait_until,
)
from tests.support.traffic import chat_request, harvest_request, key_id, send

TOKEN = "screenshot-reviewer-token"
HARVESTERS = {"sk-demo-harvester-a": 26, "sk-demo-harvester-b": 14, "sk-demo-harvester-c": 9,
              "sk-demo-harvester-d": 7}
CHATTERS = [f"sk-demo-chat-{n}" for n in range(6)]


def world_config(upstream_url: str, recordings: str) -> dict:
    return base_config(
        upstream_url,
        admin={"reviewers": [{"name": "alice", "role": "reviewer",
                              "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]},
        detection={"streams": 2, "scorer_lease": "1s"},
        recording={"enabled": True, "directory": recordings, "bodies": "full"},
    )


async def traffic(base_url: str, rounds: int, pause: float) -> None:
    """Rounds of requests `pause` seconds apart, so the activity chart has some shape."""
    sent = dict.fromkeys([*HARVESTERS, *CHATTERS], 0)
    for round_ in range(rounds):
        batches = []
        for raw, per_round in HARVESTERS.items():
            count = per_round + (round_ * 7 + len(raw)) % 9
            batches.append(send(base_url, raw, [harvest_request(sent[raw] + i) for i in range(count)]))
            sent[raw] += count
        for raw in CHATTERS:
            batches.append(send(base_url, raw, [chat_request(sent[raw] + i) for i in range(3)]))
            sent[raw] += 3
        await asyncio.gather(*batches)
        await asyncio.sleep(pause)


def act(page, url: str, form: str, **fields) -> None:
    page.goto(url)
    for name, value in fields.items():
        selector = f"{form} [name={name}]"
        if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    page.click(f"{form} button[type=submit]")
    page.wait_for_load_state()


def photograph(gateway_url: str, out: Path, width: int, scale: float) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=scale)
            page.goto(f"{gateway_url}/admin")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{gateway_url}/admin")
            act(page, f"{gateway_url}/admin/keys/{key_id('sk-demo-harvester-b')}", "#form-block",
                reason="soft labels for thousands of unrelated prompts", expires_in="30d")
            act(page, f"{gateway_url}/admin/keys/{key_id('sk-demo-harvester-d')}", "#form-note",
                note="owner asked to explain the logprob use; waiting for an answer")
            page.goto(f"{gateway_url}/admin")
            page.screenshot(path=str(out / "console-queue.png"), full_page=True)
            page.goto(f"{gateway_url}/admin/keys/{key_id('sk-demo-harvester-a')}")
            page.screenshot(path=str(out / "console-key.png"), full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pause", type=float, default=15.0, help="seconds between traffic rounds")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--scale", type=float, default=0.8)
    args = parser.parse_args()
    server, upstream = start_redis(), start_mock_upstream()
    cfg = world_config(upstream.base_url, tempfile.mkdtemp(prefix="dg-console-shots-"))
    gateway = start_gateway(cfg, redis_url=server.url)
    scorer = start_scorer(cfg, server.url, name="screenshot-scorer")
    try:
        started = time.monotonic()
        asyncio.run(traffic(gateway.base_url, args.rounds, args.pause))
        import httpx

        bearer = {"authorization": f"Bearer {TOKEN}"}
        wait_until(lambda: len(httpx.get(f"{gateway.url}/admin/api/flags", headers=bearer, timeout=5)
                               .json()["flags"]) >= len(HARVESTERS), timeout=60, what="every harvester flagged")
        time.sleep(3)  # the scorer's last commit writes the activity series
        photograph(gateway.url, args.out, args.width, args.scale)
        print(f"wrote {args.out / 'console-queue.png'} and {args.out / 'console-key.png'} "
              f"({time.monotonic() - started:.0f} s)")
    finally:
        scorer.stop()
        gateway.stop()
        upstream.stop()
        server.stop()


if __name__ == "__main__":
    main()
