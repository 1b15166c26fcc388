"""Graded evidence of distillation: no single parameter or phrase decides.

Each indicator maps one window feature to [0, 1] with a linear ramp from an honest-typical
value (0) to a harvest-typical one (1). Indicators form groups, each a separate kind of
evidence, and a group's score is its strongest indicator (breadth needs both of its own):

- breadth: many distinct standalone tasks (not a conversation, not public benchmarks);
- harvested output: what a training set is made of (long answers against the task's own
  new text, reasoning traces, soft labels on generated text, several samples per task,
  invented or rewritten instructions, judgements, tool trajectories, turns the model wrote);
- scale: distinct tasks accumulated over the key's lifetime;
- automation: a fixed template, machine timing, round-the-clock volume.

A key is flagged when harvested output and breadth are present (a product's users ask the
same popular things again; a harvest sends each task once), at least `min_groups` groups show
evidence, the total is at least `min_total`, and the key has sent at least
`min_distinct_tasks` distinct tasks (a harvest is a volume; a few hundred questions with
long answers are as often an evaluation or a dev set). Honest automation (summarising,
translating, classifying with logprobs, judging a test set) has breadth, scale and
automation but no harvested output; a person has harvested-looking answers but neither
scale nor automation. The reason lists every contributing indicator with the key's value
and the honest value, so a reviewer can check each one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Reason, Verdict
from .windows import FEATURE_NAMES

BREADTH, HARVEST, SCALE, AUTOMATION = "breadth", "harvested output", "scale", "automation"
GROUPS = (BREADTH, HARVEST, SCALE, AUTOMATION)


@dataclass(frozen=True, slots=True)
class Indicator:
    """One feature read as evidence: 0 at `honest`, 1 at `harvest`, linear in between
    (either direction); `weight` caps what it can say alone; `kind` names the harvest."""

    name: str
    feature: str
    honest: float
    harvest: float
    group: str
    weight: float = 1.0
    kind: str = ""
    describe: str = ""

    def strength(self, features: Sequence[float]) -> float | None:
        value = features[FEATURE_NAMES.index(self.feature)]
        if math.isnan(value):
            return None
        return self.weight * ramp(value, self.honest, self.harvest)


def ramp(value: float, honest: float, harvest: float) -> float:
    """0 at the honest value, 1 at the harvest value, linear between, clipped."""
    share = (value - honest) / (harvest - honest)
    return min(max(share, 0.0), 1.0)


# Values chosen from what each behaviour is, not from one generator's settings: e.g. an
# answer 1.5x the new text is a translation or a rewrite, 6x is an essay from a question;
# 90 tokens (log 4.5) is a chat reply, 400 (log 6) a worked answer.
INDICATORS: tuple[Indicator, ...] = (
    Indicator("standalone_tasks", "standalone_share", 0.6, 0.95, BREADTH,
              describe="share of requests that continue none of the key's conversations"),
    Indicator("distinct_tasks", "unique_prompt_share", 0.6, 0.95, BREADTH,
              describe="share of distinct prompts in the window"),
    Indicator("long_answers", "answer_to_variable_ratio", 1.5, 6.0, HARVEST, kind="capability_harvest",
              describe="answer tokens per token of new text in the prompt"),
    Indicator("reasoning_traces", "reasoning_share", 0.5, 0.9, HARVEST, kind="reasoning_trace_harvest",
              describe="share of requests asking for a reasoning trace"),
    Indicator("soft_labels_on_text", "logprobs_generated_share", 0.3, 0.8, HARVEST, kind="logprob_harvest",
              describe="share asking logprobs on generated text (not on labels)"),
    Indicator("several_samples", "multi_choice_share", 0.3, 0.8, HARVEST, weight=0.45, kind="multi_sample_harvest",
              describe="share asking n > 1 samples"),
    Indicator("invented_tasks", "task_generation_share", 0.2, 0.6, HARVEST, kind="synthetic_task_generation",
              describe="share asking the model to invent new tasks"),
    Indicator("rewritten_instructions", "rewrite_share", 0.15, 0.5, HARVEST, kind="instruction_evolution",
              describe="share asking for an instruction to be rewritten into a new one"),
    Indicator("model_written_turns", "mirrored_turn_share", 0.05, 0.3, HARVEST, kind="synthetic_dialogue",
              describe="share whose user turn is an assistant turn of another of the key's conversations"),
    Indicator("judgements", "judgement_share", 0.3, 0.8, HARVEST, weight=0.45, kind="grading_harvest",
              describe="share asking the model to grade or compare answers"),
    Indicator("tool_trajectories", "tool_results_share", 0.2, 0.6, HARVEST, weight=0.45, kind="agent_trajectory_harvest",
              describe="share feeding tool results back"),
    Indicator("varied_tool_sets", "toolset_diversity", 0.1, 0.5, HARVEST, weight=0.8, kind="agent_trajectory_harvest",
              describe="distinct tool sets per request with tools"),
    Indicator("tasks_accumulated", "distinct_tasks_log", math.log1p(150), math.log1p(1500), SCALE,
              describe="log1p of distinct prompts over the key's lifetime"),
    Indicator("fixed_template", "template_share", 0.05, 0.3, AUTOMATION, weight=0.8,
              describe="share of the user text inside the key's recurring template lines"),
    Indicator("machine_timing", "interarrival_cv", 1.6, 0.6, AUTOMATION,
              describe="variation of gaps between requests (people are bursty)"),
    Indicator("round_the_clock", "hours_active_24", 10, 20, AUTOMATION,
              describe="hours of the last day with requests"),
    Indicator("volume", "requests_last_hour", 60, 600, AUTOMATION, weight=0.8,
              describe="requests in the last hour"),
)
# Harvested output read from the prompts and answers themselves, not from a request flag.
CONTENT_INDICATORS = frozenset({"long_answers", "invented_tasks", "rewritten_instructions", "model_written_turns",
                                "varied_tool_sets"})
# Evaluations: public benchmark questions, or temperature 0 on nearly every request, weaken
# the long-answer evidence (the greedy rule in rules.py catches harvests far past any eval).
PUBLIC_EVAL = FEATURE_NAMES.index("public_eval_share")
GREEDY = FEATURE_NAMES.index("greedy_share")
COMPLETION_LOG = FEATURE_NAMES.index("completion_tokens_log_mean")
MAX_TOKENS_LOG = FEATURE_NAMES.index("max_tokens_log_mean")
VARIABLE_LOG = FEATURE_NAMES.index("variable_tokens_log_mean")
ANSWER_RATIO = FEATURE_NAMES.index("answer_to_variable_ratio")
DISTINCT_TASKS_LOG = FEATURE_NAMES.index("distinct_tasks_log")
TOOL_RESULTS = FEATURE_NAMES.index("tool_results_share")
MIRRORED = FEATURE_NAMES.index("mirrored_turn_share")


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    min_requests: int = 30
    min_total: float = 2.6
    min_groups: int = 3
    group_present: float = 0.5
    # A content indicator this strong makes the harvest substantial before scale does; below
    # the group's 0.5 so that the no-usage stand-in (at most 0.7 of max_tokens asked) can reach it.
    content_present: float = 0.42
    # Scale this strong (about 1,200 distinct tasks) makes a request-flag harvest substantial,
    # when the new text of each task is short (a question, not a document to transform).
    scale_alone: float = 0.9
    scale_alone_new_text_tokens: int = 250
    # A harvest is a volume of distinct tasks: fewer than this (the smaller of distinct prompts
    # and distinct lines) is an evaluation, a dev set or a person, never flagged alone.
    min_distinct_tasks: int = 150


@dataclass(frozen=True, slots=True)
class Contribution:
    indicator: Indicator
    value: float
    strength: float
    substitute: str = ""


def _contributions(features: Sequence[float]) -> list[Contribution]:
    out = []
    for indicator in INDICATORS:
        value = features[FEATURE_NAMES.index(indicator.feature)]
        strength = indicator.strength(features)
        substitute = ""
        if indicator.name == "long_answers":
            strength, substitute = _long_answers(features, strength)
        elif indicator.name == "reasoning_traces" and strength is not None:
            strength *= _worked_answers(features)
        elif indicator.name == "standalone_tasks" and strength is not None:
            # A turn the model wrote continues no person's conversation: a synthetic dialogue's
            # turns are standalone tasks, however long the history they carry.
            value = min(value + _known(features[MIRRORED]), 1.0)
            strength = ramp(value, indicator.honest, indicator.harvest)
        elif indicator.name == "distinct_tasks" and strength is not None:
            # An agent loop resends its task at every step: count distinct tasks per task start.
            starts = max(1.0 - _known(features[TOOL_RESULTS]), 0.25)
            value = min(value / starts, 1.0)
            strength = ramp(value, indicator.honest, indicator.harvest)
        if strength is None:
            continue
        out.append(Contribution(indicator, value, strength, substitute))
    return out


def _long_answers(features: Sequence[float], strength: float | None) -> tuple[float | None, str]:
    """Long answers against the new text, and long in themselves; without usage, the answer
    length asked (max_tokens) against short new text stands in, at most 0.7. Evaluations
    count less: public benchmark questions a quarter, temperature 0 half."""
    substitute = ""
    completion = features[COMPLETION_LOG]
    if strength is not None and not math.isnan(completion):
        strength = min(strength, ramp(completion, 4.5, 6.0))
    else:
        asked, new_text = features[MAX_TOKENS_LOG], features[VARIABLE_LOG]
        if math.isnan(asked):
            return None, ""
        strength = 0.7 * min(ramp(asked, 6.0, 7.5), ramp(new_text, 6.0, 4.5))
        substitute = f"no usage: max_tokens_log_mean={asked:.3g} against new text log {new_text:.3g}"
    public, greedy = ramp(features[PUBLIC_EVAL], 0.2, 0.5), ramp(_known(features[GREEDY]), 0.5, 0.95)
    # Public benchmark questions are an evaluation's (their sets hold 80-805 prompts, little
    # to harvest): a quarter at most, under the harvested-output bar on their own.
    return strength * min(1 - 0.75 * public, 1 - 0.5 * greedy), substitute


def _worked_answers(features: Sequence[float]) -> float:
    """A reasoning trace worth harvesting is a long worked answer to a short task; reasoning
    asked while judging or transforming long text (CoT judges, prompt optimisers) is not."""
    ratio = features[ANSWER_RATIO]
    return 0.7 if math.isnan(ratio) else ramp(ratio, 1.0, 3.0)


def distinct_tasks(features: Sequence[float]) -> float:
    """Distinct tasks over the key's lifetime (0 when unknown), from the log1p feature."""
    value = features[DISTINCT_TASKS_LOG]
    return 0.0 if math.isnan(value) else math.expm1(value)


def _known(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def group_scores(contributions: list[Contribution]) -> dict[str, float]:
    """A group's score: its strongest indicator plus half of the others, at most 1; breadth
    needs both of its indicators. Weak indicators (weight under 0.5) never make a group alone."""
    scores = dict.fromkeys(GROUPS, 0.0)
    breadth = [c.strength for c in contributions if c.indicator.group == BREADTH]
    scores[BREADTH] = min(breadth) if len(breadth) == 2 else 0.0
    for group in (HARVEST, SCALE, AUTOMATION):
        strengths = sorted((c.strength for c in contributions if c.indicator.group == group), reverse=True)
        if strengths:
            scores[group] = min(strengths[0] + 0.5 * sum(strengths[1:]), 1.0)
    return scores


def _line(c: Contribution) -> str:
    i = c.indicator
    side = "<=" if i.harvest > i.honest else ">="
    text = f"{i.name} {c.value:.3g} (honest {side} {i.honest:.3g}, harvest {i.harvest:.3g}: {c.strength:.2f})"
    return f"{text}; {c.substitute}" if c.substitute else text


class EvidenceDetector:
    """Flags a key with enough evidence from enough groups, harvested output among them.
    Reported as detector `rules` (the hand-set detectors, as against the learned forest), so
    the console, metrics and alerts keep one name for them."""

    name = "rules"

    def __init__(self, config: EvidenceConfig | None = None) -> None:
        self.config = config or EvidenceConfig()

    def score(self, features: Sequence[float], requests_seen: int) -> Verdict:
        contributions = _contributions(features)
        groups = group_scores(contributions)
        total = sum(groups.values())
        present = [g for g in GROUPS if groups[g] >= self.config.group_present]
        # Without harvested output there is nothing to harvest: the score says clean, however
        # automated the key is, so the ladder can step down.
        score = min(total / self.config.min_total, 1.0) * min(groups[HARVEST] / self.config.group_present, 1.0)
        tasks = distinct_tasks(features)
        flagged = (requests_seen >= self.config.min_requests and groups[HARVEST] >= self.config.group_present
                   and groups[BREADTH] >= self.config.group_present and len(present) >= self.config.min_groups and total >= self.config.min_total
                   and tasks >= self.config.min_distinct_tasks
                   and self._substantial(contributions, groups, features))
        if not flagged:
            return Verdict(self.name, score, False)
        return Verdict(self.name, score, True, (self._reason(contributions, groups, total, tasks),))

    def _substantial(self, contributions: list[Contribution], groups: dict[str, float],
                     features: Sequence[float]) -> bool:
        """What the prompts and answers are, not only what the request asks for: a harvest
        read from content (long answers to short new text, invented or rewritten tasks,
        model-written turns, ever-new tool sets). A request flag (logprobs, n > 1, a
        reasoning or grading ask) on a fixed job over varying documents is honest automation,
        until the key has sent well over a thousand distinct tasks (simulated document
        pipelines and prompt optimisers with logprobs or n > 1 reached 500 within hours)."""
        new_text = features[VARIABLE_LOG]
        if groups[SCALE] >= self.config.scale_alone and (
                math.isnan(new_text) or new_text <= math.log1p(self.config.scale_alone_new_text_tokens)):
            return True
        return any(c.indicator.name in CONTENT_INDICATORS and c.strength >= self.config.content_present
                   for c in contributions)

    def _reason(self, contributions: list[Contribution], groups: dict[str, float], total: float,
                tasks: float) -> Reason:
        # Named for the strongest harvested output, content before request flags on a tie:
        # what the prompts and answers are is what made the harvest substantial.
        harvest = max((c for c in contributions if c.indicator.group == HARVEST),
                      key=lambda c: (c.strength, c.indicator.name in CONTENT_INDICATORS))
        shown = [c for c in contributions if c.strength > 0]
        parts = []
        for group in GROUPS:
            lines = [_line(c) for c in shown if c.indicator.group == group]
            if lines:
                parts.append(f"{group} {groups[group]:.2f}: " + "; ".join(lines))
        indicator = harvest.indicator
        present = sum(1 for g in GROUPS if groups[g] >= self.config.group_present)
        detail = (f"evidence {total:.2f} from {present} groups over about {tasks:,.0f} distinct tasks. "
                  + " | ".join(parts))
        return Reason(indicator.kind, indicator.feature, harvest.value, (0.0, indicator.honest), detail)
