"""How the review pages write numbers, times and prompts, and their fixed messages."""

from __future__ import annotations

from datetime import UTC, datetime

SHORT_PROMPT_CHARS = 160
# The expiry choices of the block and throttle forms: (value for service/decisions.py, label).
EXPIRIES = (("24h", "in 24 hours"), ("7d", "in 7 days"), ("30d", "in 30 days"), ("", "never"), ("1h", "in 1 hour"))
# What the page says after a redirect; the query string only picks one, so no text is echoed.
DONE_MESSAGES = {
    "block": "Blocked: the key now gets 403, and the verdict is stored as confirmed.",
    "throttle": "Throttled: the key is held to the chosen tier, and the verdict is stored as confirmed.",
    "dismiss": "Dismissed as a false positive: automatic actions leave the key alone for the quiet period.",
    "note": "Note added.",
    "unblock": "Block or throttle lifted.",
}


class Formats:
    """Passed to the templates as `fmt`."""

    @staticmethod
    def utc(ts) -> str:
        if ts in (None, "", 0):
            return "–"
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")

    @staticmethod
    def num(value) -> str:
        if value is None or value == "":
            return "–"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if float(value).is_integer() and abs(value) < 1e9:
            return f"{int(value):,}"
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"

    @classmethod
    def range(cls, honest) -> str:
        if not honest:
            return "–"
        low, high = (honest.low, honest.high) if hasattr(honest, "low") else honest
        return f"{cls.num(low)} – {cls.num(high)}"

    @staticmethod
    def shorten(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= SHORT_PROMPT_CHARS else text[: SHORT_PROMPT_CHARS - 1] + "…"
