"""Per-key windows: the incremental features are what a from-scratch count over the last
`size` requests gives, the window and its checkpoint stay bounded, and a checkpoint
restores a window that behaves exactly like the one it was taken from."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics

import pytest

from detectors.features import RequestFeatures, request_features
from detectors.windows import FEATURE_NAMES, MIN_KNOWN, WINDOW_SIZE, KeyWindow
from tests.support.prompts import UNRELATED

SALT = b"test-salt"
START = 1_700_000_000.0

BASE = RequestFeatures(
    ts=START, key_id="k_test", path="/v1/chat/completions", prompt_chars=400, prompt_tokens=100,
    completion_tokens=300, message_count=1, system_hash="", user_hash="u0", template_fp=0x1234,
    template_head=1, model="gpt-4o-mini", max_tokens=512, temperature=0.7, top_p=-1.0, n=1,
    logprobs=False, top_logprobs=0, stream=False, has_tools=False, response_format="",
    reasoning_marker=False, reasoning_effort="", ip_prefix="ip0", ua_hash="ua0", status=200, latency_ms=800.0,
)


BASE_VALUE = {"completion_tokens": 300, "max_tokens": 512, "temperature": 0.7}


def event(**fields) -> RequestFeatures:
    return dataclasses.replace(BASE, **fields)


def random_event(rng: random.Random, ts: float) -> RequestFeatures:
    """A request whose every window-relevant field varies, repeats included."""
    return event(
        ts=ts,
        prompt_tokens=rng.randint(1, 4000),
        completion_tokens=-1 if rng.random() < 0.2 else rng.randint(0, 4000),  # -1: no usage
        message_count=rng.randint(1, 6),
        system_hash=rng.choice(["", "", "sys_a", "sys_b"]),
        user_hash=f"u{rng.randint(0, 400)}",
        template_fp=rng.getrandbits(64),
        template_head=rng.randint(0, 60),
        model=rng.choice(["gpt-4o-mini", "gpt-4o"]),
        max_tokens=rng.choice([0, 256, 1024, 4096]),
        temperature=rng.choice([-1.0, 0.0, 0.0, 0.7, 1.0]),
        top_p=rng.choice([-1.0, 0.9]),
        n=rng.choice([1, 1, 1, 3]),
        logprobs=rng.random() < 0.3,
        top_logprobs=rng.randint(0, 10),
        reasoning_marker=rng.random() < 0.4,
        ip_prefix=f"ip{rng.randint(0, 30)}",
        ua_hash=f"ua{rng.randint(0, 5)}",
        status=rng.choice([200, 200, 200, 400, 429, 500]),
    )


def random_events(count: int, seed: int = 7, start: float = START) -> list[RequestFeatures]:
    rng = random.Random(seed)
    events, ts = [], start
    for _ in range(count):
        ts += rng.expovariate(1 / 20.0)
        events.append(random_event(rng, ts))
    return events


def window_over(events, size: int = WINDOW_SIZE) -> KeyWindow:
    window = KeyWindow(size)
    for request in events:
        window.update(request)
    return window


def chat(text: str, **params) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 512, **params}


def features_of(body: dict, ts: float) -> RequestFeatures:
    return request_features(
        ts=ts, key_id="k_test", path="/v1/chat/completions", body=body,
        headers={"user-agent": "python-requests/2.31"}, client_ip="203.0.113.7", status=200,
        latency_ms=900.0, usage={"prompt_tokens": 60, "completion_tokens": 400}, salt=SALT,
    )


# --- incremental == from scratch --------------------------------------------------------


def _interarrival_cv(last: list[RequestFeatures]) -> float:
    gaps = [b.ts - a.ts for a, b in zip(last, last[1:])]
    return statistics.pstdev(gaps) / statistics.fmean(gaps)


FROM_SCRATCH = {
    "unique_prompt_share": lambda last: len({e.user_hash for e in last}) / len(last),
    "reasoning_share": lambda last: sum(e.reasoning_marker for e in last) / len(last),
    "logprobs_share": lambda last: sum(e.logprobs for e in last) / len(last),
    "completion_to_prompt_ratio": lambda last: (
        sum(e.completion_tokens for e in last if e.completion_tokens >= 0)
        / sum(e.prompt_tokens for e in last if e.completion_tokens >= 0)
    ),
    "completion_tokens_log_mean": lambda last: statistics.fmean(
        math.log1p(e.completion_tokens) for e in last if e.completion_tokens >= 0),
    "max_tokens_log_mean": lambda last: statistics.fmean(math.log1p(e.max_tokens) for e in last if e.max_tokens > 0),
    "interarrival_cv": _interarrival_cv,
    "single_turn_share": lambda last: sum(
        e.message_count == 1 or (e.message_count == 2 and e.system_hash != "") for e in last
    ) / len(last),
    "greedy_share": lambda last: sum(e.temperature == 0.0 for e in last) / sum(e.temperature >= 0 for e in last),
    "template_diversity": lambda last: len({e.template_head for e in last}) / len(last),
    "sampling_spread": lambda last: len({(e.model, e.temperature, e.top_p, e.max_tokens) for e in last}) / len(last),
    "ip_prefixes": lambda last: len({e.ip_prefix for e in last}),
    "user_agents": lambda last: len({e.ua_hash for e in last}),
    "error_rate": lambda last: sum(e.status >= 400 and e.status != 429 for e in last) / len(last),
    "rate_limited_share": lambda last: sum(e.status == 429 for e in last) / len(last),
    "prompt_tokens_log_mean": lambda last: statistics.fmean(math.log1p(e.prompt_tokens) for e in last),
    "prompt_length_cv": lambda last: (
        statistics.pstdev([e.prompt_tokens for e in last]) / statistics.fmean(e.prompt_tokens for e in last)
    ),
}


@pytest.fixture(scope="module")
def thousand_events() -> list[RequestFeatures]:
    return random_events(1000)


@pytest.mark.parametrize("name", sorted(FROM_SCRATCH))
def test_incremental_feature_equals_a_recount_over_the_last_200_requests(name, thousand_events):
    window = window_over(thousand_events)
    expected = FROM_SCRATCH[name](thousand_events[-WINDOW_SIZE:])
    assert window.feature_map()[name] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("field", "absent", "features"), [
    ("completion_tokens", -1, ("completion_tokens_log_mean", "completion_to_prompt_ratio")),
    ("max_tokens", 0, ("max_tokens_log_mean",)),
    ("temperature", -1.0, ("greedy_share",)),
])
def test_a_feature_too_few_requests_carried_is_unknown_not_zero(field, absent, features):
    window = KeyWindow()
    for i in range(50):
        window.update(event(ts=START + i, user_hash=f"u{i}", **{field: absent if i >= MIN_KNOWN - 1 else BASE_VALUE[field]}))
    values = window.feature_map()
    assert all(math.isnan(values[name]) for name in features)
    assert not math.isnan(values["unique_prompt_share"])


@pytest.mark.parametrize("field", ["completion_tokens", "max_tokens", "temperature"])
def test_a_feature_is_read_over_the_requests_that_carried_its_field(field):
    absent = {"completion_tokens": -1, "max_tokens": 0, "temperature": -1.0}[field]
    mixed, full = KeyWindow(), KeyWindow()
    for i in range(60):
        full.update(event(ts=START + i, user_hash=f"u{i}"))
        mixed.update(event(ts=START + i, user_hash=f"u{i}", **({field: absent} if i % 3 else {})))
    for name in ("completion_tokens_log_mean", "completion_to_prompt_ratio", "max_tokens_log_mean", "greedy_share"):
        assert mixed.feature_map()[name] == pytest.approx(full.feature_map()[name])


def test_interarrival_cv_stays_accurate_after_a_long_idle_gap_leaves_the_window():
    """A script that paused for a month and then runs like clockwork is machine-regular."""
    rng = random.Random(3)
    events, ts = [], START
    for _ in range(5):
        ts += 1.0
        events.append(event(ts=ts))
    ts += 30 * 86400.0
    for _ in range(2 * WINDOW_SIZE):
        ts += 0.05 * (1 + 0.01 * rng.random())
        events.append(event(ts=ts))
    window = window_over(events)
    expected = _interarrival_cv(events[-WINDOW_SIZE:])
    assert window.feature_map()["interarrival_cv"] == pytest.approx(expected, rel=1e-3)


def test_a_one_request_window_has_no_interarrival_gaps():
    window = window_over(random_events(50), size=1)
    assert window.feature_map()["interarrival_cv"] == 1.0


def test_an_empty_window_reads_all_zeros():
    assert KeyWindow().features() == [0.0] * len(FEATURE_NAMES)


@pytest.mark.parametrize("size", [1, 7, WINDOW_SIZE])
def test_the_window_never_holds_more_than_size_requests(size):
    window = KeyWindow(size)
    for count, request in enumerate(random_events(3 * size + 5), start=1):
        window.update(request)
        assert len(window.slots) == min(count, size)
    assert window.requests_seen == 3 * size + 5


def test_distinct_counts_shrink_when_requests_leave_the_window():
    varied = [
        event(ts=START + i, user_hash=f"u{i}", template_head=i, ip_prefix=f"ip{i}", ua_hash=f"ua{i}", max_tokens=i)
        for i in range(WINDOW_SIZE)
    ]
    uniform = [event(ts=START + WINDOW_SIZE + i) for i in range(WINDOW_SIZE)]
    window = window_over(varied)
    assert window.feature_map()["ip_prefixes"] == WINDOW_SIZE
    for request in uniform:
        window.update(request)
    features = window.feature_map()
    assert features["unique_prompt_share"] == 1 / WINDOW_SIZE
    assert features["template_diversity"] == 1 / WINDOW_SIZE
    assert features["sampling_spread"] == 1 / WINDOW_SIZE
    assert (features["ip_prefixes"], features["user_agents"]) == (1.0, 1.0)


# --- near duplicates ----------------------------------------------------------------------

TRAIN_QUESTION = (
    "Question {n}: A train leaves at {h}:{m:02d} travelling at {speed} km/h. How far has it gone by {h2}:{m:02d}? "
    "Give the answer in kilometres and explain briefly."
)
BIOGRAPHY = (
    "Write a short biography of {name} for a school newsletter, in about {words} words, "
    "mentioning where they were born and what they are remembered for."
)
PEOPLE = ["Marie Curie", "Nelson Mandela", "Ada Lovelace", "Alan Turing", "Frida Kahlo", "Isaac Newton",
          "Rosalind Franklin", "Mahatma Gandhi", "Charles Darwin", "Grace Hopper"]


def test_templated_prompts_with_other_fillers_are_near_duplicates():
    prompts = [TRAIN_QUESTION.format(n=17 + 13 * i, h=6 + i % 12, m=(7 * i) % 60, speed=60 + i, h2=8 + i % 12)
               for i in range(20)]
    prompts += [BIOGRAPHY.format(name=PEOPLE[i % len(PEOPLE)], words=100 + 10 * i) for i in range(20)]
    window = window_over(features_of(chat(prompt), START + i) for i, prompt in enumerate(prompts))
    features = window.feature_map()
    assert features["unique_prompt_share"] == 1.0
    # All but the first request of each template share a band with an earlier one.
    assert features["near_duplicate_share"] >= 38 / 40


def test_unrelated_prompts_are_not_near_duplicates():
    window = window_over(features_of(chat(prompt), START + i) for i, prompt in enumerate(UNRELATED))
    assert window.feature_map()["near_duplicate_share"] <= 1 / len(UNRELATED)


# --- time rings ---------------------------------------------------------------------------


def test_requests_last_hour_counts_only_the_last_60_minutes():
    now = START + 7200.0
    old = [now - 3 * 3600, now - 2 * 3600, now - 90 * 60, now - 61 * 60]
    recent = [now - 59 * 60, now - 30 * 60, now - 10 * 60, now - 1, now]
    window = window_over(event(ts=ts) for ts in old + recent)
    assert window.feature_map()["requests_last_hour"] == len(recent)


def test_requests_last_hour_forgets_a_burst_once_an_hour_has_passed():
    burst = [event(ts=START + i) for i in range(150)]
    window = window_over(burst + [event(ts=START + 150 + 2 * 3600)])
    assert window.feature_map()["requests_last_hour"] == 1.0


def test_hours_active_24_counts_distinct_hours_of_the_last_day():
    day_start = 3600.0 * (int(START // 3600) + 30)
    stale = [day_start - 26 * 3600, day_start - 25 * 3600]
    today = [day_start + h * 3600 + minute * 60 for h in (0, 1, 5, 9) for minute in (0, 20, 40)]
    window = window_over(event(ts=ts) for ts in stale + today)
    assert window.feature_map()["hours_active_24"] == 4.0


# --- checkpoints --------------------------------------------------------------------------


def restored(window: KeyWindow) -> KeyWindow:
    return KeyWindow.from_dict(json.loads(json.dumps(window.to_dict())))


def test_a_restored_window_has_identical_features():
    window = window_over(random_events(1000))
    assert restored(window).features() == window.features()


def test_a_restored_window_behaves_identically_after_further_updates():
    events = random_events(1300)
    window = window_over(events[:1000])
    copy = restored(window)
    for request in events[1000:]:
        window.update(request)
        copy.update(request)
        assert copy.features() == window.features()
    assert copy.to_dict() == window.to_dict()


def test_to_dict_is_a_snapshot_that_later_updates_do_not_change():
    events = random_events(300)
    window = window_over(events[:250])
    checkpoint = window.to_dict()
    frozen = json.loads(json.dumps(checkpoint))
    for request in events[250:]:
        window.update(request)
    assert checkpoint == frozen


def test_checkpoint_size_stays_bounded_however_many_requests_a_key_sends():
    events = random_events(10_000, seed=11)
    window = window_over(events[:1000])
    after_thousand = len(json.dumps(window.to_dict()))
    for request in events[1000:]:
        window.update(request)
    after_ten_thousand = len(json.dumps(window.to_dict()))
    assert after_ten_thousand <= 1.05 * after_thousand
    assert after_ten_thousand < 64_000


def test_public_eval_share_counts_prompts_of_public_benchmarks_word_for_word():
    from traffic.prompts import benchmark

    questions = [turns[0] for turns in benchmark("mt_bench")][:6]
    own = ["Write a limerick about a tax auditor named Fred.", "Summarise the plot of a novel nobody wrote."]
    bodies = [chat(text) for text in questions] + [chat(text) for text in own]
    bodies.append(chat("  " + questions[0].upper() + "  "))  # case and outer whitespace do not matter
    bodies.append(chat("Answer carefully: " + questions[1]))  # wrapped: not the public prompt any more
    window = window_over([features_of(body, START + i) for i, body in enumerate(bodies)])
    assert window.feature_map()["public_eval_share"] == pytest.approx(7 / 10)


def test_standalone_share_counts_made_up_history_but_not_a_continuing_chat():
    def turns(*texts: str) -> dict:
        roles = ["user" if i % 2 == 0 else "assistant" for i in range(len(texts))]
        return {"model": "gpt-4o-mini", "max_tokens": 512,
                "messages": [{"role": role, "content": text} for role, text in zip(roles, texts)]}

    chat_turns = [turns("How do tides work?"),
                  turns("How do tides work?", "The moon...", "Why two a day?"),
                  turns("How do tides work?", "The moon...", "Why two a day?", "Because...", "And spring tides?")]
    made_up = [turns("Hi! I have a question.", "Sure, what is it?", task) for task in
               ("Write an essay on bridges.", "Explain compilers in depth.", "Describe the history of tea.")]
    window = window_over([features_of(body, START + i) for i, body in enumerate(chat_turns + made_up)])
    # Continued: the 2nd and 3rd chat turns. Standalone: the chat's opening and all three made-up ones.
    assert window.feature_map()["standalone_share"] == pytest.approx(4 / 6)
    assert window.feature_map()["single_turn_share"] == pytest.approx(1 / 6)
