"""What a request's shape tells the windows: template lines against new text, tool loops,
tool sets, turns the model wrote, judgements and rewritten instructions; and the lifetime
sketch of distinct tasks. Hashes and counts only, read by the one features function."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest

from detectors.features import from_fields, request_features, to_fields
from detectors.request_shape import asks_for_judgement, asks_for_rewrite, parse_segments
from detectors.task_sketch import TaskSketch
from detectors.windows import KeyWindow

SALT = b"shape-salt"
WRAPPER = "Summarise the following document for a busy reader, in three sentences."


def features(body: dict, ts: float = 1_700_000_000.0, completion_tokens: int | None = 100):
    usage = None if completion_tokens is None else {"prompt_tokens": 50, "completion_tokens": completion_tokens}
    return request_features(ts=ts, key_id="k", path="/v1/chat/completions", body=body, headers={},
                            client_ip="192.0.2.1", status=200, latency_ms=10.0, usage=usage, salt=SALT)


def chat(*messages: tuple[str, str], **params) -> dict:
    return {"model": "m", "messages": [{"role": role, "content": text} for role, text in messages], **params}


def test_the_new_fields_round_trip_through_a_stream_entry():
    f = features(chat(("user", f"{WRAPPER}\nSome document text that is long enough."),
                      ("assistant", "An answer."), ("tool", "42"), ("user", "Next please, thank you kindly"),
                      tools=[{"type": "function", "function": {"name": "calc"}}]))
    assert from_fields(to_fields(f)) == f
    assert f.tool_results == 1 and f.toolset and f.assistant_hash


def test_segments_are_the_longest_lines_as_hash_and_length():
    text = "\n".join([WRAPPER, "short", "x" * 40] + [f"line number {i} of the document body" for i in range(12)])
    pairs = parse_segments(features(chat(("user", text))).segments)
    assert len(pairs) == 8 and max(chars for _, chars in pairs) == len(WRAPPER)


def test_a_tool_set_is_named_by_its_sorted_tool_names():
    a = features(chat(("user", "hi there friend"), tools=[{"type": "function", "function": {"name": n}} for n in "ab"]))
    b = features(chat(("user", "hi there friend"), tools=[{"type": "function", "function": {"name": n}} for n in "ba"]))
    c = features(chat(("user", "hi there friend"), tools=[{"type": "function", "function": {"name": "c"}}]))
    assert a.toolset == b.toolset != c.toolset
    assert features(chat(("user", "hi there friend"))).toolset == ""


@pytest.mark.parametrize("text", [
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant.",
    "Rate the following answer on a scale of 1 to 10.",
    "[Response A] ... [Response B] ... Which response is better? Output [[A]] or [[B]].",
])
def test_grading_requests_are_marked(text):
    assert asks_for_judgement(text.lower())


@pytest.mark.parametrize("text", ["What is a good score in golf?", "Rate my chances of rain tomorrow"])
def test_ordinary_questions_about_scores_are_not_grading(text):
    assert not asks_for_judgement(text.lower())


def test_instruction_rewriting_is_marked_and_ordinary_rewriting_is_not():
    assert asks_for_rewrite("rewrite a given prompt into a more complex version.\n#the given prompt#: x")
    assert asks_for_rewrite("draw inspiration from the #given prompt# to create a brand new prompt.")
    assert not asks_for_rewrite("rewrite this email to be more polite")


def window_of(bodies, completion_tokens=100) -> KeyWindow:
    window = KeyWindow()
    for i, body in enumerate(bodies):
        window.update(features(body, ts=1_700_000_000.0 + i, completion_tokens=completion_tokens))
    return window


def test_a_fixed_instruction_is_template_and_the_documents_are_new_text():
    docs = [chat(("user", f"{WRAPPER}\n" + f"Document {i}: " + "word " * (200 + i))) for i in range(30)]
    values = window_of(docs, completion_tokens=60).feature_map()
    assert 0.05 < values["template_share"] < 0.2
    assert values["answer_to_variable_ratio"] < 0.5  # a summary: shorter than what it summarises


def test_short_tasks_in_a_fixed_wrapper_have_long_answers_against_their_new_text():
    tasks = [chat(("user", f"{WRAPPER}\nTask {i}: name a colour.")) for i in range(30)]
    values = window_of(tasks, completion_tokens=600).feature_map()
    assert values["template_share"] > 0.6
    assert values["answer_to_variable_ratio"] > 20


def test_a_user_turn_the_model_wrote_in_another_conversation_is_mirrored():
    bodies = []
    for i in range(20):
        said = f"Reply number {i} written by the model in role A"
        bodies.append(chat(("user", f"Opening {i} for role A, please"), ("assistant", said), ("user", "go on")))
        bodies.append(chat(("user", said)))
    values = window_of(bodies).feature_map()
    assert values["mirrored_turn_share"] >= 0.45
    assert window_of([chat(("user", f"Question {i}?"), ("assistant", f"Answer {i}."), ("user", "Thanks, more?"))
                      for i in range(20)]).feature_map()["mirrored_turn_share"] == 0


def test_logprobs_on_labels_are_not_soft_labels_on_generated_text():
    body = chat(("user", "Classify: I want a refund"), logprobs=True, top_logprobs=5, max_tokens=2)
    assert window_of([body] * 10, completion_tokens=1).feature_map()["logprobs_generated_share"] == 0
    assert window_of([body] * 10, completion_tokens=300).feature_map()["logprobs_generated_share"] == 1
    unknown = {**body, "max_tokens": 512}
    assert window_of([unknown] * 10, completion_tokens=None).feature_map()["logprobs_generated_share"] == 1


def test_the_task_sketch_counts_distinct_tasks_exactly_when_few_and_within_15_percent_when_many():
    sketch = TaskSketch()
    for i in range(100):
        sketch.add(hashlib.sha256(str(i % 50).encode()).hexdigest()[:16])
    assert sketch.estimate() == 50
    for i in range(20_000):
        sketch.add(hashlib.sha256(f"t{i}".encode()).hexdigest()[:16])
    assert sketch.estimate() == pytest.approx(20_050, rel=0.15)
    assert TaskSketch.from_list(sketch.to_list()).values == sketch.values


def test_the_window_checkpoint_keeps_the_new_features_and_the_sketch():
    bodies = [chat(("user", f"{WRAPPER}\nTask {i}: name a colour."), tools=[{"type": "function",
                    "function": {"name": f"t{i % 3}"}}]) for i in range(40)]
    window = window_of(bodies)
    restored = KeyWindow.from_dict(window.to_dict())
    assert [v if not math.isnan(v) else None for v in restored.features()] == \
        [v if not math.isnan(v) else None for v in window.features()]


def test_a_line_recorded_without_the_user_turn_length_reads_its_whole_prompt_as_new_text():
    """Older recordings (features mode) lack user_chars: never read it as an empty task."""
    window = KeyWindow()
    for i in range(20):
        event = features(chat(("user", f"Task {i}: name a colour please.")), ts=1_700_000_000.0 + i,
                         completion_tokens=400)
        window.update(dataclasses.replace(event, user_chars=0, segments="", prompt_tokens=100))
    assert window.feature_map()["answer_to_variable_ratio"] == pytest.approx(4.0)


def test_a_key_re_asking_a_small_question_set_under_new_instructions_counts_its_lines_not_its_prompts():
    """A prompt optimiser: 40 dev questions under 30 proposed instructions, with demos drawn from
    the same set, makes 1,200 distinct prompts out of about 70 distinct lines."""
    questions = [f"Question: what would happen to question number {q} under heavy load?" for q in range(40)]
    bodies = []
    for trial in range(30):
        instruction = f"Instruction {trial}: answer concisely and cite the relevant principle first."
        for q, question in enumerate(questions):
            demo = questions[(q + trial) % 40]
            bodies.append(chat(("user", f"{instruction}\n{demo}\nAnswer: the usual answer.\n{question}")))
    window = window_of(bodies)
    assert window.tasks.estimate() > 900
    assert math.expm1(window.feature_map()["distinct_tasks_log"]) < 110


def test_a_harvest_of_new_questions_counts_every_question_and_a_short_task_counts_as_its_prompt():
    wrapper = "Answer the following question in detail, with examples."
    long_tasks = window_of([chat(("user", f"{wrapper}\nHow does mechanism number {i} work in practice?"))
                            for i in range(120)])
    short_tasks = window_of([chat(("user", f"{wrapper}\nWhy {i}?")) for i in range(120)])
    for window in (long_tasks, short_tasks):
        assert math.expm1(window.feature_map()["distinct_tasks_log"]) == pytest.approx(120)


def test_an_older_checkpoint_without_a_line_sketch_reads_its_prompt_sketch():
    window = window_of([chat(("user", f"{WRAPPER}\nTask {i}: name a colour.")) for i in range(40)])
    stored = window.to_dict()
    del stored["lines"]
    assert KeyWindow.from_dict(stored).lines.values == window.tasks.values
