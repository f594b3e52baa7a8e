"""The chaos suite's ledger: every case records what it sent, lost and duplicated; the run ends with one line,
``chaos: OK cases=N sent=… lost=0 duplicated=0`` (or ``chaos: FAILED …``), which `make chaos` and CI show."""
from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.kit import Audit

_AUDITS: list[Audit] = []
_OUTCOMES: dict[str, str] = {}  # test id -> passed / failed / skipped


@pytest.fixture
def ledger():
    """``ledger(audit)`` records a case's audit (before its assertions, so a failure still shows its numbers)."""
    def record(audit: Audit) -> Audit:
        _AUDITS.append(audit)
        print(f"chaos case {audit.case}: sent={audit.sent} lost={audit.lost} duplicated={audit.duplicated} "
              f"{audit.details}")
        return audit
    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "chaos" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.nodeid] = report.outcome
    elif report.when == "teardown" and report.outcome == "failed":
        _OUTCOMES[report.nodeid] = "failed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _OUTCOMES:
        return
    failed = sorted(node for node, outcome in _OUTCOMES.items() if outcome == "failed")
    ran = [node for node, outcome in _OUTCOMES.items() if outcome != "skipped"]
    sent = sum(a.sent for a in _AUDITS)
    lost = sum(a.lost for a in _AUDITS)
    duplicated = sum(a.duplicated for a in _AUDITS)
    ok = not failed and lost == 0 and duplicated == 0 and all(a.ok for a in _AUDITS)
    line = f"chaos: {'OK' if ok else 'FAILED'} cases={len(ran)} sent={sent} lost={lost} duplicated={duplicated}"
    if failed:
        line += " failed=" + ",".join(node.rsplit("::", 1)[-1] for node in failed)
    terminalreporter.write_line(line)
