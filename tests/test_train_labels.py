"""`distillguard train --labels`: reviewers' verdicts in the next model. Dismissed keys' windows
join the honest training data (even a key the traffic file calls an attack), confirmed keys'
windows never train the forest and calibrate its threshold instead, precision first."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from detectors.calibration import calibrate_with_confirmed
from service.offline.scoring import benign_windows, train_forest
from service.review.label_training import labelled_windows, train_with_labels
from tests.conftest import TEST_SECRET, base_config
from tests.support.traffic import key_id
from traffic.format import TrafficWriter, read_traffic
from traffic.scenarios import generate

SALT = TEST_SECRET.encode()
TARGET_FPR = 0.01
# Honest keys busy enough to have windows in two hours, and two kinds of harvesters.
MIX = {"api_customer": 12, "rag_service": 4, "support_chatbot": 4, "benchmark_run": 2, "reasoning_app_user": 6,
       "heavy_developer": 6, "casual_user": 6, "logprob_harvester": 2, "low_and_slow": 2}


@pytest.fixture(scope="module")
def traffic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("train-labels") / "traffic.jsonl"
    writer = TrafficWriter(path)
    writer.write_all(generate(MIX, hours=2, seed=11))
    writer.close()
    return path


@pytest.fixture(scope="module")
def keys(traffic_file) -> dict[str, list[str]]:
    """key_ids by scenario, busiest first, as the gateway (and `train`) name them."""
    counts: Counter = Counter()
    scenario_of = {}
    for record in read_traffic(traffic_file, key_id):
        counts[record.key_id] += 1
        scenario_of[record.key_id] = record.scenario
    by_scenario: dict[str, list[str]] = {}
    for key, _ in counts.most_common():
        by_scenario.setdefault(scenario_of[key], []).append(key)
    return by_scenario


def records(traffic_file):
    return read_traffic(traffic_file, key_id)


def label(key: str, verdict: str) -> tuple[str, dict]:
    return key, {"key_id": key, "label": verdict, "action": "block" if verdict == "confirmed" else "dismiss",
                 "reviewer": "alice", "reason": "test", "ts": 1.7e9}


def test_a_dismissed_keys_windows_join_the_honest_training_data_even_when_the_file_says_attack(
    traffic_file, keys
):
    dismissed = keys["low_and_slow"][0]  # the file calls it an attack; a reviewer said it is not
    confirmed_benign = keys["api_customer"][0]  # the file calls it benign; a reviewer confirmed it
    labels = dict([label(dismissed, "dismissed"), label(confirmed_benign, "confirmed")])
    without = benign_windows(records(traffic_file), SALT)
    found = labelled_windows(records(traffic_file), SALT, labels)
    assert found.dismissed_windows > 0 and found.dismissed_keys == {dismissed}
    assert set(found.confirmed_keys) == {confirmed_benign}
    assert len(found.honest) == len(without) + found.dismissed_windows - len(found.confirmed)
    model = train_with_labels(records(traffic_file), SALT, labels, target_fpr=TARGET_FPR, seed=0,
                              source="traffic.jsonl", labels_source="labels.jsonl")
    assert model.card["training_rows"] + model.card["holdout_rows"] == len(found.honest)
    assert model.card["labels"]["dismissed_windows"] == found.dismissed_windows
    assert model.card["labels"]["labels_used"] == 2


def test_train_with_labels_calibrates_on_confirmed_keys_and_writes_their_recall_into_the_model_card(
    traffic_file, keys, tmp_path
):
    confirmed = keys["logprob_harvester"] + keys["low_and_slow"][1:]
    dismissed = keys["low_and_slow"][:1]
    labels_path = tmp_path / "labels.jsonl"
    labels_path.write_text("".join(json.dumps(label(key, "confirmed")[1]) + "\n" for key in confirmed)
                           + "".join(json.dumps(label(key, "dismissed")[1]) + "\n" for key in dismissed)
                           + json.dumps(label("0123456789abcdef", "confirmed")[1]) + "\n")  # not in this traffic
    config_path = tmp_path / "config.yaml"
    config_path.write_text(json.dumps(base_config("http://127.0.0.1:9/v1")))
    out = tmp_path / "models" / "labelled"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "train", "--config", str(config_path), "--traffic", str(traffic_file),
         "--labels", str(labels_path), "--out", str(out), "--target-fpr", str(TARGET_FPR)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    used = card["labels"]
    assert (used["labels_read"], used["labels_used"], used["confirmed_keys"], used["dismissed_keys"]) == (5, 4, 3, 1)
    assert used["confirmed_keys_with_windows"] == 3 and used["confirmed_windows"] > 0
    assert 0.0 <= used["confirmed_key_recall"] <= 1.0 and 0.0 <= used["confirmed_window_recall"] <= 1.0
    assert card["threshold"] == used["threshold"] <= used["threshold_from_target_fpr"]
    # on this population lowering pays: more confirmed windows caught, honest FPR within 2x the target
    assert used["lowered"] and used["confirmed_window_recall"] > used["confirmed_window_recall_at_target_fpr_threshold"]
    assert card["validation"]["holdout_fpr_at_threshold"] <= 2 * TARGET_FPR + 1e-12
    assert "confirmed key recall" in result.stdout
    plain = train_forest(records(traffic_file), SALT, target_fpr=TARGET_FPR, seed=0, source="traffic.jsonl")
    honest_rows = plain.card["training_rows"] + plain.card["holdout_rows"]
    assert card["training_rows"] + card["holdout_rows"] == honest_rows + used["dismissed_windows"]


def test_the_threshold_is_lowered_to_catch_confirmed_windows_only_within_twice_the_target_fpr():
    honest = np.linspace(0.0, 1.0, 1000)  # 1 in 1000 honest windows at or over 0.999
    calibration = calibrate_with_confirmed(0.999, honest, [1.2, 0.9985, 0.9975, 0.5], target_fpr=0.001)
    assert calibration.lowered and calibration.threshold == 0.9985  # 2 honest windows over it: 2x the target
    assert calibration.holdout_fpr_at_threshold == pytest.approx(0.002)
    assert (calibration.confirmed_window_recall, calibration.confirmed_window_recall_at_target_fpr_threshold) == (
        0.5, 0.25)


def test_the_threshold_stays_when_no_confirmed_window_can_be_caught_within_the_bound():
    honest = np.linspace(0.0, 1.0, 1000)
    calibration = calibrate_with_confirmed(0.999, honest, [1.5, 0.9, 0.2], target_fpr=0.001)
    assert not calibration.lowered and calibration.threshold == 0.999
    assert calibration.confirmed_window_recall == pytest.approx(1 / 3)
