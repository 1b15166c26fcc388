"""Prompt text -> template fingerprints, duplicate hashes, reasoning-elicitation and task-generation markers.

Distillation scripts send one template thousands of times with different fillers. Masking
the fillers (numbers, quotes, names, URLs, e-mails, code) and SimHashing what is left gives
prompts from one template nearly the same 64-bit fingerprint, whatever was filled in.

The gateway pays this once per request, so there is no per-token Python work: each step is
a regex that starts with a literal (so `re` jumps between hits) and runs only when that
literal occurs, a bytes.translate, or a vectorised numpy pass over the UTF-8 bytes. About
50 µs for 2,000 characters, against about 3 ms for the same SimHash in pure Python.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

HEAD_BYTES = 2000
TAIL_BYTES = 500

_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_URL = re.compile(r"://[^\s<>\"'`]+")
_WWW = re.compile(r"www\.[^\s<>\"'`]+")
_EMAIL_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+")
_EMAIL_LOCAL = re.compile(r"[\w.+-]+")  # matched on the reversed text before the @
_QUOTES = (
    ('"', re.compile(r"\"[^\"]*\"")),
    ("'", re.compile(r"'(?<!\w')[^'\n]*'(?!\w)")),
    ("“", re.compile(r"“[^”]*”")),
    ("‘", re.compile(r"‘[^’]*’")),
    ("«", re.compile(r"«[^»]*»")),
    ("„", re.compile(r"„[^“”]*[“”]")),
    ("「", re.compile(r"「[^」]*」")),
    ("『", re.compile(r"『[^』]*』")),
)

# Each marker under a word it contains, so text with none of those words is cleared with a
# handful of substring searches instead of one search per marker. Markers with non-ASCII
# letters are only looked for in non-ASCII text.
_MARKERS_BY_ANCHOR = {
    # English
    "step": ("step by step", "step-by-step", "reason step"),
    "reason": (
        "show your reasoning", "explain your reasoning", "walk me through your reasoning",
        "detailed reasoning", "full reasoning", "reasoning trace",
    ),
    "think": ("think through", "let's think", "let’s think", "<think>"),
    "chain": ("chain of thought", "chain-of-thought"),
    "your work": ("show your work",),
    # Spanish, Portuguese
    "pas": ("paso a paso", "passo a passo"),
    "razonamiento": ("muestra tu razonamiento",),
    # French
    "raisonnement": ("raisonnement",),
    "étape": ("étape par étape",),
    # German
    "schritt": ("schritt für schritt",),
    "überlegungen": ("zeige deine überlegungen",),
    "begründe": ("begründe",),
    # Russian
    "шаг": ("шаг за шагом", "пошагово"),
    "рассуждени": ("рассуждени",),
    # Chinese
    "步": ("一步一步", "逐步"),
    "推理": ("详细推理", "推理过程"),
    "思考过程": ("思考过程",),
    # Japanese
    "ステップバイステップ": ("ステップバイステップ",),
    "段階的に": ("段階的に",),
    # Korean
    "단계별로": ("단계별로",),
    "차근차근": ("차근차근",),
}
REASONING_MARKERS = tuple(sorted({m for ms in _MARKERS_BY_ANCHOR.values() for m in ms}))
_ASCII_MARKERS = tuple(
    (anchor, tuple(m for m in markers if m.isascii()))
    for anchor, markers in _MARKERS_BY_ANCHOR.items()
    if any(m.isascii() for m in markers)
)
_ALL_MARKERS = tuple(_MARKERS_BY_ANCHOR.items())


def asks_for_reasoning(lowered: str) -> bool:
    """True when lowercased prompt text asks for a reasoning trace, in any of ten languages."""
    for anchor, markers in _ASCII_MARKERS if lowered.isascii() else _ALL_MARKERS:
        if anchor in lowered and any(marker in lowered for marker in markers):
            return True
    return False


# Asking the model to invent new tasks for a dataset: the instruction-generation step of
# self-instruct / Alpaca ("come up with a set of 20 diverse task instructions", "Come up
# with a series of tasks:"), or the few-shot "N. Instruction:" lists they build. A request
# for "instructions" alone (how to assemble a shelf) needs a count, a set or "new/diverse".
_TASK_NOUNS = ("task", "instruction", "prompts")
_TASK_REQUEST = re.compile(
    r"\b(?:come up with|generate|create|write|brainstorm|produce|propose|invent)\b([^.\n:]{0,60}?)"
    r"\b(tasks|instructions|prompts)\b"
)
_TASK_QUALIFIER = re.compile(
    r"\b(?:set|series|list|batch|collection|\d+|ten|twenty|fifty|hundred|several|diverse|new|more|different"
    r"|unique|varied|novel|additional)\b"
)
_NUMBERED_INSTRUCTION = re.compile(r"(?:^|\n)\s*\d+\.\s*instruction:")


def asks_for_new_tasks(lowered: str) -> bool:
    """True when lowercased prompt text asks the model to invent new tasks or instructions
    (synthetic instruction data), not to answer one."""
    if not any(noun in lowered for noun in _TASK_NOUNS):
        return False
    for match in _TASK_REQUEST.finditer(lowered):
        if _TASK_QUALIFIER.search(match.group(1)):
            return True
    return len(_NUMBERED_INSTRUCTION.findall(lowered, 0, 20_000)) >= 2


def short_hash(text: str) -> str:
    """16 hex of sha256: enough to tell prompts apart, short enough to store per request."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_WHITESPACE_TO_SPACE = bytes(0x20 if chr(byte) in " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f" else byte for byte in range(256))


def duplicate_hash(lowered: str) -> str:
    """`short_hash` of the text with ASCII whitespace runs collapsed to one space and the ends
    stripped, so re-wrapped or re-indented copies of one prompt hash the same."""
    data = lowered.encode("utf-8", "surrogatepass").translate(_WHITESPACE_TO_SPACE)
    if len(data) < 512:
        return hashlib.sha256(b" ".join(data.split())).hexdigest()[:16]
    space = np.frombuffer(data, dtype=np.uint8) == 0x20
    repeated = space[1:] & space[:-1]
    if repeated.any():
        keep = np.ones(len(data), dtype=bool)
        keep[1:] = ~repeated
        data = np.frombuffer(data, dtype=np.uint8)[keep].tobytes()
    return hashlib.sha256(data.strip(b" ")).hexdigest()[:16]


def fingerprint_window(text: str) -> str:
    """The part of a prompt that is fingerprinted: its first 2,000 and last 500 UTF-8 bytes
    (characters, for ASCII), cut at character boundaries.

    Templates show in the instructions at the start and the question at the end; the middle
    of a long prompt is mostly pasted material. Counting bytes rather than characters
    bounds the cost in every script: 2,500 CJK characters would be 2,500 tokens.
    """
    limit = HEAD_BYTES + TAIL_BYTES
    if text.isascii():
        return text if len(text) <= limit else text[:HEAD_BYTES] + "\n" + text[-TAIL_BYTES:]
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:HEAD_BYTES].decode("utf-8", "ignore") + "\n" + data[-TAIL_BYTES:].decode("utf-8", "ignore")


# Placeholders are padded with the ASCII unit separator rather than spaces, so a name right
# after one ("'foo' into French") still reads as mid-sentence.
_PLACEHOLDER = {kind: f"\x1f<{kind}>\x1f" for kind in ("code", "url", "email", "str")}


def _mask_emails(text: str) -> str:
    pieces, last = [], 0
    for domain in _EMAIL_DOMAIN.finditer(text):
        at = domain.start()
        local = _EMAIL_LOCAL.match(text[max(last, at - 64) : at][::-1])
        if local is not None:
            pieces += (text[last : at - local.end()], _PLACEHOLDER["email"])
            last = domain.end()
    return "".join(pieces) + text[last:] if pieces else text


def mask_spans(text: str) -> str:
    """Replaces code, URLs, e-mails and quoted strings with placeholders. Numbers and names
    are masked per token later, in `template_fingerprint`."""
    if "`" in text:
        text = _INLINE_CODE.sub(_PLACEHOLDER["code"], _CODE_BLOCK.sub(_PLACEHOLDER["code"], text))
    if "://" in text:
        text = _URL.sub(_PLACEHOLDER["url"], text)
    if "www." in text:
        text = _WWW.sub(_PLACEHOLDER["url"], text)
    if "@" in text:
        text = _mask_emails(text)
    for quote, pattern in _QUOTES:
        if quote in text:
            text = pattern.sub(_PLACEHOLDER["str"], text)
    return text


# Bytes and tokens. A token is a run of letters, digits, `_`, `<`, `>` (so placeholders stay
# whole) and non-ASCII bytes; digits joined by . , : / - stay one number; each CJK, kana or
# hangul character is a token of its own, since those scripts do not separate words.
# Byte classes come from bytes.translate, several times cheaper than a numpy lookup.
_MAX_BYTES = (HEAD_BYTES + TAIL_BYTES + 1) * 4 + 64
_CLASS = bytearray(b" " * 256)  # w: word, d: digit, j: joins digits, space: separator
_CLASS[0x80:] = b"w" * 0x80
for _byte in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_<>":
    _CLASS[_byte] = ord("w")
for _byte in b"0123456789":
    _CLASS[_byte] = ord("d")
for _byte in b".,:/-":
    _CLASS[_byte] = ord("j")
_CLASS = bytes(_CLASS)
_IS_WORD = bytes(int(chr(byte) in "wd") for byte in range(256))
# Lead bytes of three-byte UTF-8: U+2000..U+2FFF is punctuation and symbols (separators);
# U+3000..U+FFFF holds CJK punctuation, kana, ideographs, hangul and fullwidth forms.
_SYMBOL_LEAD = 0xE2
_CJK_LEAD = np.zeros(256, dtype=bool)
_CJK_LEAD[0xE3:0xF0] = True

# What a byte tells about the token it precedes or belongs to, one bit each. The four bytes
# around a token's start (or end) are read at once, as one little-endian uint32.
_SPACE, _BREAK, _UPPER, _DIGIT = 1, 2, 4, 8
_CONTEXT = bytearray(256)
_CONTEXT[0x20] = _SPACE
for _byte in b".!?:\n\r\t":
    _CONTEXT[_byte] = _BREAK
for _byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CONTEXT[_byte] = _UPPER
for _byte in b"0123456789":
    _CONTEXT[_byte] = _DIGIT
_CONTEXT = bytes(_CONTEXT)


def _at(bits: int, position: int) -> np.uint32:
    return np.uint32(bits << 8 * position)


# Around a start: [byte before the space, the space, first byte, second byte].
_MID_SENTENCE_MASK = _at(_SPACE | _BREAK, 0) | _at(_SPACE | _BREAK, 1)
_MID_SENTENCE = _at(_SPACE, 1)
_NAME_MASK, _NAME_CONTEXT = _MID_SENTENCE_MASK | _at(_UPPER, 2), _MID_SENTENCE | _at(_UPPER, 2)
_FIRST_DIGIT = _at(_DIGIT, 2)
# Around an end: [byte before the last, last byte, two bytes after].
_LAST_DIGIT = _at(_DIGIT, 1)

# Token hashes: a polynomial hash of the bytes mod 2**64 by prefix sums, so each token costs
# one subtraction and one multiplication. Stable across processes and machines, unlike
# str.__hash__.
_BASE = 0x100000001B3
_POWERS = np.ones(_MAX_BYTES, dtype=np.uint64)
_POWERS[1:] = np.cumprod(np.full(_MAX_BYTES - 1, _BASE, dtype=np.uint64), dtype=np.uint64)
_INVERSES = np.cumprod(np.full(_MAX_BYTES, pow(_BASE, -1, 2**64), dtype=np.uint64), dtype=np.uint64)
_NUM = np.uint64(sum(byte * _BASE**i for i, byte in enumerate(b"<num>")) % 2**64)
_NAME = np.uint64(sum(byte * _BASE**i for i, byte in enumerate(b"<name>")) % 2**64)
_BIGRAM = np.uint64(0x9E3779B97F4A7C15)

# SimHash hyperplanes: each shingle hash picks (multiplicatively, by its top bits) one of
# 2**14 fixed rows of 64 pseudo-random bits; a fingerprint bit is set when most shingles'
# rows have it set. One gather and one matrix-vector product instead of per-bit work; the
# 4 MiB table keeps unrelated shingles sharing a row rare enough not to move distances.
_ROW_BITS = 14
_ROW_PICK = np.uint64(0xD6E8FEB86659FD93)
_ROW_SHIFT = np.uint64(64 - _ROW_BITS)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_HYPERPLANES = np.unpackbits(
    _splitmix64(np.arange(2**_ROW_BITS, dtype=np.uint64)).astype("<u8").view(np.uint8).reshape(-1, 8),
    axis=1,
    bitorder="little",
).astype(np.float32)
_ONES = np.ones(2 * _MAX_BYTES, dtype=np.float32)


def _encode(text: str) -> bytes:
    """UTF-8 between two spaces either side, so every token has context bytes around it."""
    return b"  " + text.encode("utf-8", "surrogatepass")[: _MAX_BYTES - 4] + b"  "


def _whole_characters(lead: np.ndarray) -> np.ndarray:
    """Marks the two continuation bytes after each marked three-byte lead byte too."""
    member = lead.copy()
    member[1:] |= lead[:-1]
    member[2:] |= lead[:-2]
    return member


def _token_edges(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The byte before each token and each token's last byte."""
    classes = data.translate(_CLASS)
    if b"djd" in classes:
        classes = classes.replace(b"djd", b"ddd")
        if b"djd" in classes:
            classes = classes.replace(b"djd", b"ddd")
    word = np.frombuffer(classes.translate(_IS_WORD), dtype=bool)
    if data.isascii():
        edges = (word[1:] != word[:-1]).nonzero()[0]
        return edges[0::2], edges[1::2]
    buf = np.frombuffer(data, dtype=np.uint8)
    word = word & ~_whole_characters(buf == _SYMBOL_LEAD)
    lead = _CJK_LEAD.take(buf)
    cjk = _whole_characters(lead)
    start = word.copy()
    start[1:] &= ~word[:-1] | lead[1:] | (cjk[:-1] & ~cjk[1:])
    end = word.copy()
    end[:-1] &= start[1:] | ~word[1:]
    return start.nonzero()[0] - 1, end.nonzero()[0]


def _context(data: bytes) -> np.ndarray:
    """Item i: the context bits of bytes i-1 .. i+2, as one uint32."""
    bits = b"\0" + data.translate(_CONTEXT)
    return np.ndarray((len(bits) - 3,), dtype="<u4", buffer=bits, strides=(1,))


def _tokens(window: str) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Lowercased bytes, the byte before each token and each token's last byte, and the
    token hashes with numbers and names masked.

    A name is a capitalised token (`Paris`, `Öl`, `Москва`, `iPhone`) after a space that
    follows no sentence end; a number is any token starting or ending with a digit (`42`,
    `3rd`, `q3`, `1,250.5`).
    """
    text = mask_spans(window)
    lowered_text = text.lower()
    lowered = _encode(lowered_text)
    buf = np.frombuffer(lowered, dtype=np.uint8)
    before, last = _token_edges(lowered)
    prefix = np.add.accumulate(buf * _POWERS[: len(buf)])
    hashes = (prefix.take(last) - prefix.take(before)) * _INVERSES.take(before)
    original = _encode(text) if lowered_text != text else lowered
    if len(original) != len(lowered):
        original = lowered
    context = _context(original)
    starts = context.take(before)
    if original is not lowered and original.isascii():
        hashes[starts & _NAME_MASK == _NAME_CONTEXT] = _NAME
    elif original is not lowered:
        raw, first = np.frombuffer(original, dtype=np.uint8), before + 1
        capital = (raw.take(first) != buf.take(first)) | (raw.take(first + 1) != buf.take(first + 1))
        hashes[capital & (starts & _MID_SENTENCE_MASK == _MID_SENTENCE)] = _NAME
    hashes[(starts & _FIRST_DIGIT) | (context.take(last) & _LAST_DIGIT) != 0] = _NUM
    return lowered, before, last, hashes


def template_fingerprint(window: str) -> tuple[int, int]:
    """(64-bit SimHash of the masked unigrams and bigrams, 32-bit hash of the first four).

    Unrelated prompts land about 32 bits apart; one template with other fillers a few bits.
    """
    _, _, _, hashes = _tokens(window)
    if len(hashes) == 0:
        return 0, 0
    head = zlib.crc32(hashes[:4].astype("<u8").tobytes())
    shingles = np.concatenate((hashes, (hashes[:-1] * _BIGRAM) ^ hashes[1:]))
    rows = ((shingles * _ROW_PICK) >> _ROW_SHIFT).view(np.int64)
    votes = _ONES[: len(shingles)] @ _HYPERPLANES.take(rows, axis=0)
    majority = votes > len(shingles) / 2
    return int.from_bytes(np.packbits(majority, bitorder="little").tobytes(), "little"), head


def template_text(window: str) -> str:
    """The masked tokens the fingerprint is computed from, for tests and for explaining why
    two prompts were judged one template."""
    lowered, before, last, hashes = _tokens(window)
    words = []
    for start, end, token in zip((before + 1).tolist(), (last + 1).tolist(), hashes.tolist()):
        placeholder = "<num>" if token == _NUM else "<name>" if token == _NAME else None
        words.append(placeholder or lowered[start:end].decode("utf-8", "replace"))
    return " ".join(words)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two fingerprints."""
    return (a ^ b).bit_count()
