"""`distillguard evaluate`: one command from a simulated population to the per-scenario table
and a self-contained report page; honest keys split by key between training and scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scripts.screenshot_report import CHROMIUM, LAUNCH_ARGS
from service.config import load_settings
from service.offline.evaluation import (
    EVALUATION_SECRET,
    Plan,
    command_line,
    goals,
    honest_part,
    in_training,
    nearest_rule,
    pipeline_with,
    population,
    score_population,
    simulate,
    threshold_sweep,
)
from service.offline.linkage import linkage_run
from service.offline.report_html import render
from service.offline.scoring import fit_detectors, score_records
from traffic.scenarios import attack_mix

ROOT = Path(__file__).resolve().parents[1]
# The harvesting families of the public record run jobs of thousands of requests; a few
# hundred are enough here and keep the run short.
SHORT_JOBS = tuple(f"{name}.job_requests=100,300" for name in (
    "evol_instruct", "synthetic_dialogues", "reward_grading", "reasoning_trace_distillation",
    "sequence_logprob_harvester", "code_harvest", "agent_trajectory_harvester"))
SMALL = ["--benign", "60", "--attacks-per-scenario", "2", "--hours", "4", "--seed", "3",
         *(part for item in SHORT_JOBS for part in ("--param", item))]
HOSTILE = "<script>alert('x')</script>"


def clean_env() -> dict:
    """No config or secret from the developer's shell: the run must not depend on them."""
    return {name: value for name, value in os.environ.items() if not name.startswith("DISTILLGUARD_")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The command as a user runs it, on a small population."""
    out = tmp_path_factory.mktemp("evaluate")
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "evaluate", *SMALL, "--html", str(out / "report.html"),
         "--json", str(out / "report.json")],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=110,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout, (out / "report.html").read_text(), json.loads((out / "report.json").read_text())


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


def test_the_table_has_a_row_for_every_attack_scenario(run):
    stdout, _, result = run
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line and not line.startswith(" ")}
    for name in attack_mix(1):
        assert name in result["summary"]["scenarios"], name
        assert rows[name][1] == "attack", rows[name]
        assert int(rows[name][2]) == result["summary"]["scenarios"][name]["keys"]
    assert "recall" in stdout and "false-positive rate" in stdout and "took" in stdout


def test_every_honest_scenario_that_sent_traffic_is_in_the_table(run):
    _, _, result = run
    honest = {key["scenario"] for key in result["key_scores"] if key["label"] == "benign"}
    assert honest and honest <= set(result["summary"]["scenarios"])
    assert all(result["summary"]["scenarios"][name]["label"] == "benign" for name in honest)


def test_the_page_loads_nothing_from_anywhere(run):
    _, page, _ = run
    lowered = page.lower()
    for needle in ("http://", "https://", "<script", "<link", "@import", "url(", "<iframe", "<img"):
        assert needle not in lowered, needle
    for tag, attrs in elements(page):
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)


def test_the_page_has_the_three_charts_and_the_table(run):
    _, page, _ = run
    ids = {attrs.get("id"): tag for tag, attrs in elements(page)}
    assert ids.get("chart-scores") == "svg"
    assert ids.get("chart-tradeoff") == "svg"
    assert ids.get("chart-ttd") == "svg"
    assert ids.get("scenarios") == "table"
    assert ids.get("operating-point") == "circle" and ids.get("sweep") == "polyline"


def test_chromium_draws_the_charts_without_asking_the_network_for_anything(run, tmp_path):
    from playwright.sync_api import sync_playwright

    _, page_html, _ = run
    path = tmp_path / "report.html"
    path.write_text(page_html)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(path.as_uri(), wait_until="load")
            sizes = {chart: page.locator(f"svg#{chart}").bounding_box()
                     for chart in ("chart-scores", "chart-tradeoff", "chart-ttd")}
            bars = page.locator("svg#chart-scores rect[class^='bar-']").count()
        finally:
            browser.close()
    assert requested == [path.as_uri()]
    assert all(box and box["width"] > 300 and box["height"] > 200 for box in sizes.values()), sizes
    assert bars > 0


def test_the_screenshot_script_writes_a_png(run, tmp_path):
    _, page_html, _ = run
    (tmp_path / "report.html").write_text(page_html)
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot_report.py"),
                                str(tmp_path / "report.html"), str(tmp_path / "report.png")],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strings_from_the_run_are_escaped(run):
    _, _, result = run
    hostile = json.loads(json.dumps(result))
    name = next(iter(hostile["summary"]["scenarios"]))
    hostile["summary"]["scenarios"][HOSTILE] = hostile["summary"]["scenarios"].pop(name)
    hostile["summary"]["attack_keys"][0]["scenario"] = HOSTILE
    hostile["commit"] = '"><svg onload=alert(1)>'
    hostile["false_positives"] = [{"key_id": "0123456789abcdef", "scenario": HOSTILE, "ttd_requests": 40,
                                   "reasons": [{"name": "x", "detail": "<img src=x onerror=alert(1)>"}]}]
    page = render(hostile)
    assert "<script" not in page and "<img" not in page and "<svg onload" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_threshold_sweep_only_grows_as_the_threshold_falls(run):
    _, _, result = run
    synthetic = threshold_sweep([("attack", 1.0), ("attack", 0.7), ("benign", 0.7), ("benign", 0.2),
                                 ("attack", 0.1), ("benign", 0.0)])
    for sweep in (result["sweep"], synthetic):
        thresholds = [point["threshold"] for point in sweep]
        assert thresholds == sorted(thresholds, reverse=True) and len(set(thresholds)) == len(thresholds)
        for earlier, later in zip(sweep, sweep[1:]):
            assert later["recall"] >= earlier["recall"]
            assert later["false_positive_rate"] >= earlier["false_positive_rate"]
    assert synthetic[0] == {"threshold": 1.0, "recall": 1 / 3, "false_positive_rate": 0.0}
    assert synthetic[1] == {"threshold": 0.7, "recall": 2 / 3, "false_positive_rate": 1 / 3}
    assert synthetic[-1]["recall"] == synthetic[-1]["false_positive_rate"] == 1.0


def test_training_and_scored_keys_are_disjoint(run):
    _, _, result = run
    plan = Plan(benign=60, attacks_per_scenario=2, hours=4, seed=3)
    trained = {r.key_id for r in simulate(plan, honest_part(population(plan)),
                                          lambda key_id, _: in_training(key_id, plan))}
    scored = {key["key_id"] for key in result["key_scores"]}
    scored_honest = {key["key_id"] for key in result["key_scores"] if key["label"] == "benign"}
    assert trained and scored_honest
    assert not trained & scored
    assert len(trained) == result["train_keys"]


def test_attack_keys_are_never_trained_on():
    plan = Plan(seed=3, scenarios=("support_chatbot=5",))
    mix = population(plan)
    assert set(attack_mix(1)) <= set(mix)
    assert not set(attack_mix(1)) & set(honest_part(mix))
    assert sum(honest_part(mix).values()) == plan.benign + 5


@pytest.mark.parametrize("with_linkage", [False, True], ids=["per-key", "with-linkage"])
def test_skipping_settled_keys_changes_no_outcome(monkeypatch, with_linkage):
    """The shortcut that makes the full run fast: a key flagged with score 1 stops being
    evaluated (and, without linkage, scored). Every key's first flag, time to detect and
    highest score must be as without it. Small batches let keys settle early in this short
    run (decisions never depend on them)."""
    monkeypatch.setattr("service.offline.scoring.BATCH", 16)
    plan = Plan(benign=60, attacks_per_scenario=1, hours=4, seed=3, param_items=SHORT_JOBS + tuple(
        f"{name}.rate_per_s=0.1,0.15" for name in ("burst_harvester", "logprob_harvester", "topic_sweep",
                                                    "reasoning_harvester", "paraphrase_harvester")))
    settings = load_settings(None)
    model = fit_detectors(simulate(plan, honest_part(population(plan)), lambda key_id, _: in_training(key_id, plan)),
                          EVALUATION_SECRET, target_fpr=0.01, seed=5, source="test")

    def linkage():
        return linkage_run(settings) if with_linkage else None

    full = score_records(simulate(plan, population(plan), lambda k, label: label == "attack" or not in_training(k, plan)),
                         EVALUATION_SECRET, pipeline_with(model, settings), linkage())
    short, watched, generated, _ = score_population(plan, population(plan), pipeline_with(model, settings), linkage())
    assert watched.settled
    assert (short.requests == full.requests) if with_linkage else (short.requests < full.requests)
    assert sum(generated.values()) == full.requests
    assert full.keys.keys() == short.keys.keys()
    for key_id, outcome in full.keys.items():
        other = short.keys[key_id]
        assert (outcome.flag is None) == (other.flag is None), key_id
        assert outcome.max_score == other.max_score, key_id
        if outcome.flag:
            assert outcome.flag["requests_before_flag"] == other.flag["requests_before_flag"]
            assert outcome.flagged_at_ts == other.flagged_at_ts


def test_the_report_names_the_command_that_repeats_the_run(run):
    stdout, page, result = run
    command = command_line(result["plan"])
    assert command == ("distillguard evaluate --benign 60 --attacks-per-scenario 2 --hours 4 --seed 3 --train-share 0.5 "
                       + " ".join(f"--param {item}" for item in SHORT_JOBS))
    assert command in stdout and command in page


def test_a_per_key_only_run_says_so_in_its_command_and_its_hydra_rows():
    from dataclasses import asdict

    assert command_line(asdict(Plan(linkage=False))).endswith("--no-linkage")
    summary = {"false_positive_rate": 0.0, "scenarios": {
        "hydra": {"label": "attack", "recall": 0.0, "ttd_requests_median": None}}}
    assert goals(summary, linkage=False)[0]["target"] == "share of member keys flagged (per-key detection alone)"
    assert goals(summary, linkage=True)[0]["target"] == "share of member keys flagged (per-key detection and linkage)"


def test_unknown_scenarios_and_parameters_are_refused_with_a_message():
    for extra in (["--scenario", "nobody=3"], ["--param", "burst_harvester.no_such_thing=1"]):
        completed = subprocess.run([sys.executable, "-m", "service.cli", "evaluate", *SMALL, *extra], cwd=ROOT,
                                   env=clean_env(), capture_output=True, text=True, timeout=60)
        assert completed.returncode != 0
        assert "distillguard evaluate:" in completed.stderr and "Traceback" not in completed.stderr


def test_a_missed_key_is_told_the_rule_it_came_closest_to_and_what_it_lacked_including_requests():
    from detectors.rules import parse_rules
    from detectors.windows import FEATURE_NAMES

    rules = parse_rules({
        "far": {"when": ["logprobs_share >= 0.8", "top_logprobs_mean >= 3"]},
        "near": {"when": ["single_turn_share >= 0.9", "completion_to_prompt_ratio >= 4"]},
    })
    features = [0.0] * len(FEATURE_NAMES)
    features[FEATURE_NAMES.index("single_turn_share")] = 1.0
    features[FEATURE_NAMES.index("completion_to_prompt_ratio")] = 2.5
    assert nearest_rule(features, 50, rules) == {
        "rule": "near", "failing": [{"feature": "completion_to_prompt_ratio", "value": 2.5, "needs": ">= 4"}]}
    features[FEATURE_NAMES.index("completion_to_prompt_ratio")] = 6.0
    assert nearest_rule(features, 25, rules) == {
        "rule": "near", "failing": [{"feature": "requests", "value": 25, "needs": ">= 30"}]}
