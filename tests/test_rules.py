"""Threshold rules: parsed once from the config with errors that name what is wrong, firing
only when every condition holds on a key that has sent enough requests, each firing rule
a reason that shows the values that made it fire."""

from __future__ import annotations

import pytest

from detectors.base import Reason
from detectors.rules import DEFAULT_RULES, Condition, RuleError, RulesDetector, parse_rules
from detectors.windows import FEATURE_NAMES

LOGPROBS_SPEC = {
    "soft_labels": {
        "description": "soft labels in bulk",
        "min_requests": 30,
        "when": ["logprobs_share >= 0.8", "top_logprobs_mean > 3"],
    }
}


def window(**values: float) -> list[float]:
    """Window features, all zero except those given."""
    unknown = set(values) - set(FEATURE_NAMES)
    assert not unknown, unknown
    return [float(values.get(name, 0.0)) for name in FEATURE_NAMES]


def detector(spec: dict = LOGPROBS_SPEC) -> RulesDetector:
    return RulesDetector(parse_rules(spec))


# --- parsing ------------------------------------------------------------------------------


def test_conditions_parse_into_feature_operator_and_threshold():
    (rule,) = parse_rules(LOGPROBS_SPEC)
    assert rule.name == "soft_labels"
    assert rule.min_requests == 30
    assert rule.description == "soft labels in bulk"
    assert rule.conditions == (Condition("logprobs_share", ">=", 0.8), Condition("top_logprobs_mean", ">", 3.0))


@pytest.mark.parametrize("condition", ["logprobs_share => 0.8", "logprobs_share >= high", "logprobs_share 0.8",
                                       "logprobs_share == 0.8", ">= 0.8"])
def test_a_malformed_condition_is_refused_naming_the_rule_and_the_condition(condition):
    with pytest.raises(RuleError) as error:
        parse_rules({"my_rule": {"when": [condition]}})
    assert "'my_rule'" in str(error.value)
    assert repr(condition) in str(error.value)


def test_an_unknown_feature_is_refused_naming_the_rule_and_the_feature():
    with pytest.raises(RuleError) as error:
        parse_rules({"my_rule": {"when": ["logprobs_share >= 0.8", "logprob_share >= 0.8"]}})
    assert "'my_rule'" in str(error.value)
    assert "'logprob_share'" in str(error.value)


def test_a_rule_without_conditions_is_refused_naming_the_rule():
    with pytest.raises(RuleError, match="'empty_rule'"):
        parse_rules({"empty_rule": {"min_requests": 10, "when": []}})


def test_rule_errors_are_value_errors_for_the_config_validator():
    assert issubclass(RuleError, ValueError)


def test_the_default_rules_all_parse():
    rules = parse_rules(DEFAULT_RULES)
    assert [rule.name for rule in rules] == list(DEFAULT_RULES)
    for rule, body in zip(rules, DEFAULT_RULES.values()):
        assert len(rule.conditions) == len(body["when"])
        assert rule.min_requests == body["min_requests"]


# --- firing -------------------------------------------------------------------------------


def test_a_rule_fires_when_all_its_conditions_hold():
    verdict = detector().score(window(logprobs_share=0.9, top_logprobs_mean=5), requests_seen=30)
    assert (verdict.detector, verdict.score, verdict.flagged) == ("rules", 1.0, True)


def test_a_rule_does_not_fire_when_one_condition_fails():
    verdict = detector().score(window(logprobs_share=0.9, top_logprobs_mean=2), requests_seen=100)
    assert (verdict.score, verdict.flagged, verdict.reasons) == (0.0, False, ())


def test_a_rule_fires_only_at_or_above_its_min_requests():
    harvesting = window(logprobs_share=1.0, top_logprobs_mean=10)
    assert not detector().score(harvesting, requests_seen=29).flagged
    assert detector().score(harvesting, requests_seen=30).flagged


def test_greater_or_equal_holds_at_the_threshold_and_greater_does_not():
    at_both_thresholds = window(logprobs_share=0.8, top_logprobs_mean=3)
    assert not detector().score(at_both_thresholds, requests_seen=30).flagged
    assert detector().score(window(logprobs_share=0.8, top_logprobs_mean=3.01), requests_seen=30).flagged


def test_a_fired_rule_is_a_reason_named_for_it_with_the_values_in_its_detail():
    verdict = detector().score(window(logprobs_share=0.9, top_logprobs_mean=5), requests_seen=30)
    (reason,) = verdict.reasons
    assert isinstance(reason, Reason)
    assert reason.name == "soft_labels"
    assert (reason.feature, reason.value) == ("logprobs_share", 0.9)
    assert reason.detail.startswith("soft labels in bulk: ")
    assert "logprobs_share=0.9 (logprobs_share >= 0.8)" in reason.detail
    assert "top_logprobs_mean=5 (top_logprobs_mean > 3)" in reason.detail


def test_every_firing_rule_is_its_own_reason_and_quiet_rules_add_none():
    spec = {
        "soft_labels": LOGPROBS_SPEC["soft_labels"],
        "reasoning": {"min_requests": 10, "when": ["reasoning_share >= 0.5"]},
        "multi_choice": {"min_requests": 10, "when": ["multi_choice_share >= 0.5"]},
    }
    features = window(logprobs_share=0.9, top_logprobs_mean=5, reasoning_share=0.7, multi_choice_share=0.1)
    verdict = detector(spec).score(features, requests_seen=50)
    assert [reason.name for reason in verdict.reasons] == ["soft_labels", "reasoning"]
    assert verdict.reasons[1].detail == "reasoning_share=0.7 (reasoning_share >= 0.5)"


def test_volume_and_timing_alone_fire_no_default_rule():
    machine_like = window(requests_last_hour=5000, interarrival_cv=0.01, hours_active_24=24, rate_limited_share=0.5)
    verdict = RulesDetector(parse_rules(DEFAULT_RULES)).score(machine_like, requests_seen=10_000)
    assert not verdict.flagged


SAMPLED_QA = dict(single_turn_share=1.0, standalone_share=1.0, unique_prompt_share=1.0, template_diversity=0.9,
                  answer_to_variable_ratio=8.0, completion_tokens_log_mean=6.6, max_tokens_log_mean=7.6,
                  greedy_share=0.0)


def test_the_capability_harvest_at_temperature_0_fires_only_past_any_evaluations_size():
    greedy = window(**{**SAMPLED_QA, "greedy_share": 1.0}, public_eval_share=0.0)
    rules = RulesDetector(parse_rules(DEFAULT_RULES))
    assert not rules.score(greedy, requests_seen=999).flagged  # an evaluation of up to ~1,000 prompts
    assert [reason.name for reason in rules.score(greedy, requests_seen=1000).reasons] == \
        ["greedy_capability_harvest"]


# --- unknown features ---------------------------------------------------------------------

NAN = float("nan")
ANSWERS_SPEC = {
    "long_answers": {
        "min_requests": 30,
        "when": ["unique_prompt_share >= 0.9", "completion_tokens_log_mean >= 6", "greedy_share <= 0.5"],
    }
}


def test_an_unknown_condition_is_neither_met_nor_failed_and_the_rule_judges_on_the_rest():
    rules = detector(ANSWERS_SPEC)
    assert rules.score(window(unique_prompt_share=1.0, completion_tokens_log_mean=6.5, greedy_share=NAN), 30).flagged
    assert not rules.score(window(unique_prompt_share=0.5, completion_tokens_log_mean=6.5, greedy_share=NAN),
                           30).flagged


def test_a_rule_with_most_conditions_unknown_does_not_fire():
    rules = detector(ANSWERS_SPEC)
    features = window(unique_prompt_share=1.0, completion_tokens_log_mean=NAN, max_tokens_log_mean=NAN,
                      greedy_share=NAN)
    assert not rules.score(features, 30).flagged


def test_an_unknown_answer_length_is_read_from_the_max_tokens_asked_and_the_reason_says_so():
    rules = detector(ANSWERS_SPEC)
    asked_long = window(unique_prompt_share=1.0, completion_tokens_log_mean=NAN, max_tokens_log_mean=7.0)
    verdict = rules.score(asked_long, 30)
    assert verdict.flagged
    assert "completion_tokens_log_mean unknown, max_tokens_log_mean=7 in its place" in verdict.reasons[0].detail
    asked_short = window(unique_prompt_share=1.0, completion_tokens_log_mean=NAN, max_tokens_log_mean=4.0)
    assert not rules.score(asked_short, 30).flagged
