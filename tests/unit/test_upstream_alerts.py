"""Upstream data alerts: absence and volume verdicts over per-minute counts (pure; counts from a dict)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from handlers.schema.errors import DefinitionError
from handlers.statistics.upstream import TypeCheck, evaluate, load_checks
from tests.conftest import REPO

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def per_minute(rate_by_day: dict[int, float], *, silent_last: timedelta = timedelta(0)):
    """Counts as a function: ``rate_by_day[d]`` events per minute d days ago (0 = today), none in the last
    ``silent_last``."""
    def count(event_type, start, end):
        total = 0.0
        minute = start
        while minute < end:
            days_ago = (NOW.date() - minute.date()).days
            if not (days_ago == 0 and minute >= NOW - silent_last):
                total += rate_by_day.get(days_ago, 0)
            minute += timedelta(minutes=1)
        return int(total)
    return count


def check(**overrides):
    base = dict(event_type="Lead", absent_for=timedelta(minutes=30), window=timedelta(hours=1), factor=5.0,
                min_usual=50, baseline_days=7, min_baseline_days=3)
    return TypeCheck(**{**base, **overrides})


def test_no_events_for_the_absence_window_is_one_absent_finding_with_the_usual_level():
    counts = per_minute({d: 10 for d in range(8)}, silent_last=timedelta(minutes=30))
    [finding] = evaluate([check()], counts, NOW)
    assert finding.check == "absent" and "no Lead events for 30 minutes" in finding.message
    assert finding.usual == 300  # 30 minutes x 10 per minute on previous days


def test_steady_traffic_raises_nothing():
    assert evaluate([check()], per_minute({d: 10 for d in range(8)}), NOW) == []


@pytest.mark.parametrize("today, kind", [(60, "volume_high"), (1, "volume_low")])
def test_volume_beyond_the_factor_of_the_usual_level_is_reported(today, kind):
    counts = per_minute({0: today, **{d: 10 for d in range(1, 8)}})
    [finding] = evaluate([check()], counts, NOW)
    assert finding.check == kind and finding.observed == today * 60 and finding.usual == 600


def test_volume_within_the_factor_is_not_reported():
    assert evaluate([check()], per_minute({0: 45, **{d: 10 for d in range(1, 8)}}), NOW) == []


def test_no_volume_verdict_without_enough_history_or_on_a_quiet_type():
    only_two_days = per_minute({0: 100, 1: 10, 2: 10})
    assert evaluate([check()], only_two_days, NOW) == []
    quiet = per_minute({0: 5, **{d: 0.5 for d in range(1, 8)}})  # usual 30 per hour < min_usual 50
    assert evaluate([check()], quiet, NOW) == []


def test_shipped_configuration_loads_and_names_only_real_event_types():
    known = [p.stem for p in (REPO / "event_types").glob("[A-Z]*.yaml")]
    checks = load_checks(REPO / "config" / "upstream_alerts.yaml", known_types=known)
    lead = next(c for c in checks if c.event_type == "Lead")
    assert lead.absent_for == timedelta(minutes=30) and lead.factor > 1


@pytest.mark.parametrize("text, where", [
    ("types: {Leed: {absent_for: 30m}}", "types.Leed"),
    ("types: {Lead: {absent_for: soon}}", "types.Lead.absent_for"),
    ("types: {Lead: {factor: 0.5}}", "types.Lead.factor"),
    ("types: {Lead: {windw: 1h}}", "types.Lead"),
])
def test_configuration_errors_name_the_file_and_field(tmp_path, text, where):
    path = tmp_path / "upstream_alerts.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError) as error:
        load_checks(path, known_types=["Lead"])
    assert where in str(error.value) and "upstream_alerts.yaml" in str(error.value)
