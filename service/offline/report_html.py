"""The evaluation as one self-contained HTML page: what a security lead looks at first.

Score distributions of honest and attack keys, the recall / false-positive trade-off as
the threshold moves, time to detect per scenario, and the table. The charts are inline SVG
drawn here (three plain charts do not justify a plotting library and its fonts); the page
loads nothing from anywhere and runs no script. Every string from the run is escaped.
"""

from __future__ import annotations

import math
from html import escape

from .evaluation import command_line, goals_by_subject

HONEST, ATTACK_COLOUR, INK, GRID = "#2b6cb0", "#c53030", "#1a202c", "#e2e8f0"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a202c;margin:24px auto;max-width:1040px;
padding:0 16px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}p.lede{color:#4a5568;margin:0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{padding:3px 9px;border-bottom:1px solid #e2e8f0;
text-align:right}th{background:#f7fafc;white-space:nowrap}td:first-child,th:first-child{text-align:left}
.met{color:#276749}.missed{color:#c53030;font-weight:600}.reported{color:#4a5568}.row-attack td:nth-child(2){color:#c53030}
svg{display:block;margin:6px 0}svg text{font:11px system-ui,sans-serif;fill:#1a202c}.grid{display:flex;gap:24px;
flex-wrap:wrap}.note{color:#4a5568;font-size:12.5px;max-width:1000px}code{font-size:12.5px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}dt{color:#4a5568}dd{margin:0}
"""


def render(result: dict) -> str:
    """The page for one `run_evaluation` result (or its JSON)."""
    summary, plan = result["summary"], result["plan"]
    sections = [
        f"<h1>distillguard evaluation</h1><p class='lede'>{_e(_run_line(result))}</p>",
        "<h2>Goals</h2>" + _goals(result["goals"]),
        "<h2>Per-scenario results</h2>" + _table(summary) + f"<p class='note'>{_e(_overall(result))}</p>",
        "<h2>Highest score per key</h2>" + _histogram(result["key_scores"])
        + "<p class='note'>A key's score is the highest any detector gave it at any evaluation: a rule that "
          "fires gives 1, the isolation forest gives 0.5 at its calibrated threshold, linkage gives its member "
          "verdict's score. Count axis is logarithmic.</p>",
        "<h2>Recall against false-positive rate as the threshold moves</h2>"
        + _tradeoff(result["sweep"], summary)
        + "<p class='note'>Each point flags every key whose score reaches a threshold. The shipped detector is "
          "the marked point: it flags on a rule, or on a forest score over 0.5 <em>with</em> content evidence "
          "beyond the honest range (detectors/iforest.py), so it need not lie on the curve.</p>",
        "<h2>Time to detect</h2>" + _time_to_detect(summary)
        + f"<p class='note'>One dot per flagged attack key; bar: median, tick: 90th percentile. "
          f"{_e(plan['hours'])} h simulated; keys are evaluated every 5 requests from the 10th.</p>",
        "<h2>Misses and false alarms</h2>" + _misses(summary) + _false_positives(result["false_positives"]),
        "<h2>Run</h2>" + _run(result),
    ]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>distillguard evaluation</title><style>{STYLE}</style></head><body>"
            + "".join(sections) + "</body></html>\n")


def _e(value) -> str:
    return escape(str(value), quote=True)


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _run_line(result: dict) -> str:
    plan = result["plan"]
    return (f"{result['train_keys']:,} honest keys trained the forest; {result['test_keys']:,} keys scored; "
            f"{plan['hours']:g} h simulated, seed {plan['seed']}, commit {result['commit']}")


def _overall(result: dict) -> str:
    s = result["summary"]
    bound = result["fpr_upper_bound_95"]
    return (f"Overall: precision {_num(s['precision'])}, recall {_num(s['recall'])}, false-positive rate "
            f"{_num(s['false_positive_rate'])} over {result['honest_keys']:,} honest keys. "
            f"{result['honest_keys_evaluated']:,} of them sent enough requests to be evaluated; from those, the "
            f"rate is below {_num(bound)} with 95% confidence. Keys: keys that sent at least one request; "
            "evaluated: keys that reached their first evaluation (10 requests).")


def _goals(goals: list[dict]) -> str:
    rows = []
    for subject, met, items in goals_by_subject(goals):
        state = {True: "met", False: "missed", None: "reported"}[met]
        checks = "; ".join(f"{_e(item['target'])}: <b>{_num(item['measured'])}</b>" for item in items)
        rows.append(f"<tr><td>{_e(subject)}</td><td style='text-align:left'>{checks}</td>"
                    f"<td class='{state}'>{state}</td></tr>")
    return "<table id='goals'><tr><th>subject</th><th>goal: measured</th><th></th></tr>" + "".join(rows) + "</table>"


def _table(summary: dict) -> str:
    head = ("<tr><th>scenario</th><th>label</th><th>keys</th><th>evaluated</th><th>flagged</th><th>recall / FPR</th>"
            "<th>ttd requests p50</th><th>p90</th><th>ttd seconds p50</th><th>p90</th></tr>")
    rows = []
    for name, row in sorted(summary["scenarios"].items(), key=lambda i: (i[1]["label"] != "attack", i[0])):
        rate = row.get("recall", row.get("false_positive_rate"))
        rows.append(
            f"<tr class='row-{_e(row['label'])}'><td>{_e(name)}</td><td>{_e(row['label'])}</td>"
            f"<td>{_num(row['keys'])}</td><td>{_num(row.get('evaluated'))}</td><td>{_num(row['flagged'])}</td>"
            f"<td>{_num(rate)}</td>"
            f"<td>{_num(row['ttd_requests_median'])}</td><td>{_num(row['ttd_requests_p90'])}</td>"
            f"<td>{_num(row['ttd_seconds_median'])}</td><td>{_num(row.get('ttd_seconds_p90'))}</td></tr>")
    return f"<table id='scenarios'>{head}{''.join(rows)}</table>"


def _svg(chart_id: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (f"<svg id='{chart_id}' width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
            f"aria-label='{_e(title)}'><title>{_e(title)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, text, anchor: str = "middle", extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' {extra}>{_e(text)}</text>"


def _line(x1: float, y1: float, x2: float, y2: float, colour: str = GRID, extra: str = "") -> str:
    return f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{colour}' {extra}/>"


def _log_position(value: float, low: float, high: float, start: float, length: float) -> float:
    """Where `value` falls on a logarithmic axis from `low` to `high` (clamped to its ends)."""
    value = min(max(value, low), high)
    return start + length * (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))


def _legend(x: float, y: float) -> list[str]:
    return [f"<rect x='{x}' y='{y - 9}' width='10' height='10' fill='{HONEST}'/>", _text(x + 14, y, "honest", "start"),
            f"<rect x='{x + 70}' y='{y - 9}' width='10' height='10' fill='{ATTACK_COLOUR}'/>",
            _text(x + 84, y, "attack", "start")]


def _histogram(key_scores: list[dict], bins: int = 20) -> str:
    """Per-key highest score in `bins` bins, honest and attack bars side by side, log count axis."""
    width, height, left, right, top, bottom = 980, 280, 56, 16, 24, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = {"benign": [0] * bins, "attack": [0] * bins}
    for key in key_scores:
        if key["label"] in counts:
            counts[key["label"]][min(bins - 1, int(key["score"] * bins))] += 1
    peak = max([1, *counts["benign"], *counts["attack"]])
    top_count = 10 ** math.ceil(math.log10(peak)) if peak > 1 else 10
    body = [_line(left, top + plot_h, left + plot_w, top + plot_h, INK)]
    tick = 1
    while tick <= top_count:
        y = top + plot_h - _log_position(tick, 0.5, top_count, 0, plot_h)
        body += [_line(left, y, left + plot_w, y), _text(left - 6, y + 4, f"{tick:,}", "end")]
        tick *= 10
    slot = plot_w / bins
    for index in range(bins):
        for offset, (label, colour) in enumerate((("benign", HONEST), ("attack", ATTACK_COLOUR))):
            count = counts[label][index]
            if count:
                h = _log_position(count, 0.5, top_count, 0, plot_h)
                x = left + index * slot + 2 + offset * (slot - 4) / 2
                body.append(f"<rect class='bar-{label}' x='{x:.1f}' y='{top + plot_h - h:.1f}' "
                            f"width='{(slot - 4) / 2:.1f}' height='{h:.1f}' fill='{colour}'>"
                            f"<title>{_e(label)} keys with score {index / bins:.2f}-{(index + 1) / bins:.2f}: "
                            f"{count}</title></rect>")
    for index in range(0, bins + 1, 2):
        body.append(_text(left + index * slot, top + plot_h + 16, f"{index / bins:.1f}"))
    mid = left + 0.5 * plot_w
    body += [_line(mid, top, mid, top + plot_h, INK, "stroke-dasharray='4 3'"),
             _text(mid + 4, top + 10, "forest threshold", "start"),
             _text(left + plot_w / 2, height - 6, "highest score of the key"),
             _text(14, top + plot_h / 2, "keys", "middle", f"transform='rotate(-90 14 {top + plot_h / 2})'"),
             *_legend(left + plot_w - 140, top + 10)]
    return _svg("chart-scores", width, height, "Highest score per key, honest and attack", body)


def _tradeoff(sweep: list[dict], summary: dict) -> str:
    """Recall (linear) against false-positive rate (logarithmic; 0 drawn at the left edge)."""
    width, height, left, right, top, bottom = 640, 340, 56, 24, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    low = 1e-4

    def point(fpr: float, recall: float) -> tuple[float, float]:
        return (_log_position(fpr if fpr > 0 else low, low, 1.0, left, plot_w), top + plot_h * (1 - recall))

    body = []
    for exponent in range(-4, 1):
        x, _ = point(10.0 ** exponent, 0)
        body += [_line(x, top, x, top + plot_h), _text(x, top + plot_h + 16, "0 / 1e-4" if exponent == -4 else
                                                      f"{10.0 ** exponent:g}")]
    for recall in (0, 0.25, 0.5, 0.75, 1.0):
        _, y = point(low, recall)
        body += [_line(left, y, left + plot_w, y), _text(left - 6, y + 4, f"{recall:g}", "end")]
    path = [point(0, 0)]
    for entry in sweep:
        x, y = point(entry["false_positive_rate"], entry["recall"])
        path += [(x, path[-1][1]), (x, y)]
    path.append((left + plot_w, path[-1][1]))
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in path)
    goal_x, _ = point(0.001, 0)
    body += [_line(goal_x, top, goal_x, top + plot_h, INK, "stroke-dasharray='4 3'"),
             _text(goal_x + 4, top + plot_h - 6, "goal FPR 0.1%", "start"),
             f"<polyline id='sweep' fill='none' stroke='{ATTACK_COLOUR}' stroke-width='2' points='{coords}'/>"]
    if summary["recall"] is not None and summary["false_positive_rate"] is not None:
        x, y = point(summary["false_positive_rate"], summary["recall"])
        body += [f"<circle id='operating-point' cx='{x:.1f}' cy='{y:.1f}' r='6' fill='none' stroke='{INK}' "
                 f"stroke-width='2'><title>shipped detector: recall {summary['recall']}, false-positive rate "
                 f"{summary['false_positive_rate']}</title></circle>",
                 _text(x + 9, y + 14, "shipped detector", "start")]
    body += [_text(left + plot_w / 2, height - 8, "false-positive rate (honest keys flagged)"),
             _text(14, top + plot_h / 2, "recall", "middle", f"transform='rotate(-90 14 {top + plot_h / 2})'")]
    return _svg("chart-tradeoff", width, height, "Recall against false-positive rate", body)


def _time_to_detect(summary: dict) -> str:
    """Per attack scenario: each flagged key's requests and seconds to detect, on log axes."""
    by_scenario: dict[str, list[dict]] = {}
    for key in summary["attack_keys"]:
        by_scenario.setdefault(key["scenario"] or "attack", []).append(key)
    names = sorted(by_scenario)
    row_h, top, panel_w, gap = 26, 28, 330, 60
    label_w = max(120, 7 * max((len(name) for name in names), default=0) + 16)
    height = top + row_h * max(1, len(names)) + 40
    width = label_w + 2 * panel_w + gap + 80
    panels = (("ttd_requests", 10, _axis_top(summary, "ttd_requests"), "requests to detect", label_w),
              ("ttd_seconds", 1, _axis_top(summary, "ttd_seconds"), "seconds to detect", label_w + panel_w + gap))
    body = []
    for _field, low, high, title, x0 in panels:
        body.append(_text(x0 + panel_w / 2, height - 8, title))
        exponent = round(math.log10(low))
        while 10 ** exponent <= high:
            x = _log_position(10 ** exponent, low, high, x0, panel_w)
            body += [_line(x, top - 8, x, top + row_h * len(names)),
                     _text(x, top + row_h * len(names) + 16, f"{10 ** exponent:,}")]
            exponent += 1
    goal_x = _log_position(100, 10, panels[0][2], label_w, panel_w)
    body += [_line(goal_x, top - 8, goal_x, top + row_h * len(names), INK, "stroke-dasharray='4 3'"),
             _text(goal_x + 4, top - 12, "goal: 100 requests", "start")]
    for row, name in enumerate(names):
        keys = by_scenario[name]
        y = top + row * row_h + row_h / 2
        body.append(_text(label_w - 10, y + 4, name, "end"))
        missed = sum(1 for key in keys if not key["flagged"])
        for field, low, high, _, x0 in panels:
            values = sorted(key[field] for key in keys if key["flagged"] and key[field] is not None)
            for index, value in enumerate(values):
                jitter = ((index * 7) % 11 - 5) * 1.6
                body.append(f"<circle cx='{_log_position(max(value, low), low, high, x0, panel_w):.1f}' "
                            f"cy='{y + jitter:.1f}' r='3' fill='{ATTACK_COLOUR}' fill-opacity='0.55'/>")
            if values:
                for q, half in ((0.5, 11), (0.9, 6)):
                    x = _log_position(max(_quantile(values, q), low), low, high, x0, panel_w)
                    body.append(_line(x, y - half, x, y + half, INK, "stroke-width='2'"))
        if missed:
            body.append(_text(label_w + 2 * panel_w + gap + 6, y + 4, f"{missed} missed", "start",
                              "class='missed' fill='#c53030'"))
    return _svg("chart-ttd", width, height, "Time to detect per attack scenario", body)


def _axis_top(summary: dict, field: str) -> int:
    """The power of ten above the largest value (at least 1,000), so no dot sits on the edge."""
    largest = max([1000.0, *(key[field] or 0 for key in summary["attack_keys"])])
    return 10 ** math.ceil(math.log10(largest * 1.01))


def _quantile(values: list[float], q: float) -> float:
    position = (len(values) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def _misses(summary: dict) -> str:
    """Missed attack keys grouped by scenario and the rule they came closest to, with the
    range of each value that kept that rule from firing."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for key in summary["attack_keys"]:
        if not key["flagged"]:
            rule = (key.get("nearest_rule") or {}).get("rule", "")
            groups.setdefault((key["scenario"], rule), []).append(key)
    if not groups:
        return "<p>Every attack key was flagged.</p>"
    rows = []
    for (scenario, rule), keys in sorted(groups.items()):
        scores = [key.get("max_score") or 0.0 for key in keys]
        rows.append(f"<tr><td>{_e(scenario)}</td><td>{len(keys)}</td><td>{min(scores):.2f}–{max(scores):.2f}</td>"
                    f"<td style='text-align:left'>{_e(rule) or 'never evaluated'}</td>"
                    f"<td style='text-align:left'>{_lacking(keys)}</td></tr>")
    return ("<p>Attack keys never flagged, by the rule each came closest to and what it lacked at the key's "
            "last evaluation:</p><table id='missed'><tr><th>scenario</th><th>keys</th><th>highest score</th>"
            "<th style='text-align:left'>nearest rule</th><th style='text-align:left'>failed conditions "
            f"(range over the keys)</th></tr>{''.join(rows)}</table>")


def _lacking(keys: list[dict]) -> str:
    values: dict[tuple[str, str], list[float]] = {}
    for key in keys:
        for item in (key.get("nearest_rule") or {}).get("failing", []):
            values.setdefault((item["feature"], item["needs"]), []).append(item["value"])
    parts = []
    for (feature, needs), seen in values.items():
        low, high = min(seen), max(seen)
        span = f"{low:g}" if low == high else f"{low:g}–{high:g}"
        share = "" if len(seen) == len(keys) else f" ({len(seen)} of {len(keys)} keys)"
        parts.append(f"{_e(feature)} {span} (needs {_e(needs)}){share}")
    return "; ".join(parts)


def _false_positives(false_positives: list[dict]) -> str:
    if not false_positives:
        return "<p>No honest key was flagged.</p>"
    rows = []
    for key in false_positives:
        reasons = "<br>".join(f"<b>{_e(r.get('name', ''))}</b>: {_e(r.get('detail', ''))}" for r in key["reasons"])
        rows.append(f"<tr><td>{_e(key['scenario'])}</td><td><code>{_e(key['key_id'])}</code></td>"
                    f"<td>{_num(key['ttd_requests'])}</td><td style='text-align:left'>{reasons}</td></tr>")
    return ("<p>Honest keys flagged, with the reasons a reviewer would see:</p><table id='false-positives'>"
            "<tr><th>scenario</th><th>key_id</th><th>at request</th><th style='text-align:left'>reasons</th></tr>"
            + "".join(rows) + "</table>")


def _run(result: dict) -> str:
    plan, card = result["plan"], result["model_card"]
    items = [
        ("command", command_line(plan)),
        ("commit", result["commit"]),
        ("population", ", ".join(f"{name} {count}" for name, count in result["population"].items())),
        ("requests", f"{result.get('requests_trained', 0):,} trained on; {result['requests_scored']:,} scored of "
                     f"{result['requests_generated']:,} sent by scored keys (without linkage, a key's requests after "
                     "it is flagged with score 1 are skipped: they cannot change the result)"),
        ("model", f"isolation forest, {card.get('n_estimators')} trees, {card.get('training_rows'):,} training "
                  f"windows, {card.get('holdout_rows'):,} held out; threshold {card.get('threshold', 0):.4f} "
                  f"for target FPR {card.get('target_fpr')} (held-out FPR "
                  f"{card.get('validation', {}).get('holdout_fpr_at_threshold', 0):.4f})"),
        ("took", f"{result['seconds']['total']:.1f} s (train {result['seconds']['train']:.1f} s, "
                 f"score {result['seconds']['score']:.1f} s)"),
    ]
    return "<dl>" + "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in items) + "</dl>"
