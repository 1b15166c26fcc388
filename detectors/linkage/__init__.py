"""Cross-key linkage: catch "hydra" networks of many keys that each look clean.

Per event, the scorer adds the request to its key's `KeySignature` (constant work, bounded
size). Periodically, `LinkageDetector.run` takes every active key's signature and groups
keys that act as one: LSH and exact-value buckets give candidate pairs (never all pairs),
weighted evidence per pair makes edges, communities of the edges' 2-core are clusters,
and each cluster is judged on what only a group shows. Members of a flagged
cluster get a Verdict(detector="linkage") with the cluster's id and evidence, for the
decision ladder. docs/detection.md ("Linkage: networks of keys that each look clean")
describes the design and its choices.

In the live scorer (service/scoring/linkage.py) every key's signature is stored next to its state
under its own hash tag, `dg:{<key_id>}:link` (expiring 2 days after its last write), with
the active keys in 16 sharded sorted sets, so no Redis key holds every key's evidence; one
scorer at a time (a lease) runs the pass over them in memory. Buckets are rebuilt each pass
rather than kept in Redis: rebuilding costs seconds, keeping postings live would cost a
dozen writes per event. bench/bench_linkage.py measures the detector's costs,
bench/bench_linkage_live.py the scorer's.
"""

from .config import LinkageConfig
from .detector import LinkageDetector, LinkageResult
from .signature import MAX_BYTES, KeySignature
from .verdicts import ClusterVerdict

__all__ = ["MAX_BYTES", "ClusterVerdict", "KeySignature", "LinkageConfig", "LinkageDetector", "LinkageResult"]
