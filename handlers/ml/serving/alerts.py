"""Sentry reports of the serving side: a candidate that failed live validation, a version that would not load, a
kill switch that cannot be read.

Same rules as :mod:`handlers.ml.alerts` (training) and :mod:`handlers.core.alerts` (tracking): an explicit
fingerprint, so a model that keeps failing the same golden requests adds events to one issue while a new
kind of failure opens its own; the numbers a person needs to act (each failed golden request with what was
answered and expected, where the pointer went) and no request data beyond the golden inputs, which are
declared in the model's YAML. Reporting never raises: a Sentry outage must not stop a rollback.
"""
from __future__ import annotations

import logging
from typing import Any

import sentry_sdk

log = logging.getLogger(__name__)


def report_validation_problem(report: Any) -> bool:
    """One Sentry message for a validation that did not end in ``validated``; True when handed to Sentry."""
    try:
        failed = [result.name for result in report.results if not result.passed]
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-validation", report.model, report.outcome.value, *failed]
            scope.set_tag("model", report.model)
            scope.set_tag("version", report.version)
            scope.set_tag("outcome", report.outcome.value)
            scope.set_extra("failures", report.failures())
            scope.set_extra("rolled_back_to", report.rolled_back_to)
            scope.set_extra("detail", report.detail)
            level = "warning" if report.outcome.value == "inconclusive" else "error"
            sentry_sdk.capture_message(report.headline(), level=level)
        return True
    except Exception:  # noqa: BLE001 - reporting must never stop the rollback
        log.exception("could not report the validation problem to Sentry")
        return False


def report_kill_switch_problem(model: str, error: Exception, *, on: bool) -> bool:
    """One Sentry message when a serving process refuses a malformed kill switch (it keeps the state it had)."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-serving-kill-switch", model]
            scope.set_tag("model", model)
            scope.set_extra("message", str(error))
            sentry_sdk.capture_message(f"{model}: the kill switch in the model store is malformed and refused; the "
                                       f"model stays {'switched off' if on else 'served'}", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never break serving
        log.exception("could not report the kill-switch problem to Sentry")
        return False


def report_reload_problem(model: str, version: str, error: Exception) -> bool:
    """One Sentry message when a serving process refuses or fails to load a version (it keeps the old one)."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-serving-reload", model, type(error).__name__]
            scope.set_tag("model", model)
            scope.set_tag("version", version)
            scope.set_tag("error", type(error).__name__)
            scope.set_extra("message", str(error))
            sentry_sdk.capture_message(f"{model}: serving could not load version {version}: "
                                       f"{type(error).__name__}; still serving the previous one", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never break serving
        log.exception("could not report the reload problem to Sentry")
        return False
