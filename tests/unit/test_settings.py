"""Consumer settings: defaults from config/tracking.yaml, durations, and precise errors for bad files.

The duration syntax itself is tested with the other shared rules (tests/unit/test_schema_rules.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from handlers.schema.errors import DefinitionError
from handlers.tracking.settings import Settings, load_settings

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "config" / "tracking.yaml"


def test_load_settings_shipped_config_equals_defaults(monkeypatch):
    monkeypatch.setenv("TRACKING_CONFIG", "/nonexistent.yaml")  # never read behind the caller's back
    settings = load_settings()
    assert settings == load_settings(CONFIG) == Settings()
    assert (settings.max_future_seconds, settings.max_past_seconds) == (86400, 30 * 86400)


def test_consumer_reads_the_settings_file_its_tracking_config_variable_names(tmp_path):
    from handlers.core.config import Env
    from handlers.tracking.consumer import ConsumerConfig

    path = tmp_path / "stage.yaml"
    path.write_text("checks: {max_future: 15m}\nlimits: {max_depth: 4}\nsinks: {firehose_backoff_seconds: 0}\n")
    settings = ConsumerConfig.from_env(Env({"RAW_BUCKET": "r", "QUARANTINE_BUCKET": "q",
                                            "TRACKING_CONFIG": str(path)})).settings
    assert (settings.max_future_seconds, settings.max_depth, settings.firehose_backoff_seconds) == (900, 4, 0.0)
    assert settings.max_past_seconds == Settings().max_past_seconds


def test_load_settings_durations_may_be_zero(tmp_path):
    path = tmp_path / "strict.yaml"
    path.write_text("checks: {max_future: 0s, max_past: 90s}\n")
    settings = load_settings(path)
    assert (settings.max_future_seconds, settings.max_past_seconds) == (0, 90)


@pytest.mark.parametrize(("content", "field", "phrase"), [
    pytest.param("alerts: {sentry: true}\n", "alerts", "unknown section", id="unknown-section"),
    pytest.param("checks: 5\n", "checks", "unknown section", id="section-not-a-mapping"),
    pytest.param("limits: {max_dept: 4}\n", "limits.max_dept", "unknown key", id="unknown-key"),
    pytest.param("checks: {max_future: 2 days}\n", "checks.max_future", "not a duration", id="bad-duration"),
    pytest.param("checks: {max_past: 30}\n", "checks.max_past", "not a duration", id="duration-without-unit"),
    pytest.param("limits: {max_depth: 0}\n", "limits.max_depth", "positive integer", id="zero-limit"),
    pytest.param("limits: {max_depth: true}\n", "limits.max_depth", "positive integer", id="bool-limit"),
    pytest.param("sinks: {firehose_backoff_seconds: -1}\n", "sinks.firehose_backoff_seconds", "non-negative",
                 id="negative-backoff"),
    pytest.param("checks: [\n", None, "not valid YAML", id="invalid-yaml"),
])
def test_load_settings_bad_file_raises_naming_field(tmp_path, content, field, phrase):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(DefinitionError) as excinfo:
        load_settings(path)
    assert (excinfo.value.filename, excinfo.value.field) == ("bad.yaml", field)
    assert phrase in excinfo.value.message
