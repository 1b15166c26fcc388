"""Prompts of public evaluation sets (Arena-Hard, MT-Bench, Vicuna bench, AlpacaEval): a key
sending mostly these, word for word, is running a benchmark, not harvesting.

A benchmark run with sampling on (many evaluations sample their answers) looks like a
broad capability harvest: hundreds of different single-turn tasks for long answers. What
tells it apart is *which* tasks: the few thousand public questions every team evaluates on,
whose answers are worth nothing as training data at scale. The window counts the share of a
key's prompts found here (`public_eval_share`), and the capability rules leave keys above
half alone; the forest, logprob, reasoning and linkage detectors still see them. Only
SHA-256 prefixes are shipped (`data/public_eval_prompts.txt`, built by
`scripts/derive_public_eval_hashes.py`), matched against each request's `user_hash`.
"""

from __future__ import annotations

from importlib import resources


def _load() -> frozenset[str]:
    text = resources.files(__package__).joinpath("data/public_eval_prompts.txt").read_text(encoding="ascii")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


PUBLIC_EVAL_HASHES: frozenset[str] = _load()


def is_public_eval(user_hash: str) -> bool:
    """True when the request's newest user turn is, word for word, a public benchmark prompt."""
    return user_hash in PUBLIC_EVAL_HASHES
