"""Log probabilities of the tokens an answer is made of, shaped as OpenAI returns them.

The chosen token always ranks first among its alternatives, and the alternatives share
what probability is left, so each top list is sorted and sums to at most one."""

from __future__ import annotations

import math
import random

MIN_CHOSEN = 0.35
ALTERNATIVES = (" the", " a", " and", " of", " to", " in", " is", ",", ".", " it", " for", " that", " on",
                " with", " as", " this", " be", " are", " or", " by", "\n")


def _alternatives(token: str, count: int, rng: random.Random) -> list[str]:
    pool = [t for t in ALTERNATIVES if t != token]
    return rng.sample(pool, min(count, len(pool)))


def chat_entry(token: str, top: int, rng: random.Random) -> dict:
    """One `choices[].logprobs.content[]` item with `top` alternatives (the first is `token`)."""
    chosen = max(MIN_CHOSEN, math.exp(-rng.expovariate(4.0)))
    chosen = min(chosen, 0.9999)
    value = round(math.log(chosen), 5)
    listed = [{"token": token, "logprob": value, "bytes": list(token.encode())}] if top else []
    left = 1 - chosen
    for rank, other in enumerate(_alternatives(token, top - 1, rng), start=1):
        share = round(math.log(left * 0.5 ** rank), 5)
        listed.append({"token": other, "logprob": share, "bytes": list(other.encode())})
    return {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": listed}


def legacy(pieces: list[str], top: int, rng: random.Random, offset: int = 0) -> dict:
    """`choices[].logprobs` of the legacy completions API for `pieces`, text offsets from `offset`."""
    entries = [chat_entry(piece, max(top, 1), rng) for piece in pieces]
    offsets, position = [], offset
    for piece in pieces:
        offsets.append(position)
        position += len(piece)
    return {"tokens": pieces, "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"][:top]} for e in entries],
            "text_offset": offsets}
