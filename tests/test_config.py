"""The YAML config: validated at start with errors naming file, field and why; every setting
also settable from `DISTILLGUARD_*`; the shipped example is valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from service.config import ConfigError, load_settings, parse_duration
from tests.support.processes import _cli

EXAMPLE = Path(__file__).resolve().parents[1] / "service" / "examples" / "distillguard.yaml"


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "distillguard.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_the_shipped_example_config_is_valid(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    settings = load_settings(EXAMPLE)
    assert settings.limits.tiers[settings.limits.default_tier].requests is not None


def test_an_invalid_value_names_the_file_the_field_and_why(tmp_path):
    path = write(tmp_path, {"limits": {"tiers": {"default": {"requests": {"limit": -5}}}}})
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert "limits.tiers.default.requests.limit" in message
    assert "greater than or equal to 0" in message


def test_an_unknown_setting_is_an_error(tmp_path):
    path = write(tmp_path, {"upstream": {"base_url": "http://127.0.0.1:1/v1", "timeuot": 5}})
    with pytest.raises(ConfigError, match=r"upstream.timeuot: unknown setting"):
        load_settings(path)


def test_a_default_tier_that_does_not_exist_is_an_error(tmp_path):
    path = write(tmp_path, {"limits": {"default_tier": "gold"}})
    with pytest.raises(ConfigError, match="default_tier 'gold'"):
        load_settings(path)


def test_raw_keys_in_the_registry_are_refused(tmp_path):
    path = write(tmp_path, {"limits": {"keys": {"sk-live-abc": {"tier": "default"}}}})
    with pytest.raises(ConfigError, match="not a key_id"):
        load_settings(path)


def test_broken_yaml_is_reported_with_the_file(tmp_path):
    path = write(tmp_path, "limits: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)


def test_environment_overrides_the_file_and_reaches_nested_settings(tmp_path, monkeypatch):
    path = write(tmp_path, {"upstream": {"base_url": "http://127.0.0.1:1/v1", "timeout": "30s"}, "port": 9000})
    monkeypatch.setenv("DISTILLGUARD_UPSTREAM__BASE_URL", "http://127.0.0.1:2/v1")
    monkeypatch.setenv("DISTILLGUARD_REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("DISTILLGUARD_LIMITS__DEFAULT_MAX_TOKENS", "77")
    settings = load_settings(path)
    assert settings.upstream.base_url == "http://127.0.0.1:2/v1"
    assert settings.upstream.timeout == 30
    assert settings.port == 9000
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert settings.limits.default_max_tokens == 77


def test_an_invalid_environment_value_is_reported(monkeypatch):
    monkeypatch.setenv("DISTILLGUARD_REDIS_FAILURE_POLICY", "sometimes")
    with pytest.raises(ConfigError, match="redis_failure_policy"):
        load_settings(None)


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("90", 90), ("1.5m", 90), ("1h", 3600), ("7d", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_serve_refuses_a_bad_config_before_starting(tmp_path):
    path = write(tmp_path, {"limits": {"lease_seconds": "soon"}})
    result = subprocess.run(_cli("serve", "--config", str(path)), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "limits.lease_seconds" in result.stderr and str(path) in result.stderr


def test_serve_refuses_several_workers_on_the_embedded_store(tmp_path):
    result = subprocess.run(_cli("serve", "--workers", "2"), capture_output=True, text=True, timeout=30,
                            env={"PATH": __import__("os").environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode != 0 and "--redis-url" in result.stderr
