"""Prompt text -> template fingerprints, duplicate hashes and reasoning-elicitation markers.

Distillation scripts send one template thousands of times with different fillers. Masking
the fillers (numbers, quotes, names, URLs, e-mails, code) and SimHashing what is left gives
prompts from one template nearly the same 64-bit fingerprint, whatever was filled in.

Every step is either a regex that starts with a literal (so `re` jumps between hits) and
runs only when that literal occurs, or a vectorised numpy pass over the UTF-8 bytes: the
gateway pays this once per request, and per-token Python work would dominate it.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

HEAD_CHARS = 2000
TAIL_CHARS = 500

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

# Each marker with a word it contains, so text without any of those words is cleared with
# a handful of substring searches instead of one search per marker.
_MARKERS_BY_ANCHOR = {
    # English
    "step": ("step by step", "step-by-step", "reason step"),
    "reason": (
        "show your reasoning", "explain your reasoning", "walk me through your reasoning",
        "detailed reasoning", "full reasoning", "reasoning trace",
    ),
    "think": ("think through", "let's think", "let’s think", "<think>"),
    "thought": ("chain of thought", "chain-of-thought"),
    "work": ("show your work",),
    # Spanish, Portuguese
    "paso": ("paso a paso", "muestra tu razonamiento"),
    "razonamiento": ("muestra tu razonamiento",),
    "passo": ("passo a passo",),
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
_ASCII_ANCHORS = tuple((a, ms) for a, ms in _MARKERS_BY_ANCHOR.items() if a.isascii())
_OTHER_ANCHORS = tuple((a, ms) for a, ms in _MARKERS_BY_ANCHOR.items() if not a.isascii())


def asks_for_reasoning(lowered: str) -> bool:
    """True when lowercased prompt text asks for a reasoning trace, in any of ten languages."""
    for anchor, markers in _ASCII_ANCHORS:
        if anchor in lowered and any(marker in lowered for marker in markers):
            return True
    if lowered.isascii():
        return False
    return any(anchor in lowered and any(m in lowered for m in markers) for anchor, markers in _OTHER_ANCHORS)


def short_hash(text: str) -> str:
    """16 hex of sha256: enough to tell prompts apart, short enough to store per request."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def normalise(lowered: str) -> str:
    """Collapses whitespace so re-wrapped copies of one prompt hash the same."""
    return " ".join(lowered.split())


def fingerprint_window(text: str) -> str:
    """The part of a prompt that is fingerprinted: the first 2,000 and last 500 characters.

    Templates show in the instructions at the start and the question at the end; the middle
    of a long prompt is mostly pasted material, and skipping it keeps the cost bounded.
    """
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


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
_MAX_BYTES = (HEAD_CHARS + TAIL_CHARS + 1) * 4 + 64
_WORD = np.zeros(256, dtype=bool)
_WORD[list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_<>")] = True
_WORD[0x80:] = True
_CJK_LEAD = np.zeros(256, dtype=bool)
_CJK_LEAD[0xE3:0xEE] = True  # U+3000..U+DFFF: CJK punctuation, kana, ideographs, hangul
_JOINED_NUMBER = re.compile(rb"[0-9][.,:/-](?=[0-9])")

# What a byte tells about the token it starts, ends or precedes, one bit each; a token's
# four context bytes (two before it, its first two) are read as one little-endian uint32.
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
_AFTER_MID_SENTENCE_SPACE = np.uint32((_SPACE | _BREAK) | (_SPACE | _BREAK) << 8)
_MID_SENTENCE_SPACE = np.uint32(_SPACE << 8)
_THIRD_UPPER = np.uint32(_UPPER << 16)
_THIRD_DIGIT = np.uint32(_DIGIT << 16)

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
# 2**16 fixed rows of 64 random bits; a fingerprint bit is set when most shingles' rows
# have it set. One gather and one matrix-vector product instead of per-bit work.
_ROW_BITS = 16
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
    """UTF-8 after two spaces and before one, so every token has context bytes around it."""
    return b"  " + text.encode("utf-8", "surrogatepass")[: _MAX_BYTES - 3] + b" "


def _token_edges(data: bytes, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte before each token and each token's last byte."""
    word = _WORD.take(buf)
    for joiner in _JOINED_NUMBER.finditer(data):
        word[joiner.start() + 1] = True
    if data.isascii():
        edges = np.flatnonzero(word[1:] != word[:-1])
        return edges[0::2], edges[1::2]
    lead = _CJK_LEAD.take(buf)
    cjk = lead.copy()
    cjk[1:] |= lead[:-1]
    cjk[2:] |= lead[:-2]
    start = word.copy()
    start[1:] &= ~word[:-1] | lead[1:] | (cjk[:-1] & ~cjk[1:])
    end = word.copy()
    end[:-1] &= start[1:] | ~word[1:]
    return np.flatnonzero(start) - 1, np.flatnonzero(end)


def _context(data: bytes, offsets: np.ndarray) -> np.ndarray:
    """The context bits of the four bytes from each offset, as one uint32 per offset."""
    bits = data.translate(_CONTEXT)
    return np.ndarray((len(bits) - 3,), dtype="<u4", buffer=bits, strides=(1,)).take(offsets)


def _tokens(window: str) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Lowercased bytes, each token's first byte and end, and the token hashes with numbers
    and names masked.

    A name is a capitalised token (`Paris`, `Öl`, `Москва`, `iPhone`) after a space that
    follows no sentence end; a number is any token starting or ending with a digit (`42`,
    `3rd`, `q3`, `1,250.5`).
    """
    text = mask_spans(window)
    lowered_text = text.lower()
    lowered = _encode(lowered_text)
    buf = np.frombuffer(lowered, dtype=np.uint8)
    before, last = _token_edges(lowered, buf)
    first = before + 1
    prefix = np.cumsum(buf * _POWERS[: len(buf)])
    hashes = (prefix.take(last) - prefix.take(before)) * _INVERSES.take(before)
    original = _encode(text) if lowered_text != text else lowered
    if len(original) != len(lowered):
        original = lowered
    leading = _context(original, before - 1)
    if original.isascii():
        hashes[leading & (_AFTER_MID_SENTENCE_SPACE | _THIRD_UPPER) == _MID_SENTENCE_SPACE | _THIRD_UPPER] = _NAME
    elif original is not lowered:
        raw = np.frombuffer(original, dtype=np.uint8)
        capital = (raw.take(first) != buf.take(first)) | (raw.take(first + 1) != buf.take(first + 1))
        hashes[capital & (leading & _AFTER_MID_SENTENCE_SPACE == _MID_SENTENCE_SPACE)] = _NAME
    hashes[(leading | _context(lowered, last - 2)) & _THIRD_DIGIT != 0] = _NUM
    return lowered, first, last + 1, hashes


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
    lowered, starts, ends, hashes = _tokens(window)
    words = []
    for s, e, h in zip(starts.tolist(), ends.tolist(), hashes.tolist()):
        words.append("<num>" if h == _NUM else "<name>" if h == _NAME else lowered[s:e].decode("utf-8", "replace"))
    return " ".join(words)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two fingerprints."""
    return (a ^ b).bit_count()
