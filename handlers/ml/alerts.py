"""Sentry reports for training that ended without a new model: one issue per (model, outcome, what failed).

Like the tracking consumer's reports (:mod:`handlers.core.alerts`), the fingerprint is explicit: a nightly
job that keeps failing the same drift check on ``category`` adds events to one issue instead of opening a new
one every night, while a different failure (a metric threshold, a golden request) opens its own. The event
carries the numbers a person needs to act — every failed check or gate with observed value and threshold,
row counts, metrics, the current model's version — and no training data (rows can hold personal data).
Reporting never raises: a Sentry outage must not turn a refused model into a crashed job.
"""
from __future__ import annotations

import logging
from typing import Any

import sentry_sdk

log = logging.getLogger(__name__)


def report_training_problem(report: Any) -> bool:
    """Send one Sentry message for a blocked or rejected training run; True when it was handed to Sentry."""
    try:
        failed = list(report.failed_keys())
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["ml-training", report.model, report.decision.value, *failed]
            scope.set_tag("model", report.model)
            scope.set_tag("decision", report.decision.value)
            scope.set_tag("code_version", report.code_version)
            scope.set_extra("failures", list(report.failures()))
            scope.set_extra("rows", {"loaded": report.load.events if report.load else None,
                                     "train": report.train_rows, "holdout": report.holdout_rows})
            scope.set_extra("metrics", dict(report.metrics))
            scope.set_extra("current_version", report.baseline.version if report.baseline else None)
            sentry_sdk.capture_message(f"{report.model}: training {report.decision.value}: {', '.join(failed)}",
                                       level="error")
        return True
    except Exception:  # noqa: BLE001 - reporting must never fail the job
        log.exception("could not report the training problem to Sentry")
        return False
