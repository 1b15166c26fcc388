"""The report of `evaluate --networks`: per size band, the share of members flagged within
2, 6 and 24 hours of their network's start and over the whole run (the worst draw first);
one-day keys with 20 requests or fewer; every honest look-alike class's flagged keys with
a two-sided 95 % Clopper-Pearson bound (`rate_bounds`).

Within T hours: of the network's founding keys that had sent a request by its start + T,
the share flagged by then (a key that has not yet sent anything cannot be caught). Whole
run: of every member key, founders and replacements, the share flagged by the run's end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .generalisation_report import rate_bounds

WITHIN_HOURS = (2, 6, 24)
ONE_DAY_H, ONE_DAY_REQUESTS, ONE_DAY_FROM_SIZE = 24.0, 20, 50


def _share(flagged: int, keys: int) -> dict:
    return {"flagged": flagged, "keys": keys, "rate": round(flagged / keys, 4) if keys else None,
            "bounds_95": rate_bounds(flagged, keys)}


def member_cell(members: list[dict], end_ts: float) -> dict:
    """Within-T shares over the founders, and the whole-run share over every member."""
    cell = {}
    founders = [m for m in members if m["founder"]]
    for hours in WITHIN_HOURS:
        if any(m["network_start_ts"] + hours * 3600 > end_ts for m in founders):
            cell[f"{hours}h"] = None  # the run ends before this many hours of some network
            continue
        active = [m for m in founders if m["first_ts"] <= m["network_start_ts"] + hours * 3600]
        flagged = [m for m in active if m["flagged_ts"] is not None
                   and m["flagged_ts"] <= m["network_start_ts"] + hours * 3600]
        cell[f"{hours}h"] = _share(len(flagged), len(active))
    cell["run"] = _share(sum(m["flagged_ts"] is not None for m in members), len(members))
    joiners = [m for m in members if not m["founder"]]
    cell["joiners"] = _share(sum(m["flagged_ts"] is not None for m in joiners), len(joiners))
    cell["by_linkage"] = sum(m["by_linkage"] for m in members)
    return cell


def _worst(cells: list[dict], column: str) -> dict | None:
    judged = [(draw, cell[column]) for draw, cell in cells if cell.get(column) and cell[column]["rate"] is not None]
    if not judged:
        return None
    draw, share = min(judged, key=lambda item: (item[1]["rate"], -item[1]["keys"]))
    return {"draw": draw, **share}


def one_day(members: Iterable[dict], end_ts: float) -> list[dict]:
    """Keys that live one day at most, retire before the run ends (so their whole life is
    seen) and send 20 requests or fewer, in networks of 50 or more."""
    return [m for m in members if m["size"] >= ONE_DAY_FROM_SIZE and m["lifetime_h"] <= ONE_DAY_H
            and m["first_ts"] + m["lifetime_h"] * 3600 <= end_ts and m["requests"] <= ONE_DAY_REQUESTS]


def summarise(outcomes: list[dict], networks: list[dict], bands: list[str], draws: int, end_ts: float) -> dict:
    members = [o for o in outcomes if o["role"] == "member"]
    band_rows = []
    for band in bands:
        mine = [m for m in members if m["band"] == band]
        cells = [(draw, member_cell([m for m in mine if m["draw"] == draw], end_ts)) for draw in range(draws)]
        cells = [(draw, cell) for draw, cell in cells if cell["run"]["keys"]]
        columns = [f"{hours}h" for hours in WITHIN_HOURS] + ["run", "joiners"]
        band_rows.append({"band": band, "members": len(mine), "networks": sum(n["band"] == band for n in networks),
                          "worst": {column: _worst(cells, column) for column in columns},
                          "pooled": member_cell(mine, end_ts) if mine else None,
                          "per_draw": dict(cells)})
    short = one_day(members, end_ts)
    short_cells = [(draw, {"run": _share(sum(m["flagged_ts"] is not None for m in short if m["draw"] == draw),
                                         sum(m["draw"] == draw for m in short))}) for draw in range(draws)]
    network_rows = []
    for network in networks:
        mine = [m for m in members if m["draw"] == network["draw"] and m["network"] == network["index"]]
        cell = member_cell(mine, end_ts)
        network_rows.append({**network, "members": len(mine), "run": cell["run"]["rate"],
                             "6h": cell["6h"]["rate"] if cell["6h"] else None})
    return {"bands_report": band_rows,
            "one_day": {"pooled": _share(sum(m["flagged_ts"] is not None for m in short), len(short)),
                        "worst": _worst(short_cells, "run")},
            "lookalikes": _class_rows([o for o in outcomes if o["role"] == "lookalike"], draws),
            "honest": _class_rows([o for o in outcomes if o["role"] == "honest"], draws, pooled_only=True),
            "networks": network_rows}


def _class_rows(outcomes: list[dict], draws: int, pooled_only: bool = False) -> list[dict]:
    """Flagged keys per class over the keys that sent anything, worst draw and the pool."""
    rows = []
    classes = [] if pooled_only else sorted({o["cls"] for o in outcomes})
    for name in [*classes, "all"]:
        mine = [o for o in outcomes if name == "all" or o["cls"] == name]
        per_draw = [sum(o["flagged_ts"] is not None for o in mine if o["draw"] == draw) for draw in range(draws)]
        rows.append({"class": name, **_share(sum(per_draw), len(mine)), "worst_draw_flagged": max(per_draw),
                     "by_linkage": sum(o["by_linkage"] for o in mine),
                     "detectors": dict(Counter(o["detector"] for o in mine if o["detector"])),
                     "judged_5": sum(o["requests"] >= 5 for o in mine)})
    return rows


def _pct(share: dict | None) -> str:
    if not share or share["rate"] is None:
        return "-"
    return f"{share['rate']:.1%} ({share['flagged']}/{share['keys']})"


def format_networks(result: dict, command: str) -> str:
    """Worst case per band first, then one-day keys, look-alikes, networks, and the command."""
    lines = [f"worst draw of {result['plan']['draws']} per network size band (members flagged; within T of the "
             "network's start: of the founding keys active by then):",
             f"{'band':<10} {'nets':>4} {'members':>7} {'within 2 h':>18} {'within 6 h':>18} {'within 24 h':>18} "
             f"{'whole run':>18} {'replacements':>18}"]
    for row in result["bands_report"]:
        worst = row["worst"]
        lines.append(f"{row['band']:<10} {row['networks']:>4} {row['members']:>7} "
                     + " ".join(f"{_pct(worst[c]):>18}" for c in ("2h", "6h", "24h", "run", "joiners")))
    lines += ["", "pooled over draws:"]
    for row in result["bands_report"]:
        pooled = row["pooled"] or {}
        lines.append(f"{row['band']:<10} {row['networks']:>4} {row['members']:>7} "
                     + " ".join(f"{_pct(pooled.get(c)):>18}" for c in ("2h", "6h", "24h", "run", "joiners"))
                     + f"  by linkage {pooled.get('by_linkage', 0)}")
    day = result["one_day"]
    lines += ["", f"one-day keys (whole life in the run) with <= {ONE_DAY_REQUESTS} requests in networks of >= "
              f"{ONE_DAY_FROM_SIZE}: "
              f"pooled {_pct(day['pooled'])}; worst draw {_pct(day['worst'])}", "",
              "honest look-alikes (keys that sent a request; two-sided 95 % Clopper-Pearson bound):",
              f"{'class':<20} {'keys':>6} {'>=5 req':>7} {'flagged':>7} {'rate [95 %]':>26} {'worst draw':>10}  flagged by"]
    for row in [*result["lookalikes"], *[{**r, "class": "other honest"} for r in result["honest"]]]:
        low, high = row["bounds_95"] or (0, 0)
        lines.append(f"{row['class']:<20} {row['keys']:>6} {row['judged_5']:>7} {row['flagged']:>7} "
                     f"{row['rate'] or 0:>8.4f} [{low:.4f}, {high:.4f}] {row['worst_draw_flagged']:>10}  "
                     + ", ".join(f"{name} {count}" for name, count in sorted(row["detectors"].items())))
    lines += ["", "networks (draw, size, share flagged within 6 h / whole run, how it hides):"]
    for network in result["networks"]:
        six = "-" if network["6h"] is None else f"{network['6h']:.0%}"
        lines.append(f"  d{network['draw']} {network['size']:>5} {six:>5} {network['run']:>5.0%}  "
                     f"{'burner; ' if network['burner'] else ''}{network['style']}")
    lines += ["", command, f"{result['requests']:,} requests, {result['keys']:,} keys; commit {result['commit']}; "
              f"took {result['seconds']:.1f} s (draws: {', '.join(f'{s:.0f} s' for s in result['draw_seconds'])})"]
    return "\n".join(lines)
