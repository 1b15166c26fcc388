"""The checked-in lab corpus (real clients through the gateway): valid, labelled as its
manifest says, and scored by `distillguard score`'s offline path (lab/README.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.corpus import CORPUS, MANIFEST, lab_key_id, read_manifest
from lab.report import RESULTS, run_results, score_corpus
from lab.tools import TOOLS, all_runs
from traffic import read_traffic


@pytest.fixture(scope="module")
def manifest() -> dict:
    return read_manifest(MANIFEST)


@pytest.fixture(scope="module")
def records() -> list:
    return list(read_traffic(CORPUS))  # read_traffic validates every line as it goes


@pytest.fixture(scope="module")
def results(manifest):
    return run_results(score_corpus(CORPUS), manifest)


def test_every_line_is_filed_under_a_run_of_the_manifest(records, manifest):
    runs = {run["key_id"]: run for run in manifest["runs"]}
    for record in records:
        run = runs[record.key_id]
        assert (record.label, record.scenario) == (run["label"], run["tool"])


def test_each_run_has_its_own_key_with_the_manifest_request_count(records, manifest):
    counts = Counter(record.key_id for record in records)
    assert len({run["key_id"] for run in manifest["runs"]}) == len(manifest["runs"])
    for run in manifest["runs"]:
        assert run["key_id"] == lab_key_id(f"sk-lab-{run['tool']}-{run['setting']}")
        assert counts[run["key_id"]] == run["requests"] > 0, run
    assert sum(counts.values()) == manifest["requests"]


def test_the_corpus_covers_every_catalogued_run(manifest):
    recorded = {(run["tool"], run["setting"]) for run in manifest["runs"]}
    assert recorded == {(run.tool.name, run.setting) for run in all_runs()}
    tools_by_label = Counter(tool.label for tool in TOOLS)
    assert tools_by_label["attack"] >= 3 and tools_by_label["benign"] >= 5
    assert all(len(tool.settings) >= 3 for tool in TOOLS)


def test_recording_kept_features_and_no_prompt_text(records):
    for record in records:
        if record.method == "POST":
            assert record.features is not None
            body = record.body or {}
            assert not {"messages", "prompt", "input"} & set(body)
            assert all(set(tool) == {"type"} for tool in body.get("tools", []))  # kinds, no schemas
            assert set(body.get("response_format") or {"type": None}) == {"type"}


def test_every_client_finished_its_run(manifest):
    """Zero is the goal; a tool that drops a row by its own policy (curator retries answers cut
    at max_tokens, then drops them) may lose at most 1 % of its outputs."""
    failed = {f"{r['tool']}/{r['setting']}": r["client_error_samples"] for r in manifest["runs"]
              if r["exit_code"] != 0 or r["timed_out"] or r["client_errors"] > 0.01 * r["client_outputs"]}
    assert failed == {}


def test_distillation_runs_are_sized_to_be_judged(manifest):
    for run in manifest["runs"]:
        low = 150 if run["label"] == "attack" else 80
        assert low <= run["requests"] <= 1500, run


# Honest runs the stock detectors flag today (lab/RESULTS.md): the goal is none. This set may
# only shrink; the detection work of issue 13 emptied it of the logprob classifier.
def test_no_honest_run_is_flagged(results):
    """Issue 13's lab goal for honest tools: none of their runs flagged, at any setting."""
    flagged = {f"{r.tool}/{r.setting}" for r in results if r.label == "benign" and r.flagged}
    assert not flagged, flagged


# Distillation runs flagged on the shipped detectors: a ratchet that may only grow (the goal
# is every run; short runs under the distinct-task floor are the gap, see docs/evaluation.md).
KNOWN_CAUGHT = {"openai-alpaca/original-3072", "openai-alpaca/system-2048", "distilabel/evol-1024",
                "distilabel/selfinstruct-2048", "camel/roleplay-1024", "camel/roleplay-4096-t1",
                "camel/roleplay-512-specify"}


def test_every_distillation_run_caught_before_is_still_caught(results):
    caught = {f"{r.tool}/{r.setting}" for r in results if r.label == "attack" and r.flagged}
    assert KNOWN_CAUGHT <= caught, KNOWN_CAUGHT - caught


def test_results_table_lists_every_run(manifest):
    table = RESULTS.read_text()
    for run in manifest["runs"]:
        assert f"| {run['tool']} | {run['setting']} | {run['label']} | {run['requests']} |" in table
