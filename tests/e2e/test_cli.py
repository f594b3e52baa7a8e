"""The ``letgo`` CLI as a developer runs it: a subprocess of ``python -m letgo`` in the repository."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import lead_properties, native, send

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MIXED = Path("tests/events/mixed_sample.jsonl")  # relative: the CLI echoes the path it was given


def letgo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "letgo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def timeless(tmp_path):
    """The sample files carry fixed timestamps: widen max_past so they do not expire with the calendar."""
    config = tmp_path / "tracking.yaml"
    config.write_text("checks:\n  max_past: 36500d\n", encoding="utf-8")
    return {"TRACKING_CONFIG": str(config)}


def test_events_validate_names_line_field_and_reason_of_each_invalid_event(timeless):
    result = letgo("events", "validate", str(MIXED), env=timeless)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    problems = [line for line in lines if line.startswith(f"{MIXED}:")]
    # (line number in the file, field, reason code); line 5 is blank, so the last event is on line 7
    found = [(int(m.group(1)), m.group(2), m.group(3)) for m in
             (re.match(rf"{re.escape(str(MIXED))}:(\d+) .*field '([^']+)': \[([a-z_]+)\]", p) for p in problems)
             if m]
    assert found == [(2, "properties.price", "out_of_range"),
                     (3, "properties.channel", "not_in_enum"),
                     (7, "properties.item_id", "missing_field")], result.stdout
    assert len(problems) == 3
    assert lines[-1] == "3 valid, 3 invalid of 6 events"


def test_events_validate_exits_0_on_an_all_valid_file(tmp_path, timeless):
    valid_lines = [1, 4, 6]  # the valid events of the mixed sample
    text = (REPO / MIXED).read_text(encoding="utf-8").splitlines()
    valid = tmp_path / "valid.jsonl"
    valid.write_text("\n".join(text[n - 1] for n in valid_lines) + "\n", encoding="utf-8")
    result = letgo("events", "validate", str(valid), env=timeless)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["3 valid, 0 invalid of 3 events"]


def _deep_lead(depth: int) -> bytes:
    """The mixed sample's first (valid) event with a property nested ``depth`` levels deep."""
    first = (REPO / MIXED).read_bytes().splitlines()[0]
    return first.replace(b'"properties": {', b'"properties": {"a": ' + b"[" * depth + b"]" * depth + b", ", 1)


def test_events_validate_reports_an_event_nested_2000_deep_in_json_lines(tmp_path, timeless):
    first = (REPO / MIXED).read_bytes().splitlines()[0]
    sample = tmp_path / "deep.jsonl"
    sample.write_bytes(b"\n".join([first, _deep_lead(2000), _deep_lead(300)]) + b"\n")
    result = letgo("events", "validate", str(sample), env=timeless)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [
        f"{sample}:2: record: [too_deep] JSON nesting exceeds the parser's limit (1024 levels)",
        f"{sample}:3 (Lead): field 'properties.a': [unknown_property] not declared in the event type "
        "(add it to the YAML, then re-drive)",
        "1 valid, 2 invalid of 3 events"]


def test_events_validate_says_in_one_line_that_a_json_array_it_cannot_parse_is_not_one(tmp_path, timeless):
    first = (REPO / MIXED).read_bytes().splitlines()[0]
    sample = tmp_path / "deep.json"
    sample.write_bytes(b"[" + first + b", " + _deep_lead(2000) + b"]")
    result = letgo("events", "validate", str(sample), env=timeless)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{sample}: not a JSON array of events (nor JSON lines): depth limit exceeded: line 1 ")


def test_events_validate_takes_a_json_array_with_items_deeper_than_orjson_writes(tmp_path, timeless):
    first = (REPO / MIXED).read_bytes().splitlines()[0]
    sample = tmp_path / "deep.json"
    sample.write_bytes(b"\xef\xbb\xbf[" + first + b", " + _deep_lead(300) + b"]")  # and a BOM, as editors write
    result = letgo("events", "validate", str(sample), env=timeless)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{sample}:2 (Lead): field 'properties.a': [unknown_property] not declared in the event type "
        "(add it to the YAML, then re-drive)",
        "1 valid, 1 invalid of 2 events"]


def test_alerts_lists_one_line_per_type_and_problem_with_counts(stage):
    send(stage, [native("Lead", lead_properties(price=-1)) for _ in range(3)] +
         [native("Lead", lead_properties(channel="pigeon")) for _ in range(2)] +
         [b"not json"] + [native("Lead", lead_properties()) for _ in range(4)])
    stage.mapping.drain()
    assert stage.sentry_path.exists()

    result = letgo("alerts", "--path", str(stage.sentry_path))
    assert result.returncode == 0, result.stderr
    headlines = [line.strip() for line in result.stdout.splitlines() if " events " in line]
    parsed = {}
    for line in headlines:
        m = re.match(r"(\d+) events\s+(\d+) reports\s+(.+)$", line)
        assert m, line
        assert m.group(3) not in parsed, f"issue listed twice: {m.group(3)}"
        parsed[m.group(3)] = int(m.group(1))
    assert parsed == {"Lead: out_of_range on properties.price": 3,
                      "Lead: not_in_enum on properties.channel": 2,
                      "(none): not_json on (record)": 1}
    assert headlines[0].endswith("Lead: out_of_range on properties.price")  # biggest issue first


def test_alerts_on_an_empty_store_says_so(tmp_path):
    result = letgo("alerts", "--path", str(tmp_path / "none.jsonl"))
    assert result.returncode == 0 and result.stdout.startswith("no alerts in ")


def test_types_check_passes():
    result = letgo("types", "check")
    assert result.returncode == 0, result.stderr
    assert "valid and compatible with schema.lock.json" in result.stdout
