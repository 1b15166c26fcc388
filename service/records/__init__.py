"""The records the scorer, reviewers and the gateway share in Redis, and their reads and
writes: decisions, flags, clusters, labels, review status, the audit trail. The key names
are service/store.py's; everything above (scoring/, review/, the console, the CLI) reads and
writes these records only through here."""
