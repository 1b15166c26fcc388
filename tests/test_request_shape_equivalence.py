"""The fast request-shape markers and segments give exactly what the plain versions gave.

`segments`, `asks_for_judgement` and `asks_for_rewrite` skip work (splitting lines into
words, running a regex at every character) that cannot change their result. The plain
versions are kept here as the reference, and both are run on simulated prompts and on
text built to hit the edge cases: whitespace of every kind, anchors at the very start and
past the 20,000-character cut, literals on every line.
"""

from __future__ import annotations

import random
import zlib

import pytest

from detectors import request_shape
from detectors.features import last_user_text
from detectors.request_shape import (
    MAX_SEGMENTS,
    MIN_SEGMENT_CHARS,
    asks_for_judgement,
    asks_for_rewrite,
    segments,
)
from traffic.scenarios import SCENARIOS, generate


def reference_segments(text: str) -> str:
    if not text:
        return ""
    lines = [line for line in text.split("\n") if len(line) >= MIN_SEGMENT_CHARS]
    if len(lines) > MAX_SEGMENTS:
        lines = sorted(lines, key=len, reverse=True)[:MAX_SEGMENTS]
    return ",".join(f"{zlib.crc32(' '.join(line.lower().split()).encode('utf-8', 'surrogatepass')):x}:{len(line)}"
                    for line in lines)


def reference_judgement(lowered: str) -> bool:
    text = lowered[:20_000]
    for anchors, _, pattern in request_shape._JUDGE_PATTERNS:
        if any(anchor in text for anchor in anchors) and pattern.search(text):
            return True
    for first, second in request_shape._PAIRS:
        at = text.find(first)
        if at >= 0 and 0 <= text.find(second, at + len(first)) - at <= request_shape.PAIR_SPAN:
            return True
    return False


def reference_rewrite(lowered: str) -> bool:
    if not any(anchor in lowered for anchor in request_shape._REWRITE_ANCHORS):
        return False
    return request_shape._REWRITE.search(lowered, 0, 20_000) is not None


PHRASES = (
    "rate the response", "Score each answer from 1 to 10", "grade:the output", "generate", "accurate replies",
    "on a scale of 1 to 5", "on a scale from 0 - 10", "which response is better", "whether the assistant did better",
    "[[A]]", "rubric", "rubrics", "act as an impartial judge", "act as a judge", "response a", "response b",
    "assistant a", "assistant b", "rewrite the prompt to make it more complex", "#The Given Prompt#",
    "# created instruction #", "given instruction:", "rewritten prompt:", "create a brand new question",
    "make this question harder", "transform the instruction into a different one", "#", "##", "prompt", "question",
    "Make", "evolve", "rephrase", "complicate", "better", "scale", "judge", "answers", "replies.",
)
SPACES = (" ", "  ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\u00a0", "\u3000", "\u2009", "\n", "\n\n", ". ")
WORDS = ("the", "Task", "ÉCOLE", "straße", "İstanbul", "Σίσυφος", "数据", "\ud800", "x" * 30, "42")


def synthetic_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 40)):
            parts.append(rng.choice(PHRASES) if rng.random() < 0.5 else rng.choice(WORDS))
            parts.append(rng.choice(SPACES))
        text = "".join(parts)
        if rng.random() < 0.1:  # past the 20,000-character cut, or straddling it
            text = "y" * rng.randint(19_950, 20_010) + text
        if rng.random() < 0.05:  # a literal on every line: more than MAX_TRIES candidates
            text = "#make\n" * 200 + text
        texts.append(text)
    return texts


def simulated_texts() -> list[str]:
    mix = {name: 1 for name in SCENARIOS}
    texts = []
    for record in generate(mix, 1.0, 5):
        body = record.get("body") or {}
        texts.append(last_user_text(body))
        for message in body.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "system" and isinstance(message.get("content"), str):
                texts.append(message["content"])
    return texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return synthetic_texts(3000, seed=13) + simulated_texts()


def test_segments_equal_the_plain_version(texts):
    expected = [reference_segments(text) for text in texts]
    assert [segments(text) for text in texts] == expected
    assert [segments(text, text.lower()) for text in texts] == expected


def test_judgement_marker_equals_the_plain_search(texts):
    lowered = [text.lower() for text in texts]
    fast = [asks_for_judgement(text) for text in lowered]
    assert fast == [reference_judgement(text) for text in lowered]
    assert 0 < sum(fast) < len(fast)  # the sample holds both answers


def test_rewrite_marker_equals_the_plain_search(texts):
    lowered = [text.lower() for text in texts]
    fast = [asks_for_rewrite(text) for text in lowered]
    assert fast == [reference_rewrite(text) for text in lowered]
    assert 0 < sum(fast) < len(fast)


def test_a_match_past_the_cut_is_not_seen_and_one_before_it_is():
    before = "y" * 19_970 + " rewrite the prompt more"
    assert asks_for_rewrite(before) == reference_rewrite(before) is True
    after = "y" * 19_990 + " rewrite the prompt more"
    assert asks_for_rewrite(after) == reference_rewrite(after) is False


def test_many_candidate_positions_fall_back_to_one_search():
    text = "make a cake\n" * (request_shape.MAX_TRIES + 5) + "rewrite this instruction to be harder"
    assert asks_for_rewrite(text) is True
    text = "rate it\n" * (request_shape.MAX_TRIES + 5) + "rate the answers"
    assert asks_for_judgement(text) is True


def reference_parse_segments(packed: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for part in packed.split(",") if packed else ():
        digest, _, chars = part.partition(":")
        try:
            pairs.append((int(digest, 16), int(chars)))
        except ValueError:
            continue
    return tuple(pairs)


@pytest.mark.parametrize("packed", ["", "1a:40", "1a:40,ff:12", "zz:1,2b:30", "1a", "1a:", ":5", ",", "1a:40,,ff:12",
                                    " 1a : 40 ", "1_0:2", "-1:3"])
def test_parse_segments_equals_the_plain_version(packed):
    assert request_shape.parse_segments(packed) == reference_parse_segments(packed)


def test_parse_segments_reads_back_what_segments_wrote(texts):
    for text in texts[:500]:
        assert request_shape.parse_segments(segments(text)) == reference_parse_segments(segments(text))
