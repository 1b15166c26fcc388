"""Shared fixtures: real Redis servers, the upstream simulator and gateways on loopback."""

from __future__ import annotations

import pytest

from tests.support.processes import (
    start_gateway,
    start_mock_upstream,
    start_redis,
    start_redis_cluster,
    start_scorer,
)

TEST_SECRET = "test-secret-not-for-production"


@pytest.fixture(scope="session")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def own_redis():
    """A Redis only this test uses (for stopping, freezing and restarting)."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    cluster = start_redis_cluster(3)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def upstream():
    mock = start_mock_upstream()
    yield mock
    mock.stop()


PLUMBING_MIN_DISTINCT_TASKS = 10


def base_config(upstream_url: str, **overrides) -> dict:
    """A gateway config for tests: the simulator upstream, a fixed key secret, roomy limits."""
    config = {
        "key_secret": TEST_SECRET,
        "upstream": {"base_url": upstream_url, "timeout": "10s", "connect_timeout": "2s"},
        "limits": {
            "tiers": {
                "default": {"requests": {"limit": 100000, "window": "1m"}},
                "throttled": {"requests": {"limit": 2, "window": "1m"}},
            }
        },
    }
    for name, value in overrides.items():
        config[name] = value
    # The test harvester (tests/support/traffic.py) cycles 240 prompts and tests send tens of
    # its requests: plumbing tests lower the distinct-task floor so it flags within them. The
    # detection-quality tests (test_detection_scenarios, test_lab_corpus, test_generalisation,
    # test_missing_fields, test_demo_detection) score with the shipped defaults.
    detection = config["detection"] = dict(config.get("detection") or {})
    detection["evidence"] = {"min_distinct_tasks": PLUMBING_MIN_DISTINCT_TASKS, **detection.get("evidence", {})}
    return config


@pytest.fixture
def gateway_factory():
    """Start gateways with a given config; all are stopped at the end of the test."""
    started = []

    def start(config: dict, **kwargs):
        gateway = start_gateway(config, **kwargs)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def scorer_factory():
    """Start `distillguard scorer` processes; all are stopped at the end of the test."""
    started = []

    def start(config: dict, redis_url: str, **kwargs):
        scorer = start_scorer(config, redis_url, **kwargs)
        started.append(scorer)
        return scorer

    yield start
    for scorer in started:
        scorer.stop()
