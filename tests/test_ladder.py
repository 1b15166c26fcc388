"""The ladder: verdicts become flag, then throttle, then (only when configured) block;
stepping up takes flagged evaluations in a row and stepping down clean ones, so a key does
not flap; shadow mode and allowlisted keys are recorded but never acted on."""

from __future__ import annotations

from detectors.base import Reason, Verdict
from detectors.ladder import Change, LadderConfig, LadderState, step

KEY = "k_harvester"
REASON = Reason("logprob_harvest", "logprobs_share", 0.97, None, "logprobs_share=0.97 (logprobs_share >= 0.8)")
FLAGGED = Verdict("rules", 1.0, True, (REASON,))
CLEAN = Verdict("rules", 0.0, False)
# Not flagged, but scoring at or above the default clear_below (0.3): not clean either.
UNCERTAIN = Verdict("iforest", 0.6, False)
# Steps down on clean evaluations alone and may clear: the ladder's older, looser behaviour.
LOOSE = {"release_after_requests": 0, "release_after_seconds": 0.0, "sticky": False,
         "release_scales_with_harvest": False}


class Key:
    """One key's ladder, evaluated every 20 requests and 60 seconds."""

    def __init__(self, config: LadderConfig | None = None, key_id: str = KEY) -> None:
        self.config, self.key_id = config or LadderConfig(), key_id
        self.state = LadderState()
        self.evaluations = 0

    def evaluate(self, *verdicts: Verdict) -> Change | None:
        self.evaluations += 1
        n = self.evaluations
        return step(self.config, self.state, self.key_id, list(verdicts), ts=1000.0 + 60 * n, requests_seen=20 * n)

    def actions(self, *verdicts: Verdict) -> list[str | None]:
        """The action each evaluation moved to, None where it stayed."""
        return [change.action if change else None for change in map(self.evaluate, verdicts)]


def test_a_first_flagged_verdict_flags_the_key_recording_when_and_after_how_many_requests():
    key = Key()
    assert key.evaluate(CLEAN) is None
    change = key.evaluate(FLAGGED)
    assert change.action == "flag"
    assert (change.first_flagged_at, change.requests_before_flag) == (1120.0, 40)
    assert (change.key_id, change.score, change.detector) == (KEY, 1.0, "rules")
    assert change.reasons == (REASON.as_dict(),)
    assert change.enforce
    assert change.ttl_seconds == LadderConfig().action_ttl_seconds


def test_no_verdicts_change_nothing():
    key = Key()
    assert key.evaluate() is None
    assert key.state == LadderState()


def test_clean_evaluations_of_an_unflagged_key_change_nothing():
    assert Key().actions(CLEAN, UNCERTAIN, CLEAN) == [None, None, None]


def test_the_key_is_throttled_after_throttle_after_flagged_evaluations_in_a_row():
    key = Key(LadderConfig(throttle_after=3))
    assert key.actions(FLAGGED, FLAGGED, FLAGGED) == ["flag", None, "throttle"]


def test_a_clean_evaluation_restarts_the_count_towards_throttling():
    key = Key(LadderConfig(throttle_after=3))
    actions = key.actions(FLAGGED, FLAGGED, CLEAN, FLAGGED, FLAGGED, FLAGGED)
    assert actions == ["flag", None, None, None, None, "throttle"]


def test_an_uncertain_evaluation_also_restarts_the_count_towards_throttling():
    key = Key(LadderConfig(throttle_after=2))
    assert key.actions(FLAGGED, UNCERTAIN, FLAGGED, FLAGGED) == ["flag", None, None, "throttle"]


def test_first_flagged_at_stays_at_the_first_flag_as_the_key_climbs():
    key = Key(LadderConfig(throttle_after=2))
    key.evaluate(FLAGGED)
    throttled = key.evaluate(FLAGGED)
    assert throttled.action == "throttle"
    assert (throttled.first_flagged_at, throttled.requests_before_flag) == (1060.0, 20)


def test_a_key_is_never_blocked_when_block_after_is_0():
    key = Key(LadderConfig(throttle_after=2, block_after=0))
    actions = key.actions(*[FLAGGED] * 50)
    assert actions[:2] == ["flag", "throttle"]
    assert set(actions[2:]) == {None}


def test_a_key_is_blocked_after_block_after_flagged_evaluations_in_a_row():
    key = Key(LadderConfig(throttle_after=2, block_after=4))
    assert key.actions(*[FLAGGED] * 6) == ["flag", "throttle", None, "block", None, None]


def test_a_single_clean_evaluation_does_not_step_down():
    key = Key(LadderConfig(throttle_after=2, release_after=3))
    key.actions(FLAGGED, FLAGGED)
    assert key.evaluate(CLEAN) is None
    assert key.state.level == 2


def test_stepping_down_takes_release_after_clean_evaluations_per_step():
    key = Key(LadderConfig(throttle_after=2, release_after=3, **LOOSE))
    key.actions(FLAGGED, FLAGGED)
    assert key.actions(*[CLEAN] * 6) == [None, None, "flag", None, None, "none"]
    assert key.actions(*[CLEAN] * 6) == [None] * 6


def test_evaluations_scoring_at_or_above_clear_below_are_not_clean():
    key = Key(LadderConfig(release_after=2, clear_below=0.3))
    key.evaluate(FLAGGED)
    at_the_line = Verdict("iforest", 0.3, False)
    assert key.actions(at_the_line, UNCERTAIN, at_the_line, UNCERTAIN) == [None] * 4
    assert key.state.level == 1


def test_a_flag_during_the_release_restarts_it():
    key = Key(LadderConfig(release_after=3, **LOOSE))
    key.evaluate(FLAGGED)
    assert key.actions(CLEAN, CLEAN, FLAGGED, CLEAN, CLEAN) == [None] * 5
    assert key.evaluate(CLEAN).action == "none"


def test_stepping_down_keeps_the_evidence_of_the_last_flag():
    key = Key(LadderConfig(release_after=1, **LOOSE))
    key.evaluate(FLAGGED)
    released = key.evaluate(CLEAN)
    assert released.action == "none"
    assert (released.score, released.detector, released.reasons) == (1.0, "rules", (REASON.as_dict(),))
    assert released.first_flagged_at == 1060.0


def test_the_strongest_flagged_verdict_speaks_and_only_flagged_verdicts_give_reasons():
    forest_reason = Reason("unusual_logprobs_share", "logprobs_share", 1.0, (0.0, 0.05), "")
    forest = Verdict("iforest", 0.93, True, (forest_reason,))
    quiet = Verdict("iforest", 0.99, False, (Reason("unusual_requests_last_hour", "requests_last_hour", 900.0),))
    change = Key().evaluate(quiet, forest, FLAGGED)
    assert (change.score, change.detector) == (1.0, "rules")
    assert change.reasons == (forest_reason.as_dict(), REASON.as_dict())


def test_shadow_mode_records_changes_without_enforcing_them():
    key = Key(LadderConfig(throttle_after=2, shadow=True))
    changes = [key.evaluate(FLAGGED), key.evaluate(FLAGGED)]
    assert [change.action for change in changes] == ["flag", "throttle"]
    assert not any(change.enforce for change in changes)


def test_allowlisted_keys_are_flagged_for_visibility_but_never_enforced():
    config = LadderConfig(throttle_after=2, allowlist=frozenset({"k_trusted"}))
    trusted, other = Key(config, "k_trusted"), Key(config, "k_other")
    assert [trusted.evaluate(FLAGGED).enforce, trusted.evaluate(FLAGGED).enforce] == [False, False]
    assert other.evaluate(FLAGGED).enforce


def test_the_flag_record_has_exactly_the_documented_keys():
    change = Key().evaluate(FLAGGED)
    record = change.flag()
    assert set(record) == {
        "key_id", "action", "score", "detector", "reasons", "first_flagged_at", "requests_before_flag",
        "activity", "harvest_span_requests",
    }
    assert record == {
        "key_id": KEY, "action": "flag", "score": 1.0, "detector": "rules", "reasons": [REASON.as_dict()],
        "first_flagged_at": 1060.0, "requests_before_flag": 20, "activity": "harvesting",
        "harvest_span_requests": 0,
    }


def test_ladder_state_round_trips_through_its_dict():
    key = Key(LadderConfig(throttle_after=2))
    key.actions(FLAGGED, FLAGGED, CLEAN)
    assert LadderState.from_dict(key.state.as_dict()) == key.state


def test_ladder_state_with_its_memory_round_trips_and_older_checkpoints_still_load():
    key = Key(LadderConfig(throttle_after=2))
    key.actions(FLAGGED, FLAGGED, CLEAN)
    data = key.state.as_dict()
    assert data["peak"]["reasons"] == [REASON.as_dict()]
    older = {name: data[name] for name in ("level", "flagged_streak", "clean_streak", "first_flagged_at",
                                           "requests_before_flag", "score", "detector", "reasons")}
    assert LadderState.from_dict(older).peak == {}


def test_many_clean_evaluations_in_few_requests_do_not_step_down():
    """Padding: a burst of cheap clean requests is clean evaluations but not clean requests."""
    key = Key(LadderConfig(throttle_after=1, release_after=2, release_after_requests=1000, release_after_seconds=0))
    key.evaluate(FLAGGED)
    assert [key.evaluate(CLEAN) for _ in range(40)] == [None] * 40  # 800 clean requests
    assert key.state.level == 2
    assert any(key.evaluate(CLEAN) for _ in range(12))  # past 1,000
    assert key.state.level == 1


def test_clean_requests_without_clean_time_do_not_step_down():
    key = Key(LadderConfig(throttle_after=1, release_after=1, release_after_requests=0,
                           release_after_seconds=7200))
    key.evaluate(FLAGGED)
    changes = [key.evaluate(CLEAN) for _ in range(130)]  # 60 s apart, the clean run from the first
    first = next(i for i, change in enumerate(changes) if change)
    assert 7200 <= 60 * first < 7200 + 120
    assert changes[first].action == "flag"


def test_a_flagged_key_falls_to_flag_at_most_and_says_it_is_quiet_with_its_strongest_evidence():
    key = Key(LadderConfig(throttle_after=2, release_after=1, release_after_requests=0, release_after_seconds=0))
    strong = Verdict("rules", 0.9, True, (Reason("strong", "f", 1.0),))
    weak = Verdict("rules", 0.6, True, (Reason("weak", "f", 0.5),))
    assert key.actions(strong, weak) == ["flag", "throttle"]
    released = next(filter(None, (key.evaluate(CLEAN) for _ in range(3))))
    assert (released.action, released.activity) == ("flag", "harvest seen, now quiet")
    assert [reason["name"] for reason in released.reasons] == ["strong"]
    assert released.harvest_span_requests == 20
    assert [key.evaluate(CLEAN) for _ in range(50)] == [None] * 50
    assert key.state.level == 1


def test_a_quiet_key_that_harvests_again_says_so():
    key = Key(LadderConfig(throttle_after=0, release_after=1, release_after_requests=0, release_after_seconds=0))
    key.evaluate(FLAGGED)
    assert key.evaluate(CLEAN).activity == "harvest seen, now quiet"
    again = key.evaluate(FLAGGED)
    assert (again.action, again.activity) == ("flag", "harvesting")


def test_a_longer_harvest_takes_as_many_clean_requests_to_relax():
    key = Key(LadderConfig(throttle_after=1, release_after=1, release_after_requests=100, release_after_seconds=0))
    for _ in range(30):  # flagged over 580 requests
        key.evaluate(FLAGGED)
    assert key.state.harvest_span == 580
    changes = [key.evaluate(CLEAN) for _ in range(40)]
    first = next(i for i, change in enumerate(changes) if change)
    assert 20 * first >= 580  # the clean run began at the first clean evaluation
