"""``make run`` in small: its own local stage, synthetic traffic, the conservation report."""
from __future__ import annotations

import orjson
import pytest

from letgo.demo import run_demo
from tests.stage_kit import private_tmp, stop_leftover_postgres

pytestmark = pytest.mark.e2e


def test_small_demo_accounts_for_every_event(tmp_path):
    lines: list[str] = []
    with private_tmp() as workdir:  # not tmp_path: see tests/stage_kit.py (PostgreSQL runs as `postgres`)
        report = run_demo(2000, workdir=workdir / "stage", report_dir=tmp_path / "reports", say=lines.append)
        assert stop_leftover_postgres(workdir) == [], "run_demo left PostgreSQL running"

    assert report["ok"] is True, report["checks"]
    assert lines[-1].startswith("conservation: OK sent=2000"), lines[-1]
    assert report["sent"] == 2000
    assert report["sent"] == report["delivered"]["postgres"] + report["quarantined"] + report["duplicates"]
    assert report["quarantined"] > 0 and report["duplicates"] > 0  # the traffic does exercise both paths

    written = orjson.loads((tmp_path / "reports").joinpath(report["path"].rsplit("/", 1)[-1]).read_bytes())
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        [report["path"].rsplit("/", 1)[-1], report["metrics"]["chart"].rsplit("/", 1)[-1]])
    assert (tmp_path / "reports" / report["metrics"]["chart"].rsplit("/", 1)[-1]).read_bytes()[:4] == b"\x89PNG"
    assert report["metrics"]["metrics"]["events_per_type"]["windows"] >= 1
    assert written["sent"] == 2000 and written["ok"] is True
    assert written["sent"] == written["delivered"]["postgres"] + written["quarantined"] + written["duplicates"]
    assert written["checks"] == report["checks"]
