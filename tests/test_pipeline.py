"""The pipeline from events to changes of action: keys are evaluated at fixed points of
their own request count, on the window as it was at that point, so the decisions do not
depend on how events are batched, and a key's state survives its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.features import RequestFeatures, from_fields
from detectors.iforest import ForestDetector, ForestModel
from detectors.ladder import LadderConfig
from detectors.pipeline import KeyState, Pipeline, due_for_evaluation
from detectors.rules import DEFAULT_RULES, RulesDetector, parse_rules
from detectors.windows import KeyWindow
from tests.support.traffic import chat_request, event_fields, harvest_request, key_id, plumbing_evidence

START = 1_700_000_000.0
HARVESTERS = ("sk-harvester-1", "sk-harvester-2")
CHAT_USERS = tuple(f"sk-chat-{n}" for n in range(5))


def chat_event(raw_key: str, i: int, ts: float) -> RequestFeatures:
    return from_fields(event_fields(raw_key, chat_request(i), ts, completion_tokens=60 + (7 * i) % 90))


def harvest_event(raw_key: str, i: int, ts: float) -> RequestFeatures:
    return from_fields(event_fields(raw_key, harvest_request(i), ts, completion_tokens=200))


def traffic(per_key: int = 130) -> list[RequestFeatures]:
    """Harvesters and chat users interleaved as live traffic arrives, each at its own pace."""
    events = []
    for i in range(per_key):
        for n, raw in enumerate(HARVESTERS):
            events.append(harvest_event(raw, i, START + 2.0 * i + n * 0.01))
        for n, raw in enumerate(CHAT_USERS):
            events.append(chat_event(raw, i, START + (9.0 + n) * i + 0.5 + n * 0.01))
    return sorted(events, key=lambda event: event.ts)


@pytest.fixture(scope="module")
def forest() -> ForestDetector:
    """A forest fitted, as `distillguard train` does, on benign keys' windows at their evaluation points."""
    rows = []
    for n in range(12):
        window = KeyWindow()
        for i in range(200):
            window.update(chat_event(f"sk-benign-{n}", i + 3 * n, START + (5.0 + n) * i))
            if due_for_evaluation(window.requests_seen):
                rows.append(window.features())
    return ForestDetector(ForestModel.fit(np.asarray(rows), target_fpr=0.01, seed=0, n_estimators=50), min_requests=20)


@pytest.fixture(scope="module")
def pipeline(forest) -> Pipeline:
    return Pipeline(RulesDetector(parse_rules(DEFAULT_RULES)), forest, LadderConfig(throttle_after=3), plumbing_evidence())


@pytest.fixture(scope="module")
def events() -> list[RequestFeatures]:
    return traffic()


def run(pipeline: Pipeline, events, batch: int, states: dict[str, KeyState] | None = None):
    """What the scorer does: read `batch` events, update the windows, evaluate the keys that became due."""
    states = {} if states is None else states
    evaluations, due = [], []
    for count, event in enumerate(events, start=1):
        state = states.setdefault(event.key_id, KeyState())
        snapshot = pipeline.observe(state, event)
        if snapshot is not None:
            due.append((state, snapshot))
        if count % batch == 0:
            evaluations += pipeline.evaluate(due)
            due = []
    evaluations += pipeline.evaluate(due)
    return states, evaluations


def changes(evaluations) -> list:
    return [(e.key_id, e.requests_seen, e.change) for e in evaluations if e.change is not None]


# --- schedule -----------------------------------------------------------------------------


def test_keys_are_due_every_5_requests_from_the_10th_to_the_100th_then_every_20():
    due = [n for n in range(1, 301) if due_for_evaluation(n)]
    assert due == [*range(10, 101, 5), *range(120, 301, 20)]


def test_observe_gives_a_snapshot_exactly_when_the_key_becomes_due(pipeline, events):
    state = KeyState()
    own = [event for event in events if event.key_id == key_id(HARVESTERS[0])]
    for event in own[:40]:
        snapshot = pipeline.observe(state, event)
        if due_for_evaluation(state.window.requests_seen):
            assert (snapshot.key_id, snapshot.requests_seen, snapshot.ts) == (event.key_id, state.window.requests_seen,
                                                                             event.ts)
            assert snapshot.features == state.window.features()
        else:
            assert snapshot is None


def test_evaluation_uses_the_snapshot_taken_when_the_key_became_due(pipeline):
    raw = HARVESTERS[0]
    state, snapshot = KeyState(), None
    for i in range(30):
        snapshot = pipeline.observe(state, harvest_event(raw, i, START + i)) or snapshot
    assert snapshot.requests_seen == 30
    for i in range(30, 34):  # ordinary requests arrive before the batch is evaluated
        pipeline.observe(state, chat_event(raw, i, START + i))
    assert state.window.features() != snapshot.features
    (evaluation,) = pipeline.evaluate([(state, snapshot)])
    assert (evaluation.requests_seen, evaluation.features) == (30, snapshot.features)
    assert evaluation.change.action == "flag"
    assert evaluation.change.requests_before_flag == 30
    assert evaluation.change.first_flagged_at == START + 29


def test_evaluating_nothing_gives_nothing(pipeline):
    assert pipeline.evaluate([]) == []


def test_a_pipeline_without_a_forest_runs_the_rules_alone(events):
    rules_only = Pipeline(RulesDetector(parse_rules(DEFAULT_RULES)), None, LadderConfig(), plumbing_evidence())
    _, evaluations = run(rules_only, events, batch=64)
    assert {v.detector for e in evaluations for v in e.verdicts} == {"rules"}
    assert {e.key_id for e in evaluations if e.change} == {key_id(raw) for raw in HARVESTERS}


# --- determinism --------------------------------------------------------------------------


def test_the_harvesters_and_only_they_are_flagged_and_throttled(pipeline, events):
    states, evaluations = run(pipeline, events, batch=1)
    acted_on = {e.key_id for e in evaluations if e.change}
    assert acted_on == {key_id(raw) for raw in HARVESTERS}
    assert all(states[key_id(raw)].ladder.level == 2 for raw in HARVESTERS)


@pytest.mark.parametrize("batch", [3, 50, 10_000])
def test_batches_of_any_size_give_identical_evaluations_and_changes(pipeline, events, batch):
    one_by_one_states, one_by_one = run(pipeline, events, batch=1)
    states, batched = run(pipeline, events, batch=batch)
    assert changes(batched) == changes(one_by_one)
    assert batched == one_by_one
    assert {k: s.ladder for k, s in states.items()} == {k: s.ladder for k, s in one_by_one_states.items()}


# --- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forgiving(forest) -> Pipeline:
    """Steps down after two clean evaluations, 50 clean requests and a minute, so a short run
    shows the whole ladder."""
    return Pipeline(RulesDetector(parse_rules(DEFAULT_RULES)), forest,
                    LadderConfig(throttle_after=3, release_after=2, release_after_requests=50, release_after_seconds=60),
                    plumbing_evidence())


def throttled_harvester(pipeline: Pipeline) -> KeyState:
    raw = HARVESTERS[0]
    states, _ = run(pipeline, [harvest_event(raw, i, START + 2.0 * i) for i in range(60)], batch=7)
    state = states[key_id(raw)]
    state.last_event_id = "1700000120000-3"
    return state


def reformed(raw: str, count: int = 200) -> list[RequestFeatures]:
    """The harvester's key afterwards sends only ordinary chat."""
    return [chat_event(raw, i, START + 1000.0 + 10.0 * i) for i in range(count)]


def test_key_state_round_trips_through_bytes(forgiving):
    state = throttled_harvester(forgiving)
    assert state.ladder.level == 2 and state.last_verdicts
    restored = KeyState.from_bytes(state.to_bytes())
    assert restored.window.to_dict() == state.window.to_dict()
    assert restored.ladder == state.ladder
    assert (restored.last_event_id, restored.last_verdicts) == (state.last_event_id, state.last_verdicts)
    assert restored.to_bytes() == state.to_bytes()


def test_a_restored_key_state_reaches_the_same_decisions(forgiving):
    harvester = key_id(HARVESTERS[0])
    kept = throttled_harvester(forgiving)
    restored = KeyState.from_bytes(kept.to_bytes())
    _, after_kept = run(forgiving, reformed(HARVESTERS[0], 300), batch=7, states={harvester: kept})
    _, after_restored = run(forgiving, reformed(HARVESTERS[0], 300), batch=7, states={harvester: restored})
    steps = [(change.action, change.activity) for _, _, change in changes(after_kept)]
    # Down from throttle once the harvest leaves the window; the flag stays for a reviewer.
    assert steps == [("flag", "harvest seen, now quiet")]
    assert changes(after_restored) == changes(after_kept)
    assert restored.ladder == kept.ladder
