"""Cross-key linkage: catch "hydra" networks of many keys that each look clean.

Per event, the scorer adds the request to its key's `KeySignature` (constant work, bounded
size). Periodically, `LinkageDetector.run` takes every active key's signature and groups
keys that act as one: LSH and exact-value buckets give candidate pairs (never all pairs),
weighted evidence per pair makes edges, connected components of the edges' 2-core are
clusters, and each cluster is judged on what only a group shows. Members of a flagged
cluster get a Verdict(detector="linkage") with the cluster's id and evidence, for the
decision ladder. docs/detection.md ("Linkage") describes the design and its choices.

Intended Redis layout for the live scorer (not built here; all keys expire, none is hot):
  dg:{<key_id>}:link         the key's `KeySignature.to_bytes()` (at most MAX_BYTES before
                             zlib, ~300-500 B after), next to the key's scorer state in the
                             same hash slot; written with its checkpoint, EXPIRE 48 h.
  dg:{link:<shard>}:active   sorted set key_id -> last event ts, one of 16 shards by
                             crc32(key_id) like the event streams, so the keys of a pass are
                             found without SCAN; trimmed by score to the last 24 h.
  dg:{lk-<id>}:cluster       a flagged cluster's `ClusterVerdict.as_dict()` as JSON,
                             EXPIRE 2 passes; `dg:{clusters}` a sorted set of current
                             cluster ids by score (at most a few hundred members), for
                             GET /admin/api/clusters.
The pass itself runs in one scorer at a time (a lease, like the stream shards'): it reads
the active shards, MGETs signatures per hash slot in pipelined batches, and runs in memory
(~1 KB per key as arrays; 100,000 keys in well under a minute, bench/bench_linkage.py).
Buckets are rebuilt each pass rather than kept in Redis: rebuilding costs seconds, while
keeping postings live would cost about a dozen writes per event.
"""

from .config import LinkageConfig
from .detector import LinkageDetector, LinkageResult
from .signature import MAX_BYTES, KeySignature
from .verdicts import ClusterVerdict

__all__ = ["MAX_BYTES", "ClusterVerdict", "KeySignature", "LinkageConfig", "LinkageDetector", "LinkageResult"]
