"""Upstream data alerts: an event type that stops arriving, or arrives at a very unusual volume.

Why here: models and dashboards fail quietly when an app release stops sending ``Lead`` events — nothing
is *invalid*, so the consumer's rejection reports (:mod:`handlers.core.alerts`) stay silent. The real-time
statistics already count valid events per type per minute (``metrics/events_per_type.yaml``), so this check
is a query over ``metric_values`` plus a pure verdict:

* **absence** — no event of the type in the last ``absent_for`` (e.g. no Lead for 30 minutes);
* **volume** — the last ``window`` holds more than ``factor`` times, or less than 1/``factor`` of, its
  *usual level*: the median count of the same clock-time window over the previous ``baseline_days`` days
  (traffic has a strong daily cycle, so "the last hour" would call every morning a spike). With fewer than
  ``min_baseline_days`` days of history, or a usual level under ``min_usual``, there is no volume verdict:
  a quiet type cannot be "5× off" on noise.

Each finding is one Sentry message with an explicit fingerprint (type, check), so a type that stays silent
all night is one issue with many events, not many issues. Configuration: ``config/upstream_alerts.yaml``,
validated once at load (file and field in every error).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import sentry_sdk
import yaml

from handlers.schema.errors import DefinitionError
from handlers.schema.rules import duration

METRIC = "events_per_type"


@dataclass(frozen=True)
class TypeCheck:
    event_type: str
    absent_for: timedelta | None   # None: no absence check for this type
    window: timedelta              # the volume check's window
    factor: float                  # > 1: alert beyond factor× or below 1/factor× the usual level
    min_usual: float               # no volume verdict under this usual count per window
    baseline_days: int
    min_baseline_days: int


KEYS = {"absent_for", "window", "factor", "min_usual", "baseline_days", "min_baseline_days"}


def load_checks(path: Path, known_types: Sequence[str] | None = None) -> list[TypeCheck]:
    """``defaults`` + ``types: {Name: {overrides}}``; every declared type is checked (unknown names refused)."""
    filename = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DefinitionError(filename, None, f"not YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("types"), dict):
        raise DefinitionError(filename, "types", "expected a mapping of event type -> checks")
    defaults = document.get("defaults") or {}
    checks = []
    for name, overrides in document["types"].items():
        if known_types is not None and name not in known_types:
            raise DefinitionError(filename, f"types.{name}", "unknown event type (no event_types/<Name>.yaml)")
        merged = {**defaults, **(overrides or {})}
        unknown = set(merged) - KEYS
        if unknown:
            raise DefinitionError(filename, f"types.{name}", f"unknown keys {sorted(unknown)} (allowed {sorted(KEYS)})")
        where = f"types.{name}"
        factor = merged.get("factor", 5)
        if not isinstance(factor, (int, float)) or factor <= 1:
            raise DefinitionError(filename, f"{where}.factor", f"{factor!r}: must be a number above 1")
        days = merged.get("baseline_days", 7)
        least = merged.get("min_baseline_days", 3)
        if not (isinstance(days, int) and isinstance(least, int) and 1 <= least <= days <= 60):
            raise DefinitionError(filename, where, "need 1 <= min_baseline_days <= baseline_days <= 60 (integers)")
        checks.append(TypeCheck(
            event_type=name,
            absent_for=timedelta(seconds=duration(merged["absent_for"], filename, f"{where}.absent_for"))
            if merged.get("absent_for") else None,
            window=timedelta(seconds=duration(merged.get("window", "1h"), filename, f"{where}.window")),
            factor=float(factor), min_usual=float(merged.get("min_usual", 50)),
            baseline_days=days, min_baseline_days=least))
    return checks


@dataclass(frozen=True)
class Finding:
    event_type: str
    check: str        # "absent" | "volume_high" | "volume_low"
    message: str
    observed: int
    usual: float | None
    since: datetime


CountFn = Callable[[str, datetime, datetime], int]  # (event type, start, end) -> valid events in [start, end)


def usual_level(count: CountFn, check: TypeCheck, start: datetime, end: datetime) -> tuple[float | None, int]:
    """Median count of [start, end) shifted back by 1..baseline_days days, over the days that had any data."""
    history = [count(check.event_type, start - timedelta(days=d), end - timedelta(days=d))
               for d in range(1, check.baseline_days + 1)]
    seen = [c for c in history if c > 0]
    return (statistics.median(seen) if seen else None), len(seen)


def evaluate(checks: Sequence[TypeCheck], count: CountFn, now: datetime) -> list[Finding]:
    findings = []
    for check in checks:
        if check.absent_for is not None:
            since = now - check.absent_for
            if count(check.event_type, since, now) == 0:
                usual, _ = usual_level(count, check, since, now)
                hint = f" (usually about {usual:,.0f})" if usual else ""
                findings.append(Finding(check.event_type, "absent",
                                        f"no {check.event_type} events for {_human(check.absent_for)}{hint}",
                                        0, usual, since))
                continue  # a silent type is not also "low volume"
        since = now - check.window
        observed = count(check.event_type, since, now)
        usual, days = usual_level(count, check, since, now)
        if usual is None or days < check.min_baseline_days or usual < check.min_usual:
            continue
        ratio = observed / usual
        if ratio > check.factor or ratio < 1 / check.factor:
            kind = "volume_high" if ratio > 1 else "volume_low"
            findings.append(Finding(check.event_type, kind,
                                    f"{check.event_type}: {observed:,} events in the last {_human(check.window)}, "
                                    f"{ratio:.2f}x the usual {usual:,.0f} (alert beyond {check.factor:g}x)",
                                    observed, usual, since))
    return findings


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit[:-1] if n == 1 else unit}"
    return f"{seconds} s"


def report(findings: Sequence[Finding], stage: str) -> int:
    """One Sentry message per finding, fingerprinted by (type, check). Never raises."""
    sent = 0
    for finding in findings:
        try:
            with sentry_sdk.new_scope() as scope:
                scope.fingerprint = ["upstream-data", finding.event_type, finding.check]
                scope.set_tag("stage", stage)
                scope.set_tag("event_type", finding.event_type)
                scope.set_tag("check", finding.check)
                scope.set_extra("observed", finding.observed)
                scope.set_extra("usual", finding.usual)
                scope.set_extra("since", finding.since.isoformat())
                sentry_sdk.capture_message(finding.message, level="error" if finding.check == "absent" else "warning")
            sent += 1
        except Exception:  # noqa: BLE001 - an alerting outage must not fail the check
            continue
    return sent


@dataclass
class PostgresCounts:
    """Valid events per type in a time range, from the ``events_per_type`` metric (PostgreSQL/Aurora)."""

    connection: Any
    cache: dict[tuple[str, datetime, datetime], int] = field(default_factory=dict)

    def __call__(self, event_type: str, start: datetime, end: datetime) -> int:
        key = (event_type, start, end)
        if key not in self.cache:
            row = self.connection.execute(
                "SELECT coalesce(sum(count), 0) FROM metric_windows WHERE metric = %s "
                "AND metric_window_start >= %s AND metric_window_start < %s AND dims->>'type' = %s",
                (METRIC, start, end, event_type)).fetchone()
            self.cache[key] = int(row[0])
        return self.cache[key]

