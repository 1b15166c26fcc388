"""Renders an evaluation page (`distillguard evaluate --html`) to a PNG with Debian's chromium.

Uses Playwright's Python package with the system browser (never `playwright install`), with
networking features off: the page is self-contained and must render without any.

    python scripts/screenshot_report.py /tmp/report.html docs/images/evaluation-report.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]


def screenshot(page_path: Path, out: Path, width: int = 1080, scale: float = 1.0, executable: str = CHROMIUM) -> int:
    """Writes the whole page as a PNG (`scale` < 1 keeps the file small); returns its size in bytes."""
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800}, device_scale_factor=scale)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the HTML written by `distillguard evaluate --html`")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/images/evaluation-report.png"))
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--scale", type=float, default=0.8, help="device pixels per CSS pixel (default: 0.8)")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args()
    if not args.page.exists():
        sys.exit(f"{args.page}: no such file")
    size = screenshot(args.page, args.out, args.width, args.scale, args.chromium)
    print(f"wrote {args.out} ({size / 1024:,.0f} KB)")


if __name__ == "__main__":
    main()
