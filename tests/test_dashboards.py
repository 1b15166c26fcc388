"""The Grafana dashboard and the Prometheus alert rules in deploy/: every metric they query is one
the service exports (by the registry and by a real scrape of a gateway and a scorer), every label
they group or filter by is one that metric has, every rule is complete, and docker-compose
mounts files that exist where the provisioning expects them. Prometheus itself checks the
rules and runs the dashboard's queries in tests/test_prometheus.py."""

from __future__ import annotations

import asyncio
import json
import re
from functools import cache
from pathlib import Path

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import service.metrics
from tests.conftest import base_config
from tests.support.processes import (
    free_port,
    start_gateway,
    start_mock_upstream,
    start_redis,
    start_scorer,
    wait_until,
)
from tests.support.traffic import harvest_request, send

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/dashboards/distillguard.json"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
RULES = ROOT / "deploy/prometheus/alerts.yml"
SCRAPE_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
OPERATIONS_DOC = ROOT / "docs/operations.md"

# Series Prometheus makes itself for every target, with the labels it attaches to every series.
SYNTHETIC = {"up": set()}
TARGET_LABELS = {"job", "instance"}
# Grafana's interval variables, replaced by a duration so the query parses as PromQL.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
REQUIRED_ROWS = {"Traffic", "Latency", "Rejections", "Flags and actions", "Scorer and event streams", "Errors",
                 "Alerts to webhooks", "Review console"}


# ---- what the service exports


@cache
def exported_series() -> dict[str, set[str]]:
    """Every series name service/metrics.py exports, with the labels it carries: a counter as
    `<name>_total`, a histogram as `_bucket` (plus `le`), `_sum` and `_count`."""
    labels_of = {
        wrapper._name: set(wrapper._labelnames)
        for wrapper in vars(service.metrics).values() if isinstance(wrapper, MetricWrapperBase)
    }
    series: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if family.name not in labels_of:  # process_* and python_* collectors: not ours
            continue
        labels = labels_of[family.name]
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_sum"] = series[f"{family.name}_count"] = labels
        else:
            series[family.name] = labels
    return series


# ---- what the dashboard and the rules query


def parse(expr: str):
    assert "$" not in GRAFANA_INTERVALS.sub("5m", expr), f"unknown Grafana variable in {expr!r}"
    return promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expr))


def selectors(node) -> list:
    """Every vector selector in an expression (those inside range selectors and subqueries too)."""
    found = []
    promql_parser.walk(node, lambda n: found.append(n) if isinstance(n, promql_parser.VectorSelector) else None)
    return found


def aggregations(node) -> list:
    found = []
    promql_parser.walk(node, lambda n: found.append(n) if isinstance(n, promql_parser.AggregateExpr) else None)
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.name for selector in selectors(parse(expr))}


def label_problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """Labels the query filters or groups by that its metrics do not have."""
    tree = parse(expr)
    problems = []
    known = {**exported, **SYNTHETIC}
    for selector in selectors(tree):
        for matcher in selector.matchers.matchers:
            if matcher.name not in known.get(selector.name, set()) | TARGET_LABELS:
                problems.append(f"{selector.name} has no label {matcher.name!r}")
    for aggregation in aggregations(tree):
        if aggregation.modifier is None:
            continue
        below = set().union(*(known.get(s.name, set()) for s in selectors(aggregation.expr))) | TARGET_LABELS
        problems += [f"{aggregation.op} by {label!r}: no metric below has it"
                     for label in aggregation.modifier.labels if label not in below]
    return problems


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"])
            for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def scrape_jobs() -> set[str]:
    return {job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]}


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(rule["alert"], rule["expr"]) for rule in rules()]


# ---- the tests


def test_the_registry_view_sees_renames():
    """The check below is only as good as this set: it must hold the real exposition names."""
    exported = exported_series()
    assert exported["distillguard_requests_total"] == {"route", "status", "tier"}
    assert exported["distillguard_gateway_latency_seconds_bucket"] == {"route", "le"}
    assert "distillguard_stream_lag_entries" in exported and "distillguard_requests" not in exported
    assert "distillguard_flags_total" in metric_names("sum(rate(distillguard_flags_total[$__rate_interval]))")
    assert label_problems('sum by (rule) (rate(distillguard_rejections_total{reason="x"}[5m]))', exported) == [
        "distillguard_rejections_total has no label 'reason'"]
    assert label_problems("sum by (detector) (rate(distillguard_rejections_total[5m]))", exported) == [
        "sum by 'detector': no metric below has it"]


def test_every_metric_the_dashboard_and_rules_query_is_exported():
    exported = exported_series()
    unknown = {(where, name) for where, expr in all_queries() for name in metric_names(expr)
               if name not in exported and name not in SYNTHETIC}
    assert unknown == set()
    problems = [(where, problem) for where, expr in all_queries() for problem in label_problems(expr, exported)]
    assert problems == []
    # Prometheus' own `up` series only exist for the jobs prometheus.yml scrapes.
    for where, expr in all_queries():
        for selector in selectors(parse(expr)):
            jobs = {m.value for m in selector.matchers.matchers if m.name == "job"}
            assert jobs <= scrape_jobs(), (where, jobs)
    # The dashboard shows the gateway's and the scorer's core series.
    on_dashboard = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    for name in ("distillguard_requests_total", "distillguard_gateway_latency_seconds_bucket",
                 "distillguard_rejections_total", "distillguard_flags_total", "distillguard_actions_total",
                 "distillguard_stream_lag_entries", "distillguard_redis_errors_total",
                 "distillguard_upstream_errors_total", "distillguard_recording_errors_total",
                 "distillguard_linkage_pass_seconds_bucket"):
        assert name in on_dashboard


def test_dashboard_is_a_well_formed_provisionable_dashboard():
    board = dashboard()
    assert board["uid"] == "distillguard" and board["schemaVersion"] >= 36
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert REQUIRED_ROWS <= set(rows)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": f"${{{variable['name']}}}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    # The provisioned datasource is the one the variable picks by default.
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == variable["current"]["value"]
    assert datasource["url"] == "http://prometheus:9090"


def test_every_rule_has_a_duration_a_severity_and_a_runbook_that_exists():
    headings = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS_DOC.read_text().splitlines() if line.startswith("#")
    }
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) and len(names) >= 5
    for rule in rules():
        assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        doc, _, anchor = annotations["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor in headings, rule["alert"]
    covered = " ".join(rule["expr"] for rule in rules())
    for name in ("distillguard_redis_errors_total", "distillguard_stream_lag_entries", "distillguard_flags_total",
                 "distillguard_upstream_errors_total", 'up{job="distillguard-scorer"}'):
        assert name in covered


def test_compose_mounts_the_dashboard_the_datasource_and_the_rules():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounts: dict[str, dict[str, Path]] = {}  # service -> container path -> host path
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source, target, *_ = volume.split(":")
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                mounts.setdefault(name, {})[target] = ROOT / source

    def host_path(service: str, container_path: str) -> Path:
        for target, source in mounts[service].items():
            if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
                return source / Path(container_path).relative_to(target)
        raise AssertionError(f"{container_path} is not mounted into {service}")

    grafana = services["grafana"]
    assert host_path("grafana", "/etc/grafana/provisioning") == PROVISIONING
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards/distillguard.yml").read_text())["providers"]
    assert host_path("grafana", provider["options"]["path"]) / DASHBOARD.name == DASHBOARD
    assert host_path("grafana", grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]) == DASHBOARD
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    assert "prometheus" in services and "prometheus" in grafana["depends_on"]
    scrape = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert host_path("prometheus", "/etc/prometheus/prometheus.yml") == SCRAPE_CONFIG
    assert [host_path("prometheus", path) for path in scrape["rule_files"]] == [RULES]


def scraped_series(text: str) -> set[str]:
    """Series names with at least one sample in an exposition text."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture(scope="module")
def live_scrapes():
    """One gateway (two workers, as in docker-compose) and one scorer on their own Redis, after a
    harvester's traffic got it flagged and throttled: their /metrics texts."""
    redis_server, upstream = start_redis(), start_mock_upstream()
    config = base_config(upstream.base_url, detection={"streams": 2, "scorer_lease": "1s"})
    gateway = scorer = None
    try:
        gateway = start_gateway(config, workers=2, redis_url=redis_server.url)
        metrics_port = free_port()
        scorer = start_scorer(config, redis_server.url, name="scorer", metrics_port=metrics_port)
        scorer_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        asyncio.run(send(gateway.base_url, "sk-dashboard-harvester", [harvest_request(i) for i in range(60)]))
        wait_until(lambda: "distillguard_flags_total" in scraped_series(httpx.get(scorer_metrics, timeout=5).text),
                   what="the harvester flagged")
        statuses = asyncio.run(send(gateway.base_url, "sk-dashboard-harvester",
                                    [harvest_request(i) for i in range(60, 70)]))
        assert 429 in statuses  # throttled to the 2-a-minute tier
        wait_until(lambda: "distillguard_stream_lag_entries" in scraped_series(httpx.get(scorer_metrics, timeout=5).text),
                   what="stream gauges")
        yield gateway.metrics(), httpx.get(scorer_metrics, timeout=5).text
    finally:
        for process in (scorer, gateway, upstream, redis_server):
            if process is not None:
                process.stop()


def test_a_real_gateway_and_scorer_export_what_the_dashboard_shows(live_scrapes):
    gateway_text, scorer_text = live_scrapes
    declared = {family.name for text in live_scrapes for family in text_string_to_metric_families(text)}
    queried = set().union(*(metric_names(expr) for _, expr in all_queries())) - set(SYNTHETIC)
    for name in queried:  # every series the files query is declared by a real process
        assert re.sub(r"(_total|_bucket|_sum|_count)$", "", name) in declared, name
    # ... and the series real harvesting traffic exercises carry samples where the panels read them.
    assert {"distillguard_requests_total", "distillguard_gateway_latency_seconds_bucket",
            "distillguard_upstream_latency_seconds_bucket", "distillguard_tokens_total",
            "distillguard_rejections_total", "distillguard_decisions_enforced_total",
            "distillguard_events_appended_total"} <= scraped_series(gateway_text) & queried
    assert {"distillguard_events_consumed_total", "distillguard_stream_lag_entries",
            "distillguard_stream_pending_entries", "distillguard_scorer_batch_seconds_bucket",
            "distillguard_flags_total", "distillguard_actions_total",
            "distillguard_detector_score_ratio_bucket"} <= scraped_series(scorer_text) & queried
