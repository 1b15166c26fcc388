"""How many distinct tasks a key has sent in its lifetime, in bounded memory: the K smallest
hash values seen (a k-minimum-values sketch) estimate the distinct count to about 10 %.

The window forgets after 200 requests; a harvest's scale (thousands of distinct tasks) is
what no single window shows, and what padding with a few repeated requests cannot undo.
A second sketch counts distinct lines: a key that re-asks a small question set under ever
new instructions or demo mixes (a prompt optimiser) sends thousands of distinct prompts
made of a few hundred lines; a harvest's new questions are new lines too.
"""

from __future__ import annotations

import bisect

K = 128
_SPACE = 2**64
_MASK = _SPACE - 1


def keep_smallest(values, value: int, k: int) -> None:
    """Adds `value` to `values`, kept sorted as the k smallest distinct values seen (a list or
    an array): the sample a k-minimum-values sketch estimates from."""
    if len(values) >= k and value >= values[-1]:
        return
    index = bisect.bisect_left(values, value)
    if index < len(values) and values[index] == value:
        return
    values.insert(index, value)
    if len(values) > k:
        values.pop()


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
        self._insert(value)

    def add_line(self, digest: int) -> None:
        """Counts one line by its 32-bit digest, spread over 64 bits (splitmix64's finaliser)
        so the K smallest values estimate as well as a 64-bit hash's would."""
        value = (digest + 0x9E3779B97F4A7C15) & _MASK
        value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
        self._insert(value ^ (value >> 31))

    def _insert(self, value: int) -> None:
        keep_smallest(self.values, value, K)

    def estimate(self) -> float:
        """Distinct values seen (prompts or lines): exact below K, (K - 1) / (K-th smallest /
        2**64) above."""
        if len(self.values) < K:
            return float(len(self.values))
        return (K - 1) * _SPACE / (self.values[-1] + 1)

    def to_list(self) -> list[str]:
        return [format(value, "x") for value in self.values]

    @classmethod
    def from_list(cls, stored: list[str]) -> TaskSketch:
        return cls(sorted(int(value, 16) for value in stored))
