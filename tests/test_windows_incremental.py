"""The template features, kept incrementally, are the very floats a full pass over the window
gives: the pass over every slot at each evaluation (the code before) is the reference here,
run after every request of simulated traffic whose prompts share template lines, in windows
small enough that lines start and stop recurring as requests leave."""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter

import pytest

from detectors.windows import FEATURE_NAMES, MIN_KNOWN, KeyWindow
from service.keys import KeyHasher
from service.offline.scoring import record_features
from traffic.format import read_traffic
from traffic.scenarios import generate

SALT = b"test-salt"
TEMPLATE = slice(FEATURE_NAMES.index("template_share"), FEATURE_NAMES.index("answer_to_variable_ratio") + 1)
# Templated automation, harvests with fixed wrappers and free-form chat, a few keys each.
MIX = {"rag_service": 2, "batch_document_job": 2, "document_pipeline": 2, "evol_instruct": 1, "reward_grading": 1,
       "topic_sweep": 1, "support_chatbot": 1, "casual_user": 3, "agent_trajectory_harvester": 1}
HARVESTS = {name: {"rate_per_s": (0.1, 0.2)} for name in MIX if name in (
    "evol_instruct", "reward_grading", "topic_sweep", "agent_trajectory_harvester")}


def template_features_from_scratch(window: KeyWindow) -> list[float]:
    """The full pass over the window, as windows.py computed it before it kept them running."""
    segment_counts = Counter(digest for slot in window.slots for digest, _ in slot.segments)
    template_chars = log_variable = answered_variable = answered_completion = 0.0
    answered = 0
    for slot in window.slots:
        if slot.user_chars == 0 and slot.prompt_tokens > 0:
            variable_tokens = float(slot.prompt_tokens)
        else:
            template = min(sum(chars for digest, chars in slot.segments if segment_counts[digest] >= 2),
                           slot.user_chars)
            template_chars += template
            variable_tokens = max(slot.user_chars - template, slot.user_chars / 2) / 4
        log_variable += math.log1p(variable_tokens)
        if slot.completion_tokens >= 0:
            answered += 1
            answered_variable += max(variable_tokens, 1.0)
            answered_completion += slot.completion_tokens
    user_chars = sum(slot.user_chars for slot in window.slots)
    return [
        template_chars / user_chars if user_chars > 0 else 0.0,
        log_variable / len(window.slots),
        answered_completion / answered_variable if answered >= MIN_KNOWN else math.nan,
    ]


def identical(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def events():
    lines = io.StringIO("\n".join(json.dumps(record) for record in generate(MIX, 2.0, 11, params=HARVESTS)))
    return [record_features(record, SALT) for record in read_traffic(lines, KeyHasher(SALT).key_id)]


def test_the_sample_has_template_lines_that_recur_and_stop_recurring(events):
    recurring = Counter(digest for event in events for digest in event.segments.split(",") if digest)
    assert any(count >= 2 for count in recurring.values())


@pytest.mark.parametrize("size", [200, 30, 7, 2])
def test_template_features_equal_a_full_pass_after_every_request(events, size):
    windows: dict[str, KeyWindow] = {}
    compared = 0
    for event in events:
        window = windows.setdefault(event.key_id, KeyWindow(size))
        window.update(event)
        assert identical(window.features()[TEMPLATE], template_features_from_scratch(window))
        compared += 1
    assert compared == len(events) > 5000
    assert any(window.features()[TEMPLATE][0] > 0 for window in windows.values())


def test_template_features_equal_a_full_pass_when_evaluated_now_and_then(events):
    """Lines that start and stop recurring between two evaluations are caught up on at the next."""
    rng = random.Random(3)
    windows: dict[str, KeyWindow] = {}
    for event in events:
        window = windows.setdefault(event.key_id, KeyWindow(20))
        window.update(event)
        if rng.random() < 0.05:
            assert identical(window.features()[TEMPLATE], template_features_from_scratch(window))
    for window in windows.values():
        assert identical(window.features()[TEMPLATE], template_features_from_scratch(window))


def test_a_window_restored_mid_stream_keeps_giving_identical_features(events):
    rng = random.Random(5)
    live: dict[str, KeyWindow] = {}
    restored: dict[str, KeyWindow] = {}
    for event in events:
        window = live.setdefault(event.key_id, KeyWindow(30))
        copy = restored.setdefault(event.key_id, KeyWindow(30))
        window.update(event)
        copy.update(event)
        if rng.random() < 0.1:
            restored[event.key_id] = copy = KeyWindow.from_dict(json.loads(json.dumps(copy.to_dict())))
        assert identical(copy.features(), window.features())
