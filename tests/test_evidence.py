"""Graded evidence: every indicator ramps from an honest-typical to a harvest-typical value,
a flag needs harvested output, evidence from at least three groups and enough in total,
and the reason lists each contributing indicator with the key's value and the honest one."""

from __future__ import annotations

import math

import pytest

from detectors.evidence import INDICATORS, EvidenceDetector, group_scores, ramp
from detectors.windows import FEATURE_NAMES

NAN = float("nan")
DETECTOR = EvidenceDetector()

# A scripted key: distinct standalone tasks, a fixed template, machine timing, 2,000 tasks so far.
BREADTH = {"standalone_share": 1.0, "unique_prompt_share": 1.0, "single_turn_share": 1.0}
AUTOMATED = {"template_share": 0.4, "interarrival_cv": 0.3, "hours_active_24": 24, "requests_last_hour": 900}
SCALE = {"distinct_tasks_log": math.log1p(2000)}
SCRIPTED = {**BREADTH, **AUTOMATED, **SCALE}
# The answers it collects: long against the new text of each prompt, sampled.
LONG_ANSWERS = {"answer_to_variable_ratio": 8.0, "completion_tokens_log_mean": 6.3, "max_tokens_log_mean": 6.2,
                    "variable_tokens_log_mean": 4.0, "greedy_share": 0.0}


def window(**values: float) -> list[float]:
    """Window features: the typical honest chat user, with `values` over it."""
    base = {"standalone_share": 0.5, "unique_prompt_share": 0.7, "interarrival_cv": 2.5, "hours_active_24": 4,
                "requests_last_hour": 10, "answer_to_variable_ratio": 1.0, "completion_tokens_log_mean": 5.0,
                "max_tokens_log_mean": NAN, "variable_tokens_log_mean": 3.5, "greedy_share": NAN}
    unknown = set(values) - set(FEATURE_NAMES)
    assert not unknown, unknown
    merged = {**base, **values}
    return [float(merged.get(name, 0.0)) for name in FEATURE_NAMES]


def verdict(requests_seen: int = 200, **values: float):
    return DETECTOR.score(window(**values), requests_seen)


def test_ramps_run_from_the_honest_to_the_harvest_value_in_either_direction():
    assert (ramp(1.5, 1.5, 6.0), ramp(3.75, 1.5, 6.0), ramp(9.0, 1.5, 6.0)) == (0.0, 0.5, 1.0)
    assert (ramp(2.0, 1.6, 0.6), ramp(0.6, 1.6, 0.6)) == (0.0, 1.0)


def test_every_indicator_reads_a_window_feature():
    assert {indicator.feature for indicator in INDICATORS} <= set(FEATURE_NAMES)


def test_a_capability_harvest_is_flagged_with_every_contributing_indicator_in_its_reason():
    result = verdict(**SCRIPTED, **LONG_ANSWERS)
    assert result.flagged
    (reason,) = result.reasons
    assert reason.name == "capability_harvest" and reason.feature == "answer_to_variable_ratio"
    assert reason.benign_range == (0.0, 1.5)
    for name in ("standalone_tasks", "long_answers", "tasks_accumulated", "machine_timing"):
        assert name in reason.detail
    assert "long_answers 8 (honest <= 1.5, harvest 6" in reason.detail


def test_nothing_flags_before_min_requests():
    assert not verdict(requests_seen=25, **SCRIPTED, **LONG_ANSWERS).flagged


@pytest.mark.parametrize("harvest", [
    {"reasoning_share": 1.0, "answer_to_variable_ratio": 4.0}, {"logprobs_generated_share": 1.0}, {"task_generation_share": 0.8},
    {"rewrite_share": 0.7}, {"mirrored_turn_share": 0.5},
], ids=["reasoning", "soft-labels", "self-instruct", "evol-instruct", "model-written-turns"])
def test_each_kind_of_harvested_output_flags_a_scripted_key(harvest):
    assert verdict(**SCRIPTED, **harvest).flagged


def test_harvested_output_without_scale_or_automation_is_a_person_not_a_harvest():
    person = verdict(**BREADTH, **LONG_ANSWERS, reasoning_share=0.7)
    assert not person.flagged


def test_scripted_breadth_scale_and_automation_without_harvested_output_is_honest_automation():
    """Summarising, translating, extracting: long new text in, shorter text out."""
    pipeline = verdict(**SCRIPTED, answer_to_variable_ratio=0.4, completion_tokens_log_mean=5.5,
                       variable_tokens_log_mean=7.0)
    assert not pipeline.flagged


def test_soft_labels_on_one_token_classifications_are_no_evidence():
    """An intent classifier asking top_logprobs 5 on every request: logprobs on labels only."""
    classifier = verdict(**SCRIPTED, logprobs_share=1.0, top_logprobs_mean=5, logprobs_generated_share=0.0,
                         completion_tokens_log_mean=1.0, answer_to_variable_ratio=0.1)
    assert not classifier.flagged


def test_max_tokens_is_never_a_gate_a_harvest_asking_512_is_caught_from_the_rest():
    assert verdict(**SCRIPTED, **{**LONG_ANSWERS, "max_tokens_log_mean": math.log1p(512)}).flagged


def test_without_usage_the_answer_length_asked_stands_in_and_the_reason_says_so():
    unknown = {**LONG_ANSWERS, "answer_to_variable_ratio": NAN, "completion_tokens_log_mean": NAN,
               "max_tokens_log_mean": math.log1p(4096)}
    result = verdict(**SCRIPTED, **unknown)
    assert result.flagged
    assert "no usage: max_tokens_log_mean" in result.reasons[0].detail
    assert not verdict(**SCRIPTED, **{**unknown, "max_tokens_log_mean": NAN}).flagged


def test_a_judgement_alone_is_not_enough_harvested_output():
    judge = verdict(**SCRIPTED, judgement_share=1.0)
    assert not judge.flagged
    assert verdict(**SCRIPTED, judgement_share=1.0, reasoning_share=0.8, answer_to_variable_ratio=4.0).flagged


def test_public_benchmark_questions_quarter_the_long_answer_evidence_and_temperature_0_halves_it():
    plain = group_scores_of(**SCRIPTED, **LONG_ANSWERS)
    benchmark = group_scores_of(**SCRIPTED, **LONG_ANSWERS, public_eval_share=0.9)
    assert benchmark["harvested output"] == pytest.approx(plain["harvested output"] / 4)
    greedy = group_scores_of(**SCRIPTED, **{**LONG_ANSWERS, "greedy_share": 1.0})
    assert greedy["harvested output"] == pytest.approx(plain["harvested output"] / 2)
    assert not verdict(**SCRIPTED, **LONG_ANSWERS, public_eval_share=0.9).flagged


def group_scores_of(**values: float) -> dict[str, float]:
    from detectors.evidence import _contributions

    return group_scores(_contributions(window(**values)))


def test_reasoning_asked_while_judging_long_text_is_no_trace_harvest():
    """CoT judges and prompt optimisers ask for reasoning over long inputs, answering shorter."""
    assert not verdict(**SCRIPTED, reasoning_share=1.0, answer_to_variable_ratio=0.8).flagged


def test_an_agent_loop_resending_its_task_still_counts_its_distinct_tasks():
    loop = {**SCRIPTED, "unique_prompt_share": 0.3, "tool_results_share": 0.8, "tool_use_share": 1.0}
    assert group_scores_of(**loop)["breadth"] == 1.0
    assert verdict(**loop, toolset_diversity=0.5).flagged
    assert not verdict(**loop, toolset_diversity=0.02).flagged  # an agent product: its own tools


def test_several_samples_per_task_are_weak_evidence_never_enough_alone():
    """n > 1 is common in honest pipelines (self-consistency, candidate generation)."""
    assert not verdict(**SCRIPTED, multi_choice_share=1.0).flagged


def test_fewer_distinct_tasks_than_a_harvest_sends_is_an_evaluation_or_a_dev_set():
    """Everything else says harvest, but 120 questions with long answers are as often an eval."""
    assert not verdict(**{**SCRIPTED, "distinct_tasks_log": math.log1p(120)}, **LONG_ANSWERS).flagged
    flagged = verdict(**{**SCRIPTED, "distinct_tasks_log": math.log1p(400)}, **LONG_ANSWERS)
    assert flagged.flagged and "over about 400 distinct tasks" in flagged.reasons[0].detail


def test_soft_labels_on_documents_are_not_substantial_at_any_scale_but_on_short_questions_they_are():
    """A summarising pipeline asking logprobs over 5,000 chunks is a job; the same flag over
    5,000 short questions is a soft-label harvest."""
    common = {**SCRIPTED, "distinct_tasks_log": math.log1p(5000), "logprobs_generated_share": 1.0,
              "answer_to_variable_ratio": 0.4, "completion_tokens_log_mean": 5.0}
    assert not verdict(**{**common, "variable_tokens_log_mean": math.log1p(800)}).flagged
    assert verdict(**{**common, "variable_tokens_log_mean": math.log1p(60)}).flagged


def test_turns_the_model_wrote_are_standalone_tasks_however_long_the_history():
    dialogue = {**SCRIPTED, "standalone_share": 0.2, "mirrored_turn_share": 0.9}
    result = verdict(**dialogue)
    assert result.flagged and result.reasons[0].name == "synthetic_dialogue"
    assert "standalone_tasks 1 (" in result.reasons[0].detail
    conversation = {**SCRIPTED, "standalone_share": 0.2, "distinct_tasks_log": math.log1p(200)}
    assert not verdict(**conversation, **LONG_ANSWERS).flagged  # a person's conversations, however scripted


def test_a_product_whose_users_repeat_popular_requests_lacks_breadth_and_is_not_flagged():
    """A content-writing product: long answers, volume and a fixed system prompt, but a
    quarter of its users' requests repeat others'; a harvest sends each task once."""
    product = {**SCRIPTED, "unique_prompt_share": 0.74, "distinct_tasks_log": math.log1p(500)}
    assert not verdict(**product, **LONG_ANSWERS).flagged
    assert verdict(**{**product, "unique_prompt_share": 0.97}, **LONG_ANSWERS).flagged
