"""Replay after a deliberately wrong metric version: the replayed windows equal a clean run's.

GIVEN traffic consumed once by a statistics handler with a buggy metric (leads counted for chat only),
WHEN `replay` runs with the fixed metric from the point where the bug began — from Kinesis AT_TIMESTAMP, and
again as if that point were beyond the stream's retention, from the raw archive —
THEN the rows equal those of a clean run of the fixed metric over the same records.
Windows of 5 s (instead of the shipped 60 s) keep the test short.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import yaml

from handlers.core.aws import client
from handlers.statistics.lambda_statistics import build_handler
from letgo.replay import replay_local
from letgo.traffic import generate
from letgo.windows import TumblingWindowMapping
from tests.conftest import REPO
from tests.stage_kit import send

pytestmark = pytest.mark.e2e
WINDOW = 5


def metrics_dir(tmp_path, name, *, buggy):
    target = tmp_path / name
    shutil.copytree(REPO / "metrics", target)
    for path in target.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["window"] = f"{WINDOW}s"
        if buggy and doc["name"] == "leads_per_category":
            doc.setdefault("events", {})["where"] = {"properties.channel": ["chat"]}  # the bug
        path.write_text(yaml.safe_dump(doc))
    return target


def rows(stage):
    with psycopg.connect(stage.postgres.dsn) as conn:
        return sorted(conn.execute("SELECT metric, window_start, dims::text, count, sum, min, max, distinct_users "
                                   "FROM metric_values"))


def truncate(stage):
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")


@pytest.mark.parametrize("retention", [timedelta(hours=168), timedelta(0)], ids=["from-kinesis", "from-archive"])
def test_replay_after_a_wrong_metric_equals_a_clean_run(stage, tmp_path, retention):
    kinesis = client("kinesis")
    buggy = build_handler({"DATABASE_URL": stage.postgres.dsn,
                           "METRICS_DIR": str(metrics_dir(tmp_path, "b", buggy=True))})
    fixed = build_handler({"DATABASE_URL": stage.postgres.dsn,
                           "METRICS_DIR": str(metrics_dir(tmp_path, "f", buggy=False))})
    truncate(stage)

    def mapping(handler):
        return TumblingWindowMapping(kinesis, stage.names.stream, handler.handle, window_seconds=WINDOW)

    time.sleep(WINDOW - time.time() % WINDOW + 0.05)  # the bug "begins" exactly at a window boundary
    since = datetime.fromtimestamp(time.time() // WINDOW * WINDOW, timezone.utc)
    send(stage, [r.data for r in generate(800, seed=5, now=datetime.now(timezone.utc)).records])
    stage.mapping.drain()  # the tracking consumer archives every raw record

    wrong = mapping(buggy)
    wrong.start("AT_TIMESTAMP", since.timestamp())
    wrong.drain()
    wrong_rows = rows(stage)

    report = replay_local(since=since, sink=fixed.sink, new_mapping=lambda: mapping(fixed), retention=retention,
                          s3=client("s3"), raw_bucket=stage.names.raw_bucket)
    replayed = rows(stage)
    assert report.rows_deleted > 0 and report.records_replayed >= 700
    assert report.source == ("kinesis" if retention else "archive+kinesis")
    assert (report.archive_shards > 0) is (not retention)

    truncate(stage)
    clean = mapping(fixed)
    clean.start("AT_TIMESTAMP", since.timestamp())
    clean.drain()
    assert replayed == rows(stage)
    assert wrong_rows != replayed  # the bug was visible, and the replay fixed it
    for handler in (buggy, fixed):
        handler.sink.close()
