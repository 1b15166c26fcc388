"""Exact (Clopper-Pearson) bounds on a rate seen as hits of trials: what every evaluation
report states next to a recall or a false-positive rate."""

from __future__ import annotations

from typing import Literal


def rate_bounds(hits: int, trials: int, confidence: float = 0.95,
                sided: Literal["two", "upper"] = "two") -> tuple[float, float] | None:
    """(low, high) of a rate seen as `hits` of `trials`, rounded to 4 places; exact, and never
    narrower than the data allow (0 of 20 still allows up to 0.168 two-sided).

    `sided="upper"` puts all of 1 - `confidence` above, with low 0: how high a false-positive
    rate may be given what was seen, as `distillguard evaluate` states it. None without trials."""
    if trials <= 0:
        return None
    from scipy.stats import beta

    tail = 1.0 - confidence if sided == "upper" else (1.0 - confidence) / 2
    low = 0.0 if hits == 0 or sided == "upper" else float(beta.ppf(tail, hits, trials - hits + 1))
    high = 1.0 if hits >= trials else float(beta.ppf(1.0 - tail, hits + 1, trials - hits))
    return round(low, 4), round(high, 4)
