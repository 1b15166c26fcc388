"""Threshold rules from the config: each rule is a named reason that fires when all of its
conditions on the window features hold and the key has sent enough requests.

Most harvests are judged by graded evidence (detectors/evidence.py); the one shipped rule
is the capability harvest at temperature 0, which only volume past any evaluation's size
tells apart. Operators add their own rules in config. An unknown feature (NaN) is neither
met nor failed: a rule judges on its known conditions.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Sequence

from .base import Reason, Verdict
from .windows import FEATURE_NAMES

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")

DEFAULT_RULES: dict[str, dict] = {
    # The capability, reasoning, logprob and task-generation harvests are graded evidence
    # now (detectors/evidence.py): no AND of hand-set thresholds on one parameter decides.
    "greedy_capability_harvest": {
        "description": "the capability harvest at temperature 0, kept up far past any evaluation's size",
        # Evaluations pin temperature 0 too, so only volume no single evaluation reaches tells
        # them apart: the public sets with short questions and long answers have 80-805 prompts
        # (and are recognised word for word anyway); a data set for a student needs thousands.
        "min_requests": 1000,
        "when": ["standalone_share >= 0.95", "unique_prompt_share >= 0.95", "answer_to_variable_ratio >= 4",
                 "completion_tokens_log_mean >= 6", "greedy_share > 0.5", "public_eval_share <= 0.5"],
    },
}


# When a feature is unknown (too few lines carried its field), the condition reads what the
# lines do carry instead: the answer length asked for stands in for the answer length seen.
SUBSTITUTES = {"completion_tokens_log_mean": "max_tokens_log_mean"}


class RuleError(ValueError):
    """A rule that cannot be used; the message names the rule and the condition."""


@dataclass(frozen=True, slots=True)
class Condition:
    feature: str
    op: str
    threshold: float

    @property
    def index(self) -> int:
        return FEATURE_NAMES.index(self.feature)

    def holds(self, features: Sequence[float]) -> bool | None:
        """True or False; None when the feature is unknown (and no substitute is known)."""
        value = self.value(features)
        return None if math.isnan(value) else _OPS[self.op](value, self.threshold)

    def value(self, features: Sequence[float]) -> float:
        """The feature's value, or what the lines do carry in its place when it is unknown."""
        value = features[self.index]
        if math.isnan(value) and self.feature in SUBSTITUTES:
            return features[FEATURE_NAMES.index(SUBSTITUTES[self.feature])]
        return value

    def describe(self, features: Sequence[float]) -> str:
        value = features[self.index]
        if not math.isnan(value):
            return f"{self.feature}={value:.3g} ({self})"
        substitute = SUBSTITUTES.get(self.feature)
        if substitute and not math.isnan(features[FEATURE_NAMES.index(substitute)]):
            return f"{self.feature} unknown, {substitute}={self.value(features):.3g} in its place ({self})"
        return f"{self.feature} unknown ({self})"

    def __str__(self) -> str:
        return f"{self.feature} {self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    min_requests: int = 30
    description: str = ""


def parse_condition(rule: str, text: str) -> Condition:
    match = _CONDITION.match(text)
    if not match:
        raise RuleError(f"rule {rule!r}: condition {text!r} is not 'feature >= number' (ops: >= <= > <)")
    feature, op, value = match.groups()
    if feature not in FEATURE_NAMES:
        raise RuleError(f"rule {rule!r}: unknown feature {feature!r}; features are {', '.join(FEATURE_NAMES)}")
    return Condition(feature, op, float(value))


def parse_rules(spec: dict[str, dict]) -> list[Rule]:
    """Rules from config: {name: {when: [conditions], min_requests, description}}."""
    rules = []
    for name, body in spec.items():
        when = body.get("when") or []
        if not when:
            raise RuleError(f"rule {name!r}: needs at least one condition under 'when'")
        conditions = tuple(parse_condition(name, text) for text in when)
        rules.append(Rule(name, conditions, int(body.get("min_requests", 30)), body.get("description", "")))
    return rules


def fires(rule: Rule, features: Sequence[float]) -> bool:
    """No known condition fails and at least half of them are known: an unknown condition is
    neither met nor failed, and the rule judges on what is known."""
    outcomes = [condition.holds(features) for condition in rule.conditions]
    known = [outcome for outcome in outcomes if outcome is not None]
    return all(known) and 2 * len(known) >= len(outcomes)


class RulesDetector:
    """Fires when any rule's known conditions all hold; every fired rule is a reason."""

    name = "rules"

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def score(self, features: Sequence[float], requests_seen: int) -> Verdict:
        reasons = []
        for rule in self.rules:
            if requests_seen >= rule.min_requests and fires(rule, features):
                detail = " and ".join(c.describe(features) for c in rule.conditions)
                first = next((c for c in rule.conditions if c.holds(features) is not None), rule.conditions[0])
                reasons.append(Reason(rule.name, first.feature, first.value(features), None,
                                      f"{rule.description}: {detail}" if rule.description else detail))
        return Verdict(self.name, 1.0 if reasons else 0.0, bool(reasons), tuple(reasons))
