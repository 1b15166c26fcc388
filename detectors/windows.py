"""Per-key rolling windows: the last `size` requests and the last day, kept incrementally.

Every event costs the same small, fixed work: running sums and counters gain the new
request and lose the one leaving the window; nothing re-scans a key's history. Memory per
key is bounded by `size` compact records plus a few fixed arrays (see `docs/detection.md`).
"""

from __future__ import annotations

import math
import operator
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import reduce

from .features import RequestFeatures
from .public_evals import is_public_eval
from .request_shape import parse_segments
from .task_sketch import TaskSketch

WINDOW_SIZE = 200
# A feature read from a field some lines lack (usage, max_tokens, temperature) is computed
# over the requests that carried it, and is unknown (NaN) with fewer than this many.
MIN_KNOWN = 5
UNKNOWN = float("nan")  # one object: lists holding it compare equal
BANDS = 4  # SimHash split into 4 bands of 16 bits: Hamming distance <= 3 shares a band.

# The window features, in the order every model and report uses. What each one catches
# is documented in docs/detection.md.
FEATURE_NAMES: tuple[str, ...] = (
    "requests_last_hour",
    "interarrival_cv",
    "hours_active_24",
    "near_duplicate_share",
    "template_diversity",
    "unique_prompt_share",
    "prompt_tokens_log_mean",
    "prompt_length_cv",
    "completion_tokens_log_mean",
    "completion_to_prompt_ratio",
    "max_tokens_log_mean",
    "reasoning_share",
    "logprobs_share",
    "top_logprobs_mean",
    "multi_choice_share",
    "single_turn_share",
    "system_prompt_share",
    "sampling_spread",
    "greedy_share",
    "ip_prefixes",
    "user_agents",
    "error_rate",
    "rate_limited_share",
    "task_generation_share",
    "public_eval_share",
    "standalone_share",
    # The request's shape (detectors/request_shape.py): what part of the prompts is the key's
    # recurring template, how long answers are against the new text, soft labels on
    # generated text, tool loops, turns the model wrote, judgements, rewritten instructions.
    "template_share",
    "variable_tokens_log_mean",
    "answer_to_variable_ratio",
    "logprobs_generated_share",
    "tool_use_share",
    "tool_results_share",
    "toolset_diversity",
    "mirrored_turn_share",
    "judgement_share",
    "rewrite_share",
    # Long-term: distinct tasks the key has sent in its lifetime, log1p: the smaller of its
    # distinct prompts and its distinct lines (two bounded sketches, detectors/task_sketch.py).
    "distinct_tasks_log",
)
LABEL_TOKENS = 8  # answers of at most this many tokens are labels (classification), not text


@dataclass(slots=True)
class _Slot:
    """What the window remembers of one request, to undo it when it leaves."""

    ts: float
    bands: tuple[int, ...]
    near_duplicate: bool
    template_head: int
    user_hash: str
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int
    reasoning: bool
    logprobs: bool
    top_logprobs: int
    multi_choice: bool
    single_turn: bool
    has_system: bool
    sampling: tuple
    greedy: bool
    ip_prefix: str
    user_agent: str
    error: bool
    rate_limited: bool
    task_generation: bool = False
    continued: bool = False
    user_chars: int = 0
    segments: tuple = ()
    tool_use: bool = False
    tool_results: bool = False
    toolset: str = ""
    assistant_hash: str = ""
    mirrored: bool = False
    judgement: bool = False
    rewrite: bool = False
    logprobs_generated: bool = False
    # Derived, never stored: this slot's share of the template features, as of the last
    # time a line it holds started or stopped recurring (see KeyWindow._template_features).
    template: int = field(default=0, compare=False)
    answered_eighths: int = field(default=0, compare=False)
    log_variable: float = field(default=0.0, compare=False)


def _bump(counter: Counter, item, sign: int) -> None:
    """Count up or down, deleting at zero so `len(counter)` stays the distinct count."""
    value = counter[item] + sign
    if value:
        counter[item] = value
    else:
        del counter[item]


def _gap_us(earlier: float, later: float) -> int:
    """Whole microseconds: integer sums add and subtract exactly, in any order."""
    return max(round((later - earlier) * 1_000_000), 0)


_LOG_SCALE = 2**32


def _log_fixed(count: int) -> int:
    return round(math.log1p(count) * _LOG_SCALE)


def _generated(event: RequestFeatures) -> bool:
    """The answer was text, not a label: longer than LABEL_TOKENS, or asked to be when no
    usage says (unknown length with no max_tokens counts as not generated)."""
    if event.completion_tokens >= 0:
        return event.completion_tokens > LABEL_TOKENS
    return event.max_tokens > LABEL_TOKENS


_LOG_VARIABLE = operator.attrgetter("log_variable")


def _bands(fingerprint: int) -> tuple[int, ...]:
    return tuple((band << 16) | ((fingerprint >> (16 * band)) & 0xFFFF) for band in range(BANDS))


class KeyWindow:
    """One API key's recent behaviour; `update` per request, `features` when scoring."""

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self.size = size
        self.slots: deque[_Slot] = deque()
        self.requests_seen = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._band_counts: Counter = Counter()
        self._heads: Counter = Counter()
        self._prompts: Counter = Counter()
        self._sampling: Counter = Counter()
        self._ips: Counter = Counter()
        self._agents: Counter = Counter()
        # Line segment digest -> the slots holding it, oldest first: a line recurs (is the
        # key's template) while two or more hold it.
        self._holders: dict[int, list[_Slot]] = {}
        self._stale: dict[int, _Slot] = {}  # id -> slot whose template share must be recomputed
        self._assistants: Counter = Counter()
        self._toolsets: Counter = Counter()
        self.tasks = TaskSketch()
        self.lines = TaskSketch()
        self._sums = Counter()
        self._iat_sum = 0
        self._iat_sq = 0
        self._iat_n = 0
        self._minute_counts = [0] * 60
        self._minute_stamp = [-1] * 60
        self._hour_stamp = [-1] * 24

    def update(self, event: RequestFeatures) -> None:
        """Add one finished request; drop the oldest if the window is full."""
        if self.last_ts is not None and self.slots:
            gap = _gap_us(self.last_ts, event.ts)
            self._iat_sum += gap
            self._iat_sq += gap * gap
            self._iat_n += 1
        bands = _bands(event.template_fp)
        near_duplicate = any(band in self._band_counts for band in bands)
        slot = _Slot(
            ts=event.ts,
            bands=bands,
            near_duplicate=near_duplicate,
            template_head=event.template_head,
            user_hash=event.user_hash,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            max_tokens=event.max_tokens,
            reasoning=event.reasoning_marker,
            logprobs=event.logprobs,
            top_logprobs=event.top_logprobs,
            multi_choice=event.n > 1,
            single_turn=event.message_count <= 1 or (event.message_count == 2 and bool(event.system_hash)),
            has_system=bool(event.system_hash),
            sampling=(event.model, round(event.temperature, 2), round(event.top_p, 2), event.max_tokens),
            greedy=event.temperature == 0,
            ip_prefix=event.ip_prefix,
            user_agent=event.ua_hash,
            error=event.status >= 400 and event.status != 429,
            rate_limited=event.status == 429,
            task_generation=event.task_generation_marker,
            # Its previous user turn was this key's newest turn earlier in the window: the
            # next turn of a real conversation, not history made up around a new task.
            continued=bool(event.previous_user_hash) and event.previous_user_hash in self._prompts,
            user_chars=event.user_chars,
            segments=parse_segments(event.segments),
            tool_use=event.has_tools,
            tool_results=event.tool_results > 0,
            toolset=event.toolset,
            assistant_hash=event.assistant_hash,
            # The model wrote this user turn: it is an assistant turn of another of the key's
            # conversations, or this request resends as assistant what another sent as user.
            mirrored=(bool(event.user_hash) and event.user_hash in self._assistants)
            or (bool(event.assistant_hash) and event.assistant_hash in self._prompts),
            judgement=event.judgement_marker,
            rewrite=event.rewrite_marker,
            logprobs_generated=event.logprobs and _generated(event),
        )
        self.tasks.add(event.user_hash)
        # One line or none (a short task, or a line recorded without them), or a request to
        # invent new tasks (its tasks are in the answer, whatever seed lines it reuses): the
        # prompt counts as the line.
        if len(slot.segments) >= 2 and not slot.task_generation:
            for digest, _ in slot.segments:
                self.lines.add_line(digest)
        else:
            self.lines.add(event.user_hash)
        self._add(slot, +1)
        self.slots.append(slot)
        if len(self.slots) > self.size:
            old = self.slots.popleft()
            self._add(old, -1)
            gap = _gap_us(old.ts, self.slots[0].ts)
            self._iat_sum -= gap
            self._iat_sq -= gap * gap
            self._iat_n -= 1
        self._count_time(event.ts)
        self.requests_seen += 1
        self.first_ts = event.ts if self.first_ts is None else self.first_ts
        self.last_ts = event.ts

    def _add(self, slot: _Slot, sign: int) -> None:
        for band in slot.bands:
            _bump(self._band_counts, band, sign)
        _bump(self._heads, slot.template_head, sign)
        _bump(self._prompts, slot.user_hash, sign)
        _bump(self._sampling, slot.sampling, sign)
        _bump(self._ips, slot.ip_prefix, sign)
        _bump(self._agents, slot.user_agent, sign)
        sums = self._sums
        sums["near_duplicate"] += sign * slot.near_duplicate
        sums["prompt_tokens"] += sign * slot.prompt_tokens
        sums["prompt_tokens_sq"] += sign * slot.prompt_tokens * slot.prompt_tokens
        sums["log_prompt"] += sign * _log_fixed(slot.prompt_tokens)
        if slot.completion_tokens >= 0:  # -1: no usage on the line, unknown
            sums["completion_known"] += sign
            sums["log_completion"] += sign * _log_fixed(slot.completion_tokens)
            sums["completion_tokens"] += sign * slot.completion_tokens
            sums["prompt_tokens_answered"] += sign * slot.prompt_tokens
        if slot.max_tokens > 0:  # 0: not asked, the model's own limit
            sums["max_tokens_known"] += sign
            sums["log_max_tokens"] += sign * _log_fixed(slot.max_tokens)
        if slot.sampling[1] >= 0:  # -1: not sent
            sums["temperature_known"] += sign
        sums["reasoning"] += sign * slot.reasoning
        sums["logprobs"] += sign * slot.logprobs
        sums["top_logprobs"] += sign * slot.top_logprobs
        sums["multi_choice"] += sign * slot.multi_choice
        sums["single_turn"] += sign * slot.single_turn
        sums["has_system"] += sign * slot.has_system
        sums["greedy"] += sign * slot.greedy
        sums["error"] += sign * slot.error
        sums["rate_limited"] += sign * slot.rate_limited
        sums["task_generation"] += sign * slot.task_generation
        sums["public_eval"] += sign * is_public_eval(slot.user_hash)
        sums["continued"] += sign * slot.continued
        self._count_segments(slot, sign)
        if slot.assistant_hash:
            _bump(self._assistants, slot.assistant_hash, sign)
        if slot.toolset:
            _bump(self._toolsets, slot.toolset, sign)
        sums["user_chars"] += sign * slot.user_chars
        sums["tool_use"] += sign * slot.tool_use
        sums["tool_results"] += sign * slot.tool_results
        sums["mirrored"] += sign * slot.mirrored
        sums["judgement"] += sign * slot.judgement
        sums["rewrite"] += sign * slot.rewrite
        sums["logprobs_generated"] += sign * slot.logprobs_generated

    def _count_time(self, ts: float) -> None:
        minute = int(ts // 60)
        index = minute % 60
        if self._minute_stamp[index] != minute:
            self._minute_stamp[index] = minute
            self._minute_counts[index] = 0
        self._minute_counts[index] += 1
        hour = int(ts // 3600)
        self._hour_stamp[hour % 24] = hour

    def features(self) -> list[float]:
        """The window features in `FEATURE_NAMES` order; NaN where too few requests carried
        the field a feature reads (see `MIN_KNOWN`): unknown, never zero."""
        n = len(self.slots)
        if n == 0:
            return [0.0] * len(FEATURE_NAMES)
        sums = self._sums
        now_minute = int(self.last_ts // 60)
        last_hour = sum(
            count for count, stamp in zip(self._minute_counts, self._minute_stamp) if now_minute - stamp < 60
        )
        now_hour = int(self.last_ts // 3600)
        hours_active = sum(1 for stamp in self._hour_stamp if stamp >= 0 and now_hour - stamp < 24)
        if self._iat_n >= 2:
            n_gaps, total = self._iat_n, self._iat_sum
            spread = n_gaps * self._iat_sq - total * total  # n**2 * variance, exact
            iat_cv = math.sqrt(spread) / total if total > 0 else 0.0
        else:
            iat_cv = 1.0
        mean_prompt = sums["prompt_tokens"] / n
        var_prompt = max(sums["prompt_tokens_sq"] / n - mean_prompt * mean_prompt, 0.0)
        answered, max_known, temperature_known = (
            sums["completion_known"], sums["max_tokens_known"], sums["temperature_known"])
        return [
            float(last_hour),
            iat_cv,
            float(hours_active),
            sums["near_duplicate"] / n,
            len(self._heads) / n,
            len(self._prompts) / n,
            sums["log_prompt"] / _LOG_SCALE / n,
            math.sqrt(var_prompt) / mean_prompt if mean_prompt > 0 else 0.0,
            sums["log_completion"] / _LOG_SCALE / answered if answered >= MIN_KNOWN else UNKNOWN,
            sums["completion_tokens"] / max(sums["prompt_tokens_answered"], 1) if answered >= MIN_KNOWN else UNKNOWN,
            sums["log_max_tokens"] / _LOG_SCALE / max_known if max_known >= MIN_KNOWN else UNKNOWN,
            sums["reasoning"] / n,
            sums["logprobs"] / n,
            sums["top_logprobs"] / n,
            sums["multi_choice"] / n,
            sums["single_turn"] / n,
            sums["has_system"] / n,
            len(self._sampling) / n,
            sums["greedy"] / temperature_known if temperature_known >= MIN_KNOWN else UNKNOWN,
            float(len(self._ips)),
            float(len(self._agents)),
            sums["error"] / n,
            sums["rate_limited"] / n,
            sums["task_generation"] / n,
            sums["public_eval"] / n,
            1.0 - sums["continued"] / n,
            *self._template_features(),
            sums["logprobs_generated"] / n,
            sums["tool_use"] / n,
            sums["tool_results"] / n,
            len(self._toolsets) / sums["tool_use"] if sums["tool_use"] >= MIN_KNOWN else 0.0,
            sums["mirrored"] / n,
            sums["judgement"] / n,
            sums["rewrite"] / n,
            math.log1p(min(self.tasks.estimate(), self.lines.estimate())),
        ]

    def _count_segments(self, slot: _Slot, sign: int) -> None:
        """Keeps each line's holders; a line starting or stopping to recur (one holder <-> two)
        is the only change that moves another slot's template share, so only then is it redone."""
        holders_of = self._holders
        stale = self._stale
        for digest, _ in slot.segments:
            holders = holders_of.get(digest)
            if sign > 0:
                if holders is None:
                    holders_of[digest] = [slot]
                    continue
                holders.append(slot)
                if len(holders) == 2:
                    for holder in holders:
                        stale[id(holder)] = holder
            else:
                del holders[0]  # slots leave oldest first
                if not holders:
                    del holders_of[digest]
                elif len(holders) == 1:
                    stale[id(holders[0])] = holders[0]
        if sign > 0:
            stale[id(slot)] = slot
        else:
            stale.pop(id(slot), None)
            self._sums["template_chars"] -= slot.template
            self._sums["answered_eighths"] -= slot.answered_eighths

    def _template_share(self, slot: _Slot) -> None:
        """Recomputes one slot's share of the template features and moves the window's sums."""
        if slot.user_chars == 0 and slot.prompt_tokens > 0:
            template = 0
            variable_tokens = float(slot.prompt_tokens)  # a line without its text features: the whole prompt
        else:
            holders_of = self._holders
            template = min(sum(chars for digest, chars in slot.segments if len(holders_of[digest]) >= 2),
                           slot.user_chars)
            # At least half the turn is new text: lines of a document that recur (one
            # document under several instructions) must not pass for a short task.
            variable_tokens = max(slot.user_chars - template, slot.user_chars / 2) / 4
        # New-text tokens are multiples of 1/8, so their sum is kept exactly as an integer.
        answered_eighths = round(8 * max(variable_tokens, 1.0)) if slot.completion_tokens >= 0 else 0
        sums = self._sums
        sums["template_chars"] += template - slot.template
        sums["answered_eighths"] += answered_eighths - slot.answered_eighths
        slot.template, slot.answered_eighths = template, answered_eighths
        slot.log_variable = math.log1p(variable_tokens)

    def _template_features(self) -> tuple[float, float, float]:
        """Template share, new-text length and answer-to-new-text ratio: a line that recurs in
        the window is the key's template; the rest of each newest user turn is its new text.
        Only slots a change of recurrence touched are recomputed; the log sum runs over the
        window in order, so it is the very float a full pass gives."""
        for slot in self._stale.values():
            self._template_share(slot)
        self._stale.clear()
        sums = self._sums
        n = len(self.slots)
        log_variable = reduce(operator.add, map(_LOG_VARIABLE, self.slots), 0.0)
        user_chars = sums["user_chars"]
        return (
            float(sums["template_chars"]) / user_chars if user_chars > 0 else 0.0,
            log_variable / n,
            sums["completion_tokens"] / (sums["answered_eighths"] / 8) if sums["completion_known"] >= MIN_KNOWN
            else UNKNOWN,
        )

    def to_dict(self) -> dict:
        """Plain data for a checkpoint; `from_dict` rebuilds the running sums from it."""
        return {
            "size": self.size,
            "slots": [
                [slot.ts, list(slot.bands), slot.near_duplicate, slot.template_head, slot.user_hash,
                 slot.prompt_tokens, slot.completion_tokens, slot.max_tokens, slot.reasoning, slot.logprobs,
                 slot.top_logprobs, slot.multi_choice, slot.single_turn, slot.has_system, list(slot.sampling),
                 slot.greedy, slot.ip_prefix, slot.user_agent, slot.error, slot.rate_limited, slot.task_generation,
                 slot.continued, slot.user_chars, [list(pair) for pair in slot.segments], slot.tool_use,
                 slot.tool_results, slot.toolset, slot.assistant_hash, slot.mirrored, slot.judgement, slot.rewrite,
                 slot.logprobs_generated]
                for slot in self.slots
            ],
            "requests_seen": self.requests_seen,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "minute_counts": list(self._minute_counts),
            "minute_stamp": list(self._minute_stamp),
            "hour_stamp": list(self._hour_stamp),
            "tasks": self.tasks.to_list(),
            "lines": self.lines.to_list(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "KeyWindow":
        window = cls(data["size"])
        previous = None
        for stored in data["slots"]:
            values = list(stored)
            values[1] = tuple(values[1])
            values[14] = tuple(values[14])
            if len(values) > 23:
                values[23] = tuple(tuple(pair) for pair in values[23])
            slot = _Slot(*values)  # older checkpoints lack the last fields, which read as False
            window._add(slot, +1)
            window.slots.append(slot)
            if previous is not None:
                gap = _gap_us(previous.ts, slot.ts)
                window._iat_sum += gap
                window._iat_sq += gap * gap
                window._iat_n += 1
            previous = slot
        window.requests_seen = data["requests_seen"]
        window.first_ts = data["first_ts"]
        window.last_ts = data["last_ts"]
        window._minute_counts = list(data["minute_counts"])
        window._minute_stamp = list(data["minute_stamp"])
        window._hour_stamp = list(data["hour_stamp"])
        window.tasks = TaskSketch.from_list(data.get("tasks", []))
        # Older checkpoints have no line sketch: the prompt sketch stands in (min of the two).
        window.lines = TaskSketch.from_list(data.get("lines", data.get("tasks", [])))
        return window

    def feature_map(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.features()))
