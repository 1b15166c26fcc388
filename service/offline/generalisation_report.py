"""The generalisation report: per family and condition, the rate with its 95 % bounds and
time to detect; the worst family and draw first, because a detector is as good as the
practice it misses most."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import numpy as np

from .bounds import rate_bounds

ATTACK = "attack"
CONDITION_TITLES = {"full": "with usage", "no_usage": "without usage", "features": "features mode",
                    "features_no_usage": "features, no usage"}


def _cell(outcomes: list[dict]) -> dict:
    """Keys, evaluated keys, flagged keys, the rate over the evaluated ones with its bounds,
    and requests to detect."""
    evaluated = [o for o in outcomes if o["evaluated"]]
    flagged = [o for o in evaluated if o["flagged"]]
    ttd = [o["ttd_requests"] for o in flagged]
    return {
        "keys": len(outcomes), "evaluated": len(evaluated), "flagged": len(flagged),
        "rate": round(len(flagged) / len(evaluated), 4) if evaluated else None,
        "bounds_95": rate_bounds(len(flagged), len(evaluated)),
        "ttd_requests_median": float(statistics.median(ttd)) if ttd else None,
        "ttd_requests_p90": float(np.quantile(ttd, 0.9)) if ttd else None,
    }


def _badness(label: str, rate: float | None) -> float:
    """How bad a rate is for its label: missed harvesters, or flagged honest keys."""
    if rate is None:
        return -1.0
    return 1.0 - rate if label == ATTACK else rate


def family_rows(outcomes: Iterable[dict], conditions: Iterable[str]) -> list[dict]:
    """One row per family: pooled over draws and, per draw, the worst; worst families first."""
    outcomes = list(outcomes)
    families = sorted({(o["family"], o["label"]) for o in outcomes})
    draws = sorted({o["draw"] for o in outcomes})
    rows = []
    for family, label in families:
        row = {"family": family, "label": label, "conditions": {}}
        for condition in conditions:
            mine = [o for o in outcomes if o["family"] == family and o["condition"] == condition]
            cell = _cell(mine)
            per_draw = [(draw, _cell([o for o in mine if o["draw"] == draw])) for draw in draws]
            judged = [(draw, c) for draw, c in per_draw if c["rate"] is not None]
            if judged:
                draw, worst = max(judged, key=lambda item: _badness(label, item[1]["rate"]))
                cell["worst_draw"], cell["worst_draw_rate"] = draw, worst["rate"]
                cell["worst_draw_bounds_95"] = worst["bounds_95"]
            row["conditions"][condition] = cell
        rows.append(row)
    first = next(iter(conditions))
    rows.sort(key=lambda r: (r["label"] != ATTACK, -_badness(r["label"], r["conditions"][first]["rate"]),
                             r["family"]))
    return rows


def worst_cases(outcomes: Iterable[dict], conditions: Iterable[str]) -> dict:
    """Per condition: the worst (family, draw) for harvesters and for honest keys, and the
    pooled recall and false-positive rate, each with its bounds."""
    outcomes = list(outcomes)
    result = {}
    for condition in conditions:
        mine = [o for o in outcomes if o["condition"] == condition]
        entry = {}
        for label, name in ((ATTACK, "attack"), ("benign", "honest")):
            cells = []
            for family, draw in sorted({(o["family"], o["draw"]) for o in mine if o["label"] == label}):
                cell = _cell([o for o in mine if o["family"] == family and o["draw"] == draw])
                if cell["rate"] is not None:
                    cells.append({"family": family, "draw": draw, **cell})
            pooled = _cell([o for o in mine if o["label"] == label])
            worst = max(cells, key=lambda c: (_badness(label, c["rate"]), c["evaluated"])) if cells else None
            entry[name] = {"worst": worst, "pooled": pooled, "families_x_draws": len(cells)}
        result[condition] = entry
    return result


def _rate(cell: dict | None) -> str:
    if not cell or cell["rate"] is None:
        return "-"
    low, high = cell["bounds_95"]
    return f"{cell['rate']:.3f} [{low:.3f}, {high:.3f}]"


def _dash(value) -> str:
    return "-" if value is None else f"{value:g}"


def format_generalisation(result: dict, command: str) -> str:
    """The worst cases, then the per-family table (one rate column per condition)."""
    conditions = result["conditions"]
    held = "held out of fitting" if result["plan"]["hold_out_families"] else "not held out"
    lines = [f"worst case over families and draws ({result['plan']['draws']} draw(s); families {held}):"]
    for condition in conditions:
        entry = result["worst"][condition]
        attack, honest = entry["attack"], entry["honest"]
        lines.append(f"  {CONDITION_TITLES[condition]:<19} lowest recall "
                     + (f"{_rate(attack['worst'])} {attack['worst']['family']} (draw {attack['worst']['draw']})"
                        if attack["worst"] else "-")
                     + "; highest honest FPR "
                     + (f"{_rate(honest['worst'])} {honest['worst']['family']} (draw {honest['worst']['draw']})"
                        if honest["worst"] else "-"))
        lines.append(f"  {'':<19} pooled recall {_rate(attack['pooled'])} over {attack['pooled']['evaluated']} "
                     f"keys; pooled honest FPR {_rate(honest['pooled'])} over {honest['pooled']['evaluated']} keys")
    width = max([28, *(len(row["family"]) for row in result["families"])])
    header = f"{'family':<{width}} {'label':<6} {'eval':>5} {'flag':>5}"
    header += "".join(f" {CONDITION_TITLES[c] + ' (95%)':>26}" for c in conditions)
    header += f" {'worst draw':>10} {'ttd p50':>8} {'p90':>6}"
    lines += ["", "recall (attack) or false-positive rate (honest) over the keys evaluated, worst first:", header]
    for row in result["families"]:
        full = row["conditions"][conditions[0]]
        line = f"{row['family']:<{width}} {row['label']:<6} {full['evaluated']:>5} {full['flagged']:>5}"
        line += "".join(f" {_rate(row['conditions'][c]):>26}" for c in conditions)
        worst = full.get('worst_draw_rate')
        line += (f" {'-' if worst is None else f'{worst:.3f}':>10} {_dash(full['ttd_requests_median']):>8}"
                 f" {_dash(full['ttd_requests_p90']):>6}")
        lines.append(line)
    lines += ["", command,
              f"{result['keys_measured']} key measurements; commit {result['commit']}; took {result['seconds']:.1f} s"]
    return "\n".join(lines)
