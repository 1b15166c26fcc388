"""The isolation forest: calibrated on held-out benign windows, saved and loaded without
pickle (refusing files it did not write), explained in features a reviewer can check, and
flagging only windows whose content, not volume or timing, is beyond the benign range."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from detectors.iforest import MODEL_VERSION, ForestDetector, ForestModel, ModelFileError
from detectors.windows import FEATURE_NAMES

TARGET_FPR = 0.02

# Benign window features: (centre, spread, lowest, highest) of a clipped normal per feature.
BENIGN = {
    "requests_last_hour": (20, 10, 0, 200),
    "interarrival_cv": (1.3, 0.3, 0.2, 4),
    "hours_active_24": (6, 3, 1, 24),
    "near_duplicate_share": (0.2, 0.1, 0, 1),
    "template_diversity": (0.4, 0.1, 0, 1),
    "unique_prompt_share": (0.7, 0.1, 0, 1),
    "prompt_tokens_log_mean": (5.5, 0.6, 1, 10),
    "prompt_length_cv": (0.8, 0.2, 0, 3),
    "completion_tokens_log_mean": (5.0, 0.5, 1, 9),
    "completion_to_prompt_ratio": (1.0, 0.3, 0.05, 5),
    "max_tokens_log_mean": (5.5, 0.8, 0, 9),
    "reasoning_share": (0.05, 0.03, 0, 1),
    "logprobs_share": (0.02, 0.02, 0, 1),
    "top_logprobs_mean": (0.05, 0.05, 0, 20),
    "multi_choice_share": (0.02, 0.02, 0, 1),
    "single_turn_share": (0.5, 0.15, 0, 1),
    "system_prompt_share": (0.6, 0.2, 0, 1),
    "sampling_spread": (0.05, 0.03, 0, 1),
    "greedy_share": (0.2, 0.1, 0, 1),
    "ip_prefixes": (2, 1, 1, 50),
    "user_agents": (1.5, 0.5, 1, 20),
    "error_rate": (0.02, 0.02, 0, 1),
    "rate_limited_share": (0.005, 0.005, 0, 1),
    "task_generation_share": (0.002, 0.002, 0, 1),
    "public_eval_share": (0.01, 0.01, 0, 1),
    "standalone_share": (0.6, 0.15, 0, 1),
    "template_share": (0.2, 0.1, 0, 1),
    "variable_tokens_log_mean": (4.0, 0.8, 0, 10),
    "answer_to_variable_ratio": (1.5, 0.5, 0.01, 10),
    "logprobs_generated_share": (0.01, 0.01, 0, 1),
    "tool_use_share": (0.05, 0.05, 0, 1),
    "tool_results_share": (0.03, 0.03, 0, 1),
    "toolset_diversity": (0.01, 0.01, 0, 1),
    "mirrored_turn_share": (0.001, 0.001, 0, 1),
    "judgement_share": (0.005, 0.005, 0, 1),
    "rewrite_share": (0.002, 0.002, 0, 1),
    "distinct_tasks_log": (3.5, 1.0, 0, 10),
}
assert tuple(BENIGN) == FEATURE_NAMES


def benign_windows(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre, spread, low, high = (np.array(column, dtype=np.float64) for column in zip(*BENIGN.values()))
    return np.clip(centre + spread * rng.standard_normal((rows, len(centre))), low, high)


def window_like(model: ForestModel, **values: float) -> np.ndarray:
    """The model's benign median, with the given features moved."""
    window = model.median.copy()
    for name, value in values.items():
        window[FEATURE_NAMES.index(name)] = value
    return window


HARVESTER = {
    "completion_to_prompt_ratio": 40.0, "logprobs_share": 1.0, "top_logprobs_mean": 10.0, "reasoning_share": 0.9,
    "single_turn_share": 1.0, "unique_prompt_share": 1.0, "max_tokens_log_mean": 8.5,
    "completion_tokens_log_mean": 8.0, "prompt_tokens_log_mean": 3.0, "multi_choice_share": 0.5,
}
BURSTY = {"requests_last_hour": 3000.0, "interarrival_cv": 0.01}
# Nothing that harvesting pushes: volume, timing, errors and 429s, and features with no
# harvesting direction (prompt-length spread, sampling spread), all far outside the benign range.
NOISY_AUTOMATION = {**BURSTY, "hours_active_24": 24.0, "error_rate": 0.9, "rate_limited_share": 0.9,
                    "prompt_length_cv": 3.0, "sampling_spread": 1.0}


@pytest.fixture(scope="module")
def model() -> ForestModel:
    return ForestModel.fit(benign_windows(3000, seed=1), target_fpr=TARGET_FPR, seed=0, n_estimators=200)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("model") / "forest")


# --- fit and calibration ------------------------------------------------------------------


def test_held_out_benign_false_positive_rate_is_at_most_the_target(model):
    assert model.card["target_fpr"] == TARGET_FPR
    assert model.card["validation"]["holdout_fpr_at_threshold"] <= TARGET_FPR
    assert (model.card["training_rows"], model.card["holdout_rows"]) == (2100, 900)


def test_fresh_benign_windows_are_flagged_at_about_the_target_rate(model):
    fresh = benign_windows(5000, seed=99)
    assert np.mean(model.raw_scores(fresh) >= model.threshold) <= 3 * TARGET_FPR


def test_the_threshold_is_stored_in_the_card_and_normalises_to_one_half(model):
    assert model.card["threshold"] == model.threshold
    assert model.normalise(model.threshold) == pytest.approx(0.5)


def test_the_card_records_the_benign_range_of_every_feature(model):
    assert model.card["feature_names"] == list(FEATURE_NAMES)
    assert model.card["version"] == MODEL_VERSION
    assert len(model.card["benign_low"]) == len(model.card["benign_high"]) == len(FEATURE_NAMES)
    assert np.all(model.low <= model.median) and np.all(model.median <= model.high)


def test_fitting_twice_with_one_seed_gives_the_same_model():
    benign = benign_windows(500, seed=5)
    first = ForestModel.fit(benign, target_fpr=TARGET_FPR, seed=3, n_estimators=20)
    second = ForestModel.fit(benign, target_fpr=TARGET_FPR, seed=3, n_estimators=20)
    assert first.card == second.card
    assert np.array_equal(first.raw_scores(benign), second.raw_scores(benign))


# --- save and load ------------------------------------------------------------------------


def test_a_saved_model_loads_with_identical_raw_scores(model, saved):
    loaded = ForestModel.load(saved)
    windows = np.vstack([benign_windows(200, seed=7), window_like(model, **HARVESTER)])
    assert np.array_equal(loaded.raw_scores(windows), model.raw_scores(windows))
    assert loaded.threshold == model.threshold
    assert loaded.card == model.card


def test_a_model_saves_as_a_skops_file_and_a_json_card(saved):
    assert saved.with_suffix(".skops").is_file()
    assert json.loads(saved.with_suffix(".json").read_text())["feature_names"] == list(FEATURE_NAMES)


def copy_model(saved, tmp_path, *, card_changes: dict | None = None, skops_object=None):
    """A copy of the saved model under tmp_path, with its card or its .skops file replaced."""
    target = tmp_path / "copy"
    card = json.loads(saved.with_suffix(".json").read_text())
    card.update(card_changes or {})
    target.with_suffix(".json").write_text(json.dumps(card))
    if skops_object is None:
        target.with_suffix(".skops").write_bytes(saved.with_suffix(".skops").read_bytes())
    else:
        sio.dump(skops_object, tmp_path / "other.skops")
        (tmp_path / "other.skops").rename(target.with_suffix(".skops"))
    return target


def test_loading_refuses_a_card_whose_feature_list_differs(saved, tmp_path):
    reordered = list(reversed(FEATURE_NAMES))
    with pytest.raises(ModelFileError, match="feature list"):
        ForestModel.load(copy_model(saved, tmp_path, card_changes={"feature_names": reordered}))


def test_loading_refuses_a_card_missing_a_feature(saved, tmp_path):
    with pytest.raises(ModelFileError, match="feature list"):
        ForestModel.load(copy_model(saved, tmp_path, card_changes={"feature_names": list(FEATURE_NAMES[:-1])}))


def test_loading_refuses_another_model_version(saved, tmp_path):
    with pytest.raises(ModelFileError, match="version"):
        ForestModel.load(copy_model(saved, tmp_path, card_changes={"version": MODEL_VERSION + 1}))


class Payload:
    """Stands for any class a tampered model file could ask the loader to construct."""

    def __init__(self) -> None:
        self.command = "echo owned"


def test_loading_refuses_a_skops_file_holding_an_unexpected_type(model, saved, tmp_path):
    tampered = copy_model(saved, tmp_path, skops_object={"forest": model.forest, "extra": Payload()})
    with pytest.raises(ModelFileError, match="unexpected types.*Payload"):
        ForestModel.load(tampered)


def test_loading_refuses_a_skops_file_holding_something_other_than_a_forest(model, saved, tmp_path):
    pipeline = Pipeline([("scale", StandardScaler()), ("forest", IsolationForest(n_estimators=5))])
    tampered = copy_model(saved, tmp_path, skops_object={"forest": model.forest, "pipeline": pipeline})
    with pytest.raises(ModelFileError, match="not an IsolationForest"):
        ForestModel.load(tampered)


def test_loading_refuses_a_forest_over_another_number_of_features(saved, tmp_path):
    narrow = IsolationForest(n_estimators=5, random_state=0).fit(benign_windows(100, seed=2)[:, :5])
    with pytest.raises(ModelFileError, match="not an IsolationForest over"):
        ForestModel.load(copy_model(saved, tmp_path, skops_object=narrow))


# --- explanations and evidence ------------------------------------------------------------


def test_explain_names_the_features_moved_outside_the_benign_range(model):
    window = window_like(model, completion_to_prompt_ratio=40.0, logprobs_share=1.0)
    reasons = model.explain(window)
    assert {reason.feature for reason in reasons} == {"completion_to_prompt_ratio", "logprobs_share"}
    for reason in reasons:
        index = FEATURE_NAMES.index(reason.feature)
        assert reason.name == f"unusual_{reason.feature}"
        assert reason.value == window[index]
        assert reason.benign_range == (model.low[index], model.high[index])
        assert not reason.benign_range[0] <= reason.value <= reason.benign_range[1]


def test_explain_gives_at_most_top_reasons(model):
    assert len(model.explain(window_like(model, **HARVESTER), top=2)) == 2


def test_a_typical_window_has_nothing_to_explain(model):
    assert model.explain(window_like(model)) == ()


def test_unusual_volume_and_timing_alone_are_no_harvesting_evidence(model):
    window = window_like(model, **BURSTY)
    reasons = model.explain(window)
    assert {reason.feature for reason in reasons} == set(BURSTY)
    assert not model.harvesting_evidence(window, reasons)


def test_two_content_features_far_beyond_benign_in_the_harvest_direction_are_evidence(model):
    window = window_like(model, completion_to_prompt_ratio=40.0, single_turn_share=1.0, unique_prompt_share=1.0)
    assert model.harvesting_evidence(window, model.explain(window))


def test_long_answers_alone_are_no_harvesting_evidence(model):
    """A reasoning model answers everyone at length: answer length counts once, and once is not enough."""
    window = window_like(model, completion_to_prompt_ratio=40.0, completion_tokens_log_mean=9.0)
    reasons = model.explain(window)
    assert {reason.feature for reason in reasons} >= {"completion_to_prompt_ratio", "completion_tokens_log_mean"}
    assert not model.harvesting_evidence(window, reasons)


def test_asking_for_reasoning_and_getting_long_answers_is_one_piece_of_evidence(model):
    """Reasoning-app users ask for step-by-step answers and get long ones: that is one fact about them."""
    window = window_like(model, reasoning_share=0.6, completion_to_prompt_ratio=40.0, completion_tokens_log_mean=9.0)
    reasons = model.explain(window)
    assert "reasoning_share" in {reason.feature for reason in reasons}
    assert not model.harvesting_evidence(window, reasons)


def test_a_content_feature_outside_the_range_the_wrong_way_is_no_evidence(model):
    window = window_like(model, completion_to_prompt_ratio=0.0, unique_prompt_share=0.0)
    reasons = model.explain(window)
    assert reasons
    assert not model.harvesting_evidence(window, reasons)


@pytest.mark.parametrize("greedy_share", [0.95, 1.0])
def test_keys_at_temperature_0_on_at_least_95_percent_of_requests_are_left_to_the_rules(model, greedy_share):
    window = window_like(model, completion_to_prompt_ratio=40.0, single_turn_share=1.0, unique_prompt_share=1.0,
                         greedy_share=greedy_share)
    assert not model.harvesting_evidence(window, model.explain(window))


def test_keys_just_under_the_greedy_guard_still_count_as_evidence(model):
    window = window_like(model, completion_to_prompt_ratio=40.0, single_turn_share=1.0, unique_prompt_share=1.0,
                         greedy_share=0.94)
    assert model.harvesting_evidence(window, model.explain(window))


# --- the detector -------------------------------------------------------------------------


def test_the_detector_flags_a_harvesting_window_over_the_threshold(model):
    verdict = ForestDetector(model, min_requests=20).score(window_like(model, **HARVESTER), requests_seen=20)
    assert verdict.detector == "iforest"
    assert verdict.flagged and verdict.score > 0.5
    assert {reason.feature for reason in verdict.reasons} <= set(HARVESTER)


def test_the_detector_does_not_flag_before_min_requests(model):
    verdict = ForestDetector(model, min_requests=20).score(window_like(model, **HARVESTER), requests_seen=19)
    assert not verdict.flagged and verdict.reasons == ()
    assert verdict.score > 0.5


def test_the_detector_does_not_flag_a_window_over_the_threshold_without_harvesting_evidence(model):
    window = window_like(model, **NOISY_AUTOMATION)
    assert model.raw_scores([window])[0] >= model.threshold
    verdict = ForestDetector(model).score(window, requests_seen=500)
    assert verdict.score > 0.5
    assert not verdict.flagged
    assert {reason.feature for reason in verdict.reasons} <= set(NOISY_AUTOMATION)


def test_the_detector_leaves_a_typical_window_unflagged_and_unexplained(model):
    verdict = ForestDetector(model).score(window_like(model), requests_seen=500)
    assert verdict.score < 0.5
    assert (verdict.flagged, verdict.reasons) == (False, ())


def test_scoring_a_batch_gives_what_scoring_each_window_alone_gives(model):
    detector = ForestDetector(model)
    windows = np.vstack([benign_windows(20, seed=4), window_like(model, **HARVESTER), window_like(model, **BURSTY)])
    seen = [10 * (i + 1) for i in range(len(windows))]
    assert detector.score_many(windows, seen) == [detector.score(row, n) for row, n in zip(windows, seen)]


def test_an_empty_batch_gives_no_verdicts(model):
    assert ForestDetector(model).score_many(np.empty((0, len(FEATURE_NAMES))), []) == []
