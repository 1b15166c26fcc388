"""Every Prometheus metric of the gateway, defined in one place.

With several worker processes, `distillguard serve` sets `PROMETHEUS_MULTIPROC_DIR` before
any worker imports this module, and `/metrics` aggregates the workers' files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

disable_created_metrics()

_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "distillguard_requests_total", "Requests answered by the gateway.", ["route", "status", "tier"]
)
GATEWAY_LATENCY = Histogram(
    "distillguard_gateway_latency_seconds",
    "Time the gateway itself adds to a request (upstream time excluded).",
    ["route"],
    buckets=_FAST_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    "distillguard_upstream_latency_seconds",
    "Time from sending a request upstream to its full response.",
    ["route"],
    buckets=_SLOW_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "distillguard_time_to_first_token_seconds",
    "Time from a streaming request's arrival to its first relayed chunk.",
    ["route"],
    buckets=_SLOW_BUCKETS,
)
TOKENS = Counter("distillguard_tokens_total", "Tokens used, from the upstream's usage.", ["direction"])
REJECTIONS = Counter("distillguard_rejections_total", "Requests refused, by the rule that refused them.", ["rule"])
DECISIONS_ENFORCED = Counter(
    "distillguard_decisions_enforced_total", "Requests that met a per-key decision.", ["action"]
)
REDIS_ERRORS = Counter("distillguard_redis_errors_total", "Redis calls that failed or timed out.", ["operation"])
UPSTREAM_ERRORS = Counter("distillguard_upstream_errors_total", "Upstream calls that failed.", ["kind"])
IN_FLIGHT = Gauge(
    "distillguard_requests_in_flight", "Requests being forwarded now.", multiprocess_mode="livesum"
)

# Detection: the gateway's event stream, and the scorer consuming it.
EVENTS_APPENDED = Counter("distillguard_events_appended_total", "Request features appended to the event streams.")
EVENTS_DROPPED = Counter(
    "distillguard_events_dropped_total", "Request features lost before reaching a stream.", ["reason"]
)
# Events waiting in a gateway worker's spool for Redis (service/events_spool.py); summed over workers.
EVENTS_SPOOLED = Gauge(
    "distillguard_events_spool_entries", "Request features held for the event streams, not yet appended.",
    multiprocess_mode="livesum",
)
EVENTS_SPOOLED_BYTES = Gauge(
    "distillguard_events_spool_bytes", "Size of the held request features (field names and values).",
    multiprocess_mode="livesum",
)
# With detection.spool.disk (service/events_disk.py): the part of the spool on local disk.
EVENTS_SPOOLED_DISK_BYTES = Gauge(
    "distillguard_events_spool_disk_bytes", "Size of the segment files of the spool's disk part.",
    multiprocess_mode="livesum",
)
EVENTS_CONSUMED = Counter(
    "distillguard_events_consumed_total",
    "Stream entries the scorer took in: counted in a key's window, already counted (replayed), or unreadable.",
    ["outcome"],
)
STREAM_LAG = Gauge(
    "distillguard_stream_lag_entries", "Entries of a shard not yet delivered to any scorer.", ["shard"],
    multiprocess_mode="mostrecent",
)
STREAM_PENDING = Gauge(
    "distillguard_stream_pending_entries", "Entries of a shard delivered but not yet acknowledged.", ["shard"],
    multiprocess_mode="mostrecent",
)
DETECTOR_SCORE = Histogram(
    "distillguard_detector_score_ratio", "Detector scores at each evaluation (0 benign .. 1 harvesting).",
    ["detector"], buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
FLAGS = Counter("distillguard_flags_total", "Keys flagged for the first time, by detector.", ["detector"])
ACTIONS = Counter(
    "distillguard_actions_total", "Ladder changes of a key's action, by detector and new action.",
    ["detector", "action"],
)
SCORER_ERRORS = Counter("distillguard_scorer_errors_total", "Scorer batches or calls that failed.", ["stage"])
SCORER_BATCH = Histogram(
    "distillguard_scorer_batch_seconds", "Time to score, apply and checkpoint one batch of events.",
    buckets=_FAST_BUCKETS[3:] + (2.5, 5.0),
)
# Linkage: the periodic clustering pass over every active key (service/scoring/linkage.py).
LINKAGE_PASSES = Counter("distillguard_linkage_passes_total", "Clustering passes finished by this process.")
LINKAGE_PASS_SECONDS = Histogram(
    "distillguard_linkage_pass_seconds", "Time of one clustering pass: read signatures, cluster, store, publish.",
    buckets=_SLOW_BUCKETS,
)
LINKAGE_PASS_KEYS = Gauge(
    "distillguard_linkage_pass_keys", "Active keys read by this process's last clustering pass.",
    multiprocess_mode="mostrecent",
)
LINKAGE_CLUSTERS_FLAGGED = Gauge(
    "distillguard_linkage_clusters_flagged", "Clusters flagged by this process's last clustering pass.",
    multiprocess_mode="mostrecent",
)
LINKAGE_PASS_ERRORS = Counter(
    "distillguard_linkage_pass_errors_total", "Clustering passes (or lease calls) that failed, by stage.", ["stage"]
)

# Recording: finished requests appended to traffic files (service/recording/recorder.py).
RECORDING_RECORDS = Counter("distillguard_recording_records_total", "Requests written to traffic files.")
RECORDING_BYTES = Counter("distillguard_recording_written_bytes_total", "Bytes written to traffic files (after gzip).")
RECORDING_DROPPED = Counter(
    "distillguard_recording_dropped_total", "Finished requests not recorded, by why.", ["reason"]
)
# The console's prompt samples (service/recording/prompt_samples.py) go through Redis and are
# not spooled: those a Redis error or a full queue loses are counted here.
PROMPT_SAMPLES_DROPPED = Counter(
    "distillguard_prompt_samples_dropped_total", "Console prompt samples not stored, by why.", ["reason"]
)
RECORDING_ERRORS = Counter(
    "distillguard_recording_errors_total", "Traffic file opens and writes that failed (full disk, unwritable directory)."
)
RECORDING_FILES = Counter(
    "distillguard_recording_files_total", "Traffic files started, by why the previous one ended.", ["reason"]
)

# The review console and audit trail (service/console/, service/records/audit.py).
AUDIT_ERRORS = Counter(
    "distillguard_audit_errors_total",
    "Audit entries that could not be written, by who was writing (scorer, console); the action itself went on.",
    ["source"],
)
SIGN_INS = Counter(
    "distillguard_console_sign_ins_total", "Console sign-in attempts, by outcome (ok, wrong_token, rate_limited).",
    ["outcome"],
)

# Alerts: flags and blocks POSTed to webhooks (service/alerts/sender.py); `webhook` is its name or index, never its URL.
ALERTS_SENT = Counter("distillguard_alerts_sent_total", "Alerts a webhook accepted (2xx).", ["webhook"])
ALERT_FAILURES = Counter(
    "distillguard_alert_failures_total",
    "Alert delivery attempts that failed, by why (timeout, connection, status_429, status_5xx, status_4xx).",
    ["webhook", "reason"],
)
ALERTS_DROPPED = Counter(
    "distillguard_alerts_dropped_total",
    "Alerts never delivered: queue_full, gave_up (attempts spent or refused with a 4xx), shutdown, malformed.",
    ["reason"],
)
ALERT_QUEUE_DEPTH = Gauge(
    "distillguard_alert_queue_depth", "Alerts waiting for their webhook.", ["webhook"], multiprocess_mode="livesum"
)


def render() -> tuple[bytes, str]:
    """The exposition text, aggregated over worker processes when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
