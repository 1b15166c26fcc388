"""What ordinary prompt text looks like to the template fingerprint: for each of its 64
bits, the share of prompts that set it.

Key centroids are measured from here, so that unrelated keys sit near cosine 0 while keys
of one template family point the same way. A fixed reference rather than the median of
the keys in a pass: when a large network is a big share of the active keys (early in a
day, or a small deployment), a population median drifts toward the network and makes
every honest key look alike. Computed over 1,229 real human prompts (Chatbot Arena,
MT-Bench, Vicuna, self-instruct user tasks, Arena-Hard coding; traffic/data/SOURCES.md);
tests/test_linkage_signature.py recomputes it and fails if the fingerprint changes. A
deployment whose traffic is mostly another language can set `LinkageConfig.typical_bits`
from its own prompts.
"""

TYPICAL_BITS = (
    0.620, 0.347, 0.495, 0.254, 0.441, 0.400, 0.591, 0.471, 0.449, 0.520, 0.448, 0.798,
    0.329, 0.263, 0.320, 0.557, 0.317, 0.376, 0.708, 0.416, 0.447, 0.494, 0.592, 0.484,
    0.785, 0.550, 0.531, 0.606, 0.398, 0.645, 0.663, 0.327, 0.709, 0.365, 0.578, 0.528,
    0.133, 0.779, 0.347, 0.332, 0.557, 0.544, 0.615, 0.510, 0.253, 0.472, 0.743, 0.439,
    0.620, 0.279, 0.598, 0.647, 0.439, 0.696, 0.534, 0.317, 0.741, 0.670, 0.525, 0.421,
    0.365, 0.570, 0.509, 0.346,
)
