"""How many distinct tasks a key has sent in its lifetime, in bounded memory: the K smallest
hash values seen (a k-minimum-values sketch) estimate the distinct count to about 10 %.

The window forgets after 200 requests; a harvest's scale (thousands of distinct tasks) is
what no single window shows, and what padding with a few repeated requests cannot undo.
"""

from __future__ import annotations

import bisect

K = 128
_SPACE = 2**64


class TaskSketch:
    """The K smallest 64-bit values of the prompts' duplicate hashes; `add`, `estimate`."""

    __slots__ = ("values",)

    def __init__(self, values: list[int] | None = None) -> None:
        self.values = values or []

    def add(self, prompt_hash: str) -> None:
        """Counts one prompt by its duplicate hash (16 hex); "" (no prompt) is not a task."""
        if not prompt_hash:
            return
        try:
            value = int(prompt_hash[:16], 16)
        except ValueError:
            return
        values = self.values
        if len(values) >= K and value >= values[-1]:
            return
        index = bisect.bisect_left(values, value)
        if index < len(values) and values[index] == value:
            return
        values.insert(index, value)
        if len(values) > K:
            values.pop()

    def estimate(self) -> float:
        """Distinct prompts seen: exact below K, (K - 1) / (K-th smallest / 2**64) above."""
        if len(self.values) < K:
            return float(len(self.values))
        return (K - 1) * _SPACE / (self.values[-1] + 1)

    def to_list(self) -> list[str]:
        return [format(value, "x") for value in self.values]

    @classmethod
    def from_list(cls, stored: list[str]) -> TaskSketch:
        return cls(sorted(int(value, 16) for value in stored))
