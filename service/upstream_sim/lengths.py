"""How long an answer is: drawn per request from real serving traces, by the kind of request.

The tables are the shipped quantiles of traffic/data/traces/service_traces.json (Azure LLM
inference 2023, Mooncake, ServeGen; see traffic/data/SOURCES.md). In those traces prompt and
answer lengths are nearly independent (Spearman rho 0.07 or less), so a draw depends on what
the request asks for, not on how long its prompt is.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from traffic.traces import AZURE_CODE, AZURE_CONV, MOONCAKE, SERVEGEN_REASON, completion_tokens_at

SHORT, CHAT, LONG, CODE = "short", "chat", "long", "code"
# Each kind draws from one trace and a band of its quantiles: an essay is never 3 tokens
# long, a label never 900.
KIND_TABLES = {
    SHORT: (AZURE_CODE, 0.0, 0.9),          # median 13: labels, yes/no, one-line extractions
    CHAT: (AZURE_CONV, 0.02, 0.99),         # median ~125: an Azure conversation service
    LONG: (MOONCAKE, 0.2, 0.995),           # median ~400 in the band: Kimi's chat answers
    CODE: (MOONCAKE, 0.3, 0.995),
}
REASONING_TABLE = SERVEGEN_REASON           # DeepSeek-R1 answers (reasoning included), median ~500
EFFORT_SCALE = {"minimal": 0.25, "low": 0.5, "medium": 1.0, "high": 2.0}
# A cap this small says the caller wants a label, whatever the prompt reads like.
SHORT_CAP = 16

_SHORT = re.compile(
    r"\b(classify|classification|categor(y|ize|ise)|label|sentiment|yes or no|true or false|one word|single word|"
    r"only (the|with|a|one)|respond with (only|just)|answer with (only|just|a|one)|which (one|option)|"
    r"rate (it|this|the)|score from|on a scale|extract the|is (this|it) (spam|toxic|correct))\b", re.IGNORECASE)
_CODE = re.compile(
    r"```|\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|bash|regex|function|script|code|program|"
    r"implement|algorithm|class|compile|html|css|snippet)\b", re.IGNORECASE)
_LONG = re.compile(
    r"\b(write|explain|describe|essay|story|article|blog|poem|letter|detailed|in detail|step[- ]by[- ]step|"
    r"compare|discuss|generate|create|design|plan|outline|summar(y|ize|ise)|list|guide|tutorial|why|how)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class Ask:
    """What a request asks for, as far as its length goes."""

    kind: str
    reasoning: bool
    effort: str


def kind_of(text: str, cap: int | None) -> str:
    if cap is not None and cap <= SHORT_CAP or _SHORT.search(text):
        return SHORT
    if _CODE.search(text):
        return CODE
    return LONG if _LONG.search(text) else CHAT


def answer_tokens(rng: random.Random, kind: str) -> int:
    table, low, high = KIND_TABLES[kind]
    return completion_tokens_at(table, low + rng.random() * (high - low))


def reasoning_tokens(rng: random.Random, effort: str) -> int:
    """Thinking before the answer: a DeepSeek-R1 answer length, scaled by the effort asked for."""
    drawn = completion_tokens_at(REASONING_TABLE, 0.02 + rng.random() * 0.95)
    return max(8, round(drawn * EFFORT_SCALE.get(effort, 1.0)))
