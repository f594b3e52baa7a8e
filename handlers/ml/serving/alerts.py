"""Sentry reports of the serving side: a candidate that failed live validation, a version that would not load or
is not validated, a kill switch that cannot be read, a broken model definition, a live pointer the validator
had to roll back, a shared change memory that cannot be reached.

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


def report_kill_switch_problem(model: str, error: Exception) -> bool:
    """One Sentry message when a serving process meets a malformed kill switch (the model is off until fixed)."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-serving-kill-switch", model]
            scope.set_tag("model", model)
            scope.set_extra("message", str(error))
            sentry_sdk.capture_message(f"{model}: the kill switch in the model store is malformed; the model is "
                                       f"switched off (fail safe) until an operator writes it again", level="error")
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
            sentry_sdk.capture_message(f"{model}: serving did not take version {version}: "
                                       f"{type(error).__name__}; still serving the previous one", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never break serving
        log.exception("could not report the reload problem to Sentry")
        return False


def report_definition_problem(filename: str, error: Exception, *, where: str) -> bool:
    """One Sentry message per broken model definition: that model is disabled, the others are served."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-definition", filename]
            scope.set_tag("definition", filename)
            scope.set_extra("message", str(error))
            sentry_sdk.capture_message(f"{filename}: the model definition is broken; {where} disables that model "
                                       f"and serves the others: {error}", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never break serving
        log.exception("could not report the definition problem to Sentry")
        return False


def report_memory_problem(kind: str, error: Exception) -> bool:
    """One Sentry message when the shared change memory cannot be reached (limits then hold per process)."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-serving-change-memory", kind]
            scope.set_extra("message", str(error))
            sentry_sdk.capture_message(f"the shared change memory ({kind}) cannot be reached: the max-change guard "
                                       f"rail holds per process until it is back", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never break serving
        log.exception("could not report the change-memory problem to Sentry")
        return False


def report_live_problem(model: str, problem: str, rolled_back_to: str | None) -> bool:
    """One Sentry message when the live pointer was found broken (unreadable, missing or unvalidated version)."""
    try:
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-live-pointer", model]
            scope.set_tag("model", model)
            scope.set_extra("problem", problem)
            scope.set_extra("rolled_back_to", rolled_back_to)
            where = f"rolled back to {rolled_back_to}" if rolled_back_to else "NOT rolled back: nothing to go back to"
            sentry_sdk.capture_message(f"{model}: the live pointer was broken ({problem}); {where}", level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never stop the repair
        log.exception("could not report the live-pointer problem to Sentry")
        return False
