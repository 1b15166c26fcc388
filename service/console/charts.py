"""The key page's chart of requests and tokens over time, as inline SVG drawn on the server.

Two bar panels sharing one time axis, bucketed so at most ~120 bars cover the key's activity
in the last day. No chart library and no script: the console's CSP allows neither inline
script nor styles, and a bar chart is a few rectangles. Colours come from console.css
classes; every label is a number or a time, and the SVG is built with escaping anyway.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape

from ..scoring.activity import Minute

BUCKET_MINUTES = (1, 5, 10, 15, 30, 60)
MAX_BARS = 120
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, GAP, AXIS = 860, 110, 64, 12, 18, 34, 22


def bucket_minutes(first: float, now: float) -> int:
    span_minutes = max((now - first) / 60, 1)
    for size in BUCKET_MINUTES:
        if span_minutes / size <= MAX_BARS:
            return size
    return BUCKET_MINUTES[-1] * 2


def buckets(minutes: list[Minute], now: float) -> tuple[float, int, list[tuple[int, int]]]:
    """(start of the first bucket, bucket length in minutes, [(requests, tokens)] per bucket)."""
    size = bucket_minutes(minutes[0].start, now)
    step = size * 60
    start = minutes[0].start // step * step
    count = int((now - start) // step) + 1
    series = [[0, 0] for _ in range(count)]
    for minute in minutes:
        index = min(int((minute.start - start) // step), count - 1)
        series[index][0] += minute.requests
        series[index][1] += minute.tokens
    return start, size, [(requests, tokens) for requests, tokens in series]


def _number(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:,.0f}"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def activity_chart(minutes: list[Minute], now: float | None = None) -> str:
    """The SVG markup; a short note instead when the key has no activity in the last day."""
    if not minutes:
        return "<p class='muted'>No requests counted in the last 24 hours.</p>"
    now = time.time() if now is None else now
    start, size, series = buckets(minutes, max(now, minutes[-1].start))
    plot_width = WIDTH - LEFT - RIGHT
    bar_width = plot_width / len(series)
    height = TOP + 2 * PANEL_HEIGHT + GAP + AXIS
    parts = [(f"<svg id='activity-chart' class='chart' viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' "
              f"height='{height}' role='img' aria-label='requests and tokens per {size} minute(s), UTC'>")]
    for panel, (label, css) in enumerate((("requests", "bar-requests"), ("tokens", "bar-tokens"))):
        top = TOP + panel * (PANEL_HEIGHT + GAP)
        peak = max(values[panel] for values in series) or 1
        parts.append(f"<text x='{LEFT - 6}' y='{top + 4}' text-anchor='end'>{escape(_number(peak))}</text>")
        parts.append(f"<text x='{LEFT - 6}' y='{top + PANEL_HEIGHT}' text-anchor='end'>0</text>")
        parts.append(f"<text x='{LEFT}' y='{top - 5}' class='chart-title'>{escape(label)} per "
                     f"{size} min</text>")
        parts.append(f"<line class='axis' x1='{LEFT}' y1='{top + PANEL_HEIGHT}' x2='{WIDTH - RIGHT}' "
                     f"y2='{top + PANEL_HEIGHT}'/>")
        for index, values in enumerate(series):
            if not values[panel]:
                continue
            bar_height = max(values[panel] / peak * PANEL_HEIGHT, 1.0)
            x = LEFT + index * bar_width
            parts.append(f"<rect class='{css}' x='{x:.1f}' y='{top + PANEL_HEIGHT - bar_height:.1f}' "
                         f"width='{max(bar_width - 1, 1):.1f}' height='{bar_height:.1f}'>"
                         f"<title>{escape(_clock(start + index * size * 60))} UTC: {values[panel]:,} {label}"
                         f"</title></rect>")
    axis_y = TOP + 2 * PANEL_HEIGHT + GAP + AXIS - 4
    ticks = min(6, len(series) - 1)
    for index in sorted({round(tick * (len(series) - 1) / max(ticks, 1)) for tick in range(ticks + 1)}):
        x = LEFT + index * bar_width
        parts.append(f"<text x='{x:.1f}' y='{axis_y}' text-anchor='middle'>"
                     f"{escape(_clock(start + index * size * 60))}</text>")
    parts.append("</svg>")
    return "".join(parts)
