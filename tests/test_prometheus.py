"""The alert rules and the dashboard against Prometheus itself: `promtool check rules` on every
rule file, the promtool unit tests of deploy/prometheus/alerts.test.yml (every alert fires on
its series and stays quiet on normal traffic), and a real Prometheus scraping a live gateway
and scorer that sees the shipped Redis alert go pending once Redis stops (and a copy of it
with a short `for` fire and reach an Alertmanager), and holds the series every dashboard
query reads."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from service.console.auth import hash_token
from tests.conftest import base_config
from tests.support.processes import (
    LOOPBACK,
    free_port,
    start_gateway,
    start_mock_upstream,
    start_redis,
    start_scorer,
    wait_until,
)
from tests.support.prometheus import ensure_prometheus_installed, start_prometheus
from tests.support.traffic import chat_request, harvest_request, send
from tests.test_dashboards import GRAFANA_INTERVALS, RULES, SCRAPE_CONFIG, dashboard_queries, metric_names, rules

PROMETHEUS_DIR = RULES.parent
UNIT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
REDIS_ALERT = "DistillguardRedisErrors"
# The shipped Redis alert waits `for: 2m` before it fires; this copy of it (same expression,
# labels and annotations) waits 5 s, so the test sees an alert fire without adding 2 minutes.
SHORT_REDIS_ALERT = "DistillguardRedisErrorsShortFor"
SHORT_FOR = "5s"
REVIEWER_TOKEN = "prometheus-test-reviewer-token-0123456789"
# Dashboard series that exist only once something goes wrong (a labelled counter has no series
# before its first increment), with what it takes; the live run below causes everything else.
ONLY_AFTER_AN_EVENT = {
    "distillguard_scorer_errors_total": "a scorer batch or call fails",
    "distillguard_events_dropped_total": "a finished request's features reach no stream",
    "distillguard_recording_dropped_total": "the recording queue overflows",
    "distillguard_linkage_pass_errors_total": "a clustering pass fails",
    "distillguard_audit_errors_total": "an audit entry cannot be written",
}


pytestmark = pytest.mark.timeout(300)  # the live run starts five processes


@pytest.fixture(scope="module", autouse=True)
def prometheus_installed():
    ensure_prometheus_installed()


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


# ---- promtool


def rule_files() -> list[Path]:
    """Every rule file in deploy/prometheus (all but the scrape config and the unit tests)."""
    return sorted(path for path in PROMETHEUS_DIR.glob("*.yml")
                  if path != SCRAPE_CONFIG and not path.name.endswith(".test.yml"))


def test_promtool_checks_every_rule_file():
    loaded = {Path(path).name for path in yaml.safe_load(SCRAPE_CONFIG.read_text())["rule_files"]}
    assert {path.name for path in rule_files()} == loaded  # none written and left unloaded
    for path in rule_files():
        result = promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_checks_the_scrape_config(tmp_path):
    """prometheus.yml as docker-compose mounts it, its rule file path pointed at the checkout."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["rule_files"] = [str(PROMETHEUS_DIR / Path(path).name) for path in config["rule_files"]]
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet():
    unit_tests = yaml.safe_load(UNIT_TESTS.read_text())
    assert unit_tests["rule_files"] == [RULES.name]  # the shipped rules, not a copy
    fires, quiet = set(), set()
    for case in unit_tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - fires == set(), "alerts never seen firing"
    assert alerts - quiet == set(), "alerts never seen staying quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# ---- a real Prometheus over a live gateway and scorer


class Webhook(BaseHTTPRequestHandler):
    """A loopback webhook that accepts every alert; it is Prometheus's Alertmanager too, and
    keeps what Prometheus sends there (its v2 API: a JSON list of firing alerts)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/api/v2/alerts":
            self.server.alertmanager_received.extend(json.loads(body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dataclass
class Observed:
    """What the Prometheus saw: before Redis stopped, and after."""

    rules: list[dict]
    up: dict[str, float]
    redis_alerts_before: list[dict]
    redis_alerts_after: list[dict]
    gateway_instance: str
    short_alerts: list[dict]  # the short-`for` copy, once firing
    alertmanager_received: list[dict]  # what Prometheus sent its Alertmanager
    names: set[str]
    answered: set[str]  # dashboard queries that returned samples, before or after Redis stopped


def run_dashboard_queries(prometheus) -> set[str]:
    """Runs every dashboard query (Prometheus refusing one fails the call); those with samples."""
    return {expr for _, expr in dashboard_queries() if prometheus.query(GRAFANA_INTERVALS.sub("1m", expr))}


def short_for_redis_rule(directory: Path) -> Path:
    """A rule file holding the shipped Redis alert with only its name and `for` changed."""
    (shipped,) = [rule for rule in rules() if rule["alert"] == REDIS_ALERT]
    path = directory / "short_for.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "test-short-for", "rules": [
        {**shipped, "alert": SHORT_REDIS_ALERT, "for": SHORT_FOR}]}]}))
    return path


def wrong_sign_in(url: str) -> int:
    """One console sign-in with a wrong token (through the form and its CSRF token)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        form = client.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]*)"', form.text).group(1)
        return client.post("/admin/login", data={"token": "not-a-token", "csrf_token": csrf}).status_code


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """A gateway and a scorer on a real Redis, with recording, linkage, webhooks
    and the console on, scraped by Prometheus every second with the shipped alert rules. A
    harvester gets flagged and throttled, then Redis stops under steady traffic."""
    webhook = ThreadingHTTPServer((LOOPBACK, 0), Webhook)
    webhook.alertmanager_received = []
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    redis_server, upstream = start_redis(), start_mock_upstream()
    config = base_config(
        upstream.base_url,
        detection={"streams": 2, "scorer_lease": "1s", "linkage": {"every_s": "2s"}},
        recording={"enabled": True, "directory": str(tmp_path_factory.mktemp("recordings"))},
        alerts={"timeout": "1s", "backoff": "20ms", "backoff_max": "100ms", "max_attempts": 2, "webhooks": [
            {"name": "security", "url": f"http://{LOOPBACK}:{webhook.server_port}/hook", "secret": "whsec-test"},
            {"name": "dead", "url": f"http://{LOOPBACK}:{free_port()}/hook", "secret": "whsec-test"},
        ]},
        admin={"reviewers": [{"name": "alice", "role": "reviewer", "token_sha256": hash_token(REVIEWER_TOKEN)}]},
    )
    gateway = scorer = prometheus = None
    stop_traffic = threading.Event()
    try:
        gateway = start_gateway(config, redis_url=redis_server.url)
        metrics_port = free_port()
        scorer = start_scorer(config, redis_server.url, name="scorer", metrics_port=metrics_port)
        prometheus = start_prometheus(
            {"distillguard": [f"{LOOPBACK}:{gateway.port}"], "distillguard-scorer": [f"{LOOPBACK}:{metrics_port}"]},
            [RULES, short_for_redis_rule(tmp_path_factory.mktemp("rules"))],
            alertmanagers=[f"{LOOPBACK}:{webhook.server_port}"],
        )
        flags = 'sum(distillguard_flags_total{job="distillguard-scorer"})'
        asyncio.run(send(gateway.base_url, "sk-prometheus-harvester", [harvest_request(i) for i in range(60)]))
        wait_until(lambda: prometheus.query(flags), timeout=60, what="the harvester's flag in Prometheus")
        asyncio.run(send(gateway.base_url, "sk-prometheus-harvester", [harvest_request(i) for i in range(60, 70)]))
        with httpx.Client(base_url=gateway.base_url, timeout=10, headers={"authorization": "Bearer sk-prom"}) as client:
            with client.stream("POST", "/chat/completions", json={**chat_request(0), "stream": True}) as stream:
                assert stream.status_code == 200 and "[DONE]" in "".join(stream.iter_text())
            failed = client.post("/chat/completions", json=chat_request(1), headers={"x-mock-status": "503"})
            assert failed.status_code == 503
        assert wrong_sign_in(gateway.url) == 401
        # Every series the events above made, scraped; every rule evaluated at least once since.
        wait_until(lambda: prometheus.query("distillguard_console_sign_ins_total")
                   and prometheus.query("distillguard_linkage_passes_total")
                   and prometheus.query("distillguard_alerts_dropped_total"), timeout=60, what="scraped")
        wait_until(lambda: all(rule.get("lastEvaluation", "0001").startswith("20")
                               for group in prometheus.api("rules")["groups"] for rule in group["rules"]),
                   timeout=30, what="rules evaluated")
        up = {sample["metric"]["job"]: float(sample["value"][1]) for sample in prometheus.query("up")}
        rule_states = [rule for group in prometheus.api("rules")["groups"] if group["file"] == str(RULES)
                       for rule in group["rules"]]
        redis_alerts_before = prometheus.alerts(REDIS_ALERT)
        answered = run_dashboard_queries(prometheus)

        redis_server.stop()

        def steady_traffic() -> None:
            with httpx.Client(base_url=gateway.base_url, timeout=10,
                              headers={"authorization": "Bearer sk-prometheus-user"}) as client:
                i = 0
                while not stop_traffic.wait(0.05):
                    client.post("/chat/completions", json=chat_request(i))
                    i += 1

        threading.Thread(target=steady_traffic, daemon=True).start()
        # The shipped rule, unchanged: pending as soon as its expression holds; it would fire
        # after its `for: 2m`, which this test does not wait for. Its short-`for` copy fires.
        redis_alerts_after = wait_until(lambda: prometheus.alerts(REDIS_ALERT), timeout=90,
                                        what=f"{REDIS_ALERT} in Prometheus's /api/v1/alerts")
        short_alerts = wait_until(
            lambda: [alert for alert in prometheus.alerts(SHORT_REDIS_ALERT) if alert["state"] == "firing"],
            timeout=60, what=f"{SHORT_REDIS_ALERT} firing")
        wait_until(lambda: any(alert["labels"]["alertname"] == SHORT_REDIS_ALERT
                               for alert in webhook.alertmanager_received),
                   timeout=30, what=f"{SHORT_REDIS_ALERT} sent to the Alertmanager")
        names = set(prometheus.api("label/__name__/values"))
        answered |= run_dashboard_queries(prometheus)  # the Redis error panels have data now
        yield Observed(rule_states, up, redis_alerts_before, redis_alerts_after, f"{LOOPBACK}:{gateway.port}",
                       short_alerts, list(webhook.alertmanager_received), names, answered)
    finally:
        stop_traffic.set()
        for process in (prometheus, scorer, gateway, upstream, redis_server):
            if process is not None:
                process.stop()
        webhook.shutdown()


def test_prometheus_scrapes_the_gateway_and_the_scorer(observed):
    assert observed.up == {"distillguard": 1.0, "distillguard-scorer": 1.0}


def test_prometheus_loads_and_evaluates_every_shipped_rule(observed):
    assert {rule["name"] for rule in observed.rules} == {rule["alert"] for rule in rules()}
    assert [(rule["name"], rule["health"], rule.get("lastError")) for rule in observed.rules
            if rule["health"] != "ok"] == []


def test_the_redis_alert_is_quiet_while_redis_answers(observed):
    assert observed.redis_alerts_before == []


def test_stopping_redis_sets_the_redis_alert_pending_for_the_gateway(observed):
    (alert,) = [alert for alert in observed.redis_alerts_after if alert["labels"]["job"] == "distillguard"]
    assert alert["state"] in {"pending", "firing"}
    assert alert["labels"]["instance"] == observed.gateway_instance
    assert alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) > 0.1  # the shipped threshold: Redis calls failing per second


def test_the_redis_alert_fires_once_its_for_has_passed_and_reaches_the_alertmanager(observed):
    """The shipped expression, held for the copy's `for`, fires; Prometheus sends it on."""
    (alert,) = [alert for alert in observed.short_alerts if alert["labels"]["job"] == "distillguard"]
    assert alert["labels"]["instance"] == observed.gateway_instance
    assert float(alert["value"]) > 0.1
    (sent,) = {json.dumps(received["labels"], sort_keys=True): received for received in observed.alertmanager_received
               if received["labels"]["alertname"] == SHORT_REDIS_ALERT
               and received["labels"]["job"] == "distillguard"}.values()
    assert sent["labels"]["severity"] == "critical"
    assert sent["labels"]["instance"] == observed.gateway_instance
    assert sent["annotations"]["runbook"] == "docs/operations.md#redis-errors"
    assert not any(received["labels"]["alertname"] == REDIS_ALERT for received in observed.alertmanager_received)


def test_prometheus_holds_every_series_the_dashboard_queries(observed):
    queried = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert set(ONLY_AFTER_AN_EVENT) <= queried  # no stale exemption
    assert queried - observed.names - set(ONLY_AFTER_AN_EVENT) == set()


def test_every_dashboard_query_runs_in_prometheus_and_returns_data(observed):
    """Prometheus itself accepted every query (an error would have failed the fixture), and each
    returned samples, but for those over series that need a failure the run did not cause."""
    empty = [expr for _, expr in dashboard_queries()
             if expr not in observed.answered and not metric_names(expr) & set(ONLY_AFTER_AN_EVENT)]
    assert empty == []
