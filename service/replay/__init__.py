"""`distillguard replay`: a traffic file's requests sent to a running gateway (replayer.py), and
the report of what it answered and flagged, in the shape of `distillguard score` (report.py)."""
