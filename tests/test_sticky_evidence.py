"""Evidence that sticks: a harvester that alternates harvesting with padding of cheap, clean
requests stays flagged and on the review queue throughout, through the same pipeline the
live scorer and `distillguard score` use, with the shipped ladder defaults."""

from __future__ import annotations

from detectors.features import from_fields
from detectors.ladder import QUIET, LadderConfig
from detectors.pipeline import KeyState, Pipeline
from detectors.rules import DEFAULT_RULES, RulesDetector, parse_rules
from tests.support.traffic import chat_request, event_fields, harvest_request, plumbing_evidence

START = 1_700_000_000.0
RAW = "sk-phased-harvester"


def phased(phases: list[tuple[str, int]], gap_s: float = 3.0):
    """One key's events: ("harvest", n) or ("clean", n) phases, back to back."""
    events, i = [], 0
    for kind, count in phases:
        for _ in range(count):
            body = harvest_request(i) if kind == "harvest" else chat_request(i)
            completion = 200 if kind == "harvest" else 60 + (7 * i) % 90
            events.append(from_fields(event_fields(RAW, body, START + gap_s * i, completion_tokens=completion)))
            i += 1
    return events


def run(events, config: LadderConfig | None = None):
    pipeline = Pipeline(RulesDetector(parse_rules(DEFAULT_RULES)), None, config or LadderConfig(), plumbing_evidence())
    state, levels, changes = KeyState(), [], []
    for event in events:
        snapshot = pipeline.observe(state, event)
        if snapshot is not None:
            (evaluation,) = pipeline.evaluate([(state, snapshot)])
            if evaluation.change:
                changes.append(evaluation.change)
            levels.append((evaluation.requests_seen, state.ladder.level))
    return state, levels, changes


PHASES = [("harvest", 200), ("clean", 300)] * 3 + [("harvest", 200)]


def test_an_alternating_harvester_stays_flagged_from_its_first_flag_to_the_end():
    state, levels, changes = run(phased(PHASES))
    first = next(seen for seen, level in levels if level > 0)
    assert first <= 60
    assert all(level >= 1 for seen, level in levels if seen >= first)
    assert all(change.action != "none" for change in changes)
    assert state.ladder.harvest_span > 1000


def test_padding_with_clean_requests_does_not_relax_a_throttle_within_the_clean_phases():
    """300 clean requests 3 s apart is 15 minutes: short of the clean hour the ladder asks."""
    _, levels, _ = run(phased(PHASES))
    throttled_from = next(seen for seen, level in levels if level >= 2)
    assert all(level == 2 for seen, level in levels if seen >= throttled_from)


def test_a_harvester_that_stops_relaxes_to_a_quiet_flag_but_is_never_cleared():
    """With the clean run long enough (slow clean traffic), the throttle lifts; the flag and
    its strongest evidence stay for the reviewer."""
    events = phased([("harvest", 200)], gap_s=3.0) + [
        from_fields(event_fields(RAW, chat_request(i), START + 600 + 60.0 * i, completion_tokens=80))
        for i in range(600)
    ]
    state, _, changes = run(events)
    assert changes[-1].action == "flag" and changes[-1].activity == QUIET
    assert changes[-1].reasons and changes[-1].reasons[0]["name"] == state.ladder.peak["reasons"][0]["name"]
    assert state.ladder.level == 1


def test_state_with_its_memory_survives_a_checkpoint_mid_harvest():
    events = phased(PHASES[:3])
    state, _, _ = run(events)
    restored = KeyState.from_bytes(state.to_bytes())
    assert restored.ladder == state.ladder
    assert restored.ladder.peak["score"] > 0
