"""What a request's shape says beyond its parameters: its newest user turn cut into line
segments (so a window can tell a key's recurring template from the new text it sends),
tool results fed back, the tool set offered, the assistant turn it resends, and whether it
asks for a judgement or for an instruction to be rewritten. Hashes and counts only.

Kept apart from features.py so each stays small; `request_features` calls it once.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

MAX_SEGMENTS = 8
MIN_SEGMENT_CHARS = 12  # shorter lines ("Answer:", blank) carry no template of their own
TOOL_ROLES = frozenset({"tool", "function"})
TOOL_OUTPUT_TYPES = frozenset({"function_call_output", "tool_result", "computer_call_output"})


def segments(text: str, lowered: str | None = None) -> str:
    """`hash:chars` of up to 8 of the longest lines of the text (CRC-32 of the lowercased,
    whitespace-collapsed line), comma-joined: a line that recurs across a key's requests is
    its template, the rest is what each request brings. `lowered`: `text.lower()`, when the
    caller has it; for ASCII text its lines are the text's, lowercased, at the same lengths."""
    if not text:
        return ""
    ascii_lowered = lowered is not None and text.isascii()
    source = lowered if ascii_lowered else text
    # str.split("\n") steps through every character; a single line is found by one memchr.
    lines = [line for line in (source.split("\n") if "\n" in source else (source,)) if len(line) >= MIN_SEGMENT_CHARS]
    if len(lines) > MAX_SEGMENTS:
        lines = sorted(lines, key=len, reverse=True)[:MAX_SEGMENTS]
    return ",".join(f"{_line_hash(line if ascii_lowered else line.lower())}:{len(line)}" for line in lines)


# ASCII whitespace other than the space (str.split() splits on these too; "\n" ends a line).
_OTHER_ASCII_SPACE = ("\t", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f")


def _line_hash(lowered: str) -> str:
    """Hex CRC-32 of `' '.join(lowered.split())`. An ASCII line with nothing to collapse (the
    usual case) is hashed as it is: splitting it into words cost most of `segments`."""
    if (lowered.isascii() and lowered[0] != " " and lowered[-1] != " " and "  " not in lowered
            and not any(map(lowered.__contains__, _OTHER_ASCII_SPACE))):  # one memchr each
        return format(zlib.crc32(lowered.encode("ascii")), "x")
    return format(zlib.crc32(" ".join(lowered.split()).encode("utf-8", "surrogatepass")), "x")


def parse_segments(packed: str) -> tuple[tuple[int, int], ...]:
    """`segments` back as (hash, chars) pairs; an unreadable part is skipped."""
    if not packed:
        return ()
    parts = [part.partition(":") for part in packed.split(",")]
    try:  # the usual case: every part readable
        return tuple([(int(digest, 16), int(chars)) for digest, _, chars in parts])
    except ValueError:
        pass
    pairs = []
    for digest, _, chars in parts:
        try:
            pairs.append((int(digest, 16), int(chars)))
        except ValueError:
            continue
    return tuple(pairs)


def tool_results(items: object) -> int:
    """How many tool or function results the request feeds back to the model (chat `tool`
    messages, responses `function_call_output` items): an agent loop's later steps."""
    if not isinstance(items, list):
        return 0
    count = 0
    for item in items:
        if isinstance(item, Mapping) and (item.get("role") in TOOL_ROLES or item.get("type") in TOOL_OUTPUT_TYPES):
            count += 1
    return count


def toolset_hash(body: Mapping) -> str:
    """8 hex of the sorted names of the tools offered; "" when none: a key whose tasks come
    with ever-new tool sets is collecting tool use, an agent product offers its own few."""
    tools = body.get("tools") or body.get("functions")
    if not isinstance(tools, list) or not tools:
        return ""
    names = []
    for tool in tools[:64]:
        if not isinstance(tool, Mapping):
            continue
        spec = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = spec.get("name")
        names.append(name[:64] if isinstance(name, str) else "?")
    return format(zlib.crc32("\n".join(sorted(names)).encode("utf-8", "surrogatepass")), "08x")


def last_assistant_text(messages: object) -> str:
    """The newest assistant turn a request resends as history ("" when none)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping)
                                 and isinstance(p.get("text"), str))
            return ""
    return ""


# A judgement asked of the model: a rubric or a scale, or a comparison of candidates. Each
# pattern runs only when its anchor word is in the text: one alternation over the whole
# prompt cost milliseconds on long prompts.
# (anchors, starts, pattern): a match needs one of `anchors` in the text and begins with one of `starts`.
_JUDGE_PATTERNS: tuple[tuple[tuple[str, ...], tuple[str, ...], re.Pattern], ...] = (
    (("rate", "score", "grade"), ("rate", "score", "grade"),
     re.compile(r"\b(?:rate|score|grade)\b[^.\n]{0,80}\b(?:response|answer|output|completion|reply|assistant)s?\b")),
    (("on a scale ",), ("on a scale ",), re.compile(r"\bon a scale (?:of|from) \d+\s*(?:to|-)\s*\d+")),
    (("better",), ("which", "whether"),
     re.compile(r"\b(?:which|whether)\b[^.\n]{0,60}\b(?:response|answer|assistant|output)\b[^.\n]{0,40}\bbetter\b")),
    (("[[a]]", "rubric"), ("[[a]]", "rubric"), re.compile(r"\[\[a\]\]|\brubric\b")),
    (("act as a",), ("act as a",), re.compile(r"\bact as an? (?:impartial )?judge\b")),
)
MAX_TRIES = 64
_PAIRS = (("response a", "response b"), ("assistant a", "assistant b"))
PAIR_SPAN = 4000
# An instruction to be rewritten into a new one: Evol-Instruct's deepening / widening steps.
_REWRITE_ANCHORS = ("prompt", "instruction", "question")
_REWRITE = re.compile(
    r"(?:\b(?:rewrite|rephrase|evolve|transform|complicate|make)\b[^.\n]{0,60}\b(?:prompt|instruction|question)\b"
    r"[^.\n]{0,80}\b(?:more|harder|complex|difficult|rare|different|new)\b"
    r"|#\s*(?:the )?(?:given|created|rewritten|new) (?:prompt|instruction)\s*#|\b(?:given|rewritten|created) (?:prompt|instruction):"
    r"|\bcreate a (?:brand )?new (?:prompt|instruction|question)\b)"
)
_REWRITE_STARTS = ("rewrite", "rephrase", "evolve", "transform", "complicate", "make", "#", "given ", "rewritten ",
                   "created ", "create a ")


def _search(pattern: re.Pattern, text: str, starts: tuple[str, ...], end: int) -> bool:
    """`pattern.search(text, 0, end) is not None` for a pattern whose every match begins with
    one of `starts`: tried only where one occurs (a leading `\\b` keeps `re` from skipping
    ahead by itself, so a plain search runs the pattern at every character)."""
    for start in starts:
        at = text.find(start, 0, end)
        tries = 0
        while at >= 0:
            if pattern.match(text, at, end) is not None:
                return True
            tries += 1
            if tries == MAX_TRIES:  # a literal on every line: one scan of the rest instead
                if pattern.search(text, at + 1, end) is not None:
                    return True
                break
            at = text.find(start, at + 1, end)
    return False


def asks_for_judgement(lowered: str) -> bool:
    """True when lowercased prompt text asks the model to grade or compare answers."""
    text = lowered[:20_000]
    for anchors, starts, pattern in _JUDGE_PATTERNS:
        if any(map(text.__contains__, anchors)) and _search(pattern, text, starts, len(text)):
            return True
    for first, second in _PAIRS:
        at = text.find(first)
        if at >= 0 and 0 <= text.find(second, at + len(first)) - at <= PAIR_SPAN:
            return True
    return False


def asks_for_rewrite(lowered: str) -> bool:
    """True when lowercased prompt text asks for an instruction to be rewritten into a new,
    harder or different one (instruction evolution), not for a task to be done."""
    if not any(map(lowered.__contains__, _REWRITE_ANCHORS)):
        return False
    return _search(_REWRITE, lowered, _REWRITE_STARTS, min(len(lowered), 20_000))
