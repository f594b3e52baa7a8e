"""Statistics end to end on the local stage: stream -> tumbling windows -> the statistics handler -> PostgreSQL.

The reference is a straightforward batch recomputation over the very same records read back from the
stream: valid events (the tracking core), grouped by (shard, stream window) as the mapping groups them,
then by metric window and dimensions.
"""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg
import pytest

from handlers.core.aws import client
from handlers.statistics.definitions import load_metrics
from handlers.statistics.lambda_statistics import build_handler
from handlers.statistics.sink import metric_window
from handlers.core.kinesis import RawRecord
from letgo.traffic import generate
from letgo.windows import TumblingWindowMapping
from tests.conftest import REPO
from tests.stage_kit import send

pytestmark = pytest.mark.functional


@pytest.fixture
def statistics(stage):
    handler = build_handler({"DATABASE_URL": stage.postgres.dsn})
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")
    yield handler
    handler.sink.close()


def view(stage):
    with psycopg.connect(stage.postgres.dsn) as conn:
        return sorted(conn.execute(
            "SELECT metric, window_start, dims::text, count, sum, min, max, distinct_users FROM metric_values"))


def recompute(stage, handler, raw_records):
    """Batch recomputation: the same records, grouped as the mapping groups them, aggregated by hand."""
    windows = handler.metrics.stream_window_seconds
    by_window = defaultdict(list)
    for shard, record in raw_records:
        start = int(record["ApproximateArrivalTimestamp"].timestamp()) // windows * windows
        by_window[(shard, start)].append(record)
    expected = defaultdict(lambda: [0, 0.0, None, None, set()])
    for (shard, start), records in by_window.items():
        events = handler.processor.process([
            RawRecord(r["SequenceNumber"], r["PartitionKey"], base64.b64encode(r["Data"]).decode(),
                      r["ApproximateArrivalTimestamp"].timestamp(), shard) for r in records]).events
        for metric in handler.metrics.metrics:
            begin, _ = metric_window(datetime.fromtimestamp(start, timezone.utc), metric.window_seconds)
            for event in events:
                if metric.event_type not in ("*", event.type):
                    continue
                doc = {"type": event.type, "properties": event.properties, "context": event.context}

                def get(path, doc=doc):
                    node = doc
                    for part in path.split("."):
                        node = node.get(part) if isinstance(node, dict) else None
                    return node

                if any(get(path) not in allowed for path, allowed in metric.where):
                    continue
                value = get(metric.field) if metric.field else None
                if metric.field and not isinstance(value, (int, float)):
                    continue
                dims = {path: get(path) for path in metric.group_by}
                acc = expected[(metric.name, begin, tuple(sorted(dims.items(), key=str)))]
                acc[0] += 1
                if value is not None:
                    acc[1] += value
                    acc[2] = value if acc[2] is None else min(acc[2], value)
                    acc[3] = value if acc[3] is None else max(acc[3], value)
                acc[4].add(event.user_id or event.anonymous_id)
    return expected


def test_windows_equal_a_batch_recomputation_and_final_invokes_are_idempotent(stage, statistics):
    now = datetime.now(timezone.utc)
    plan = generate(1500, seed=11, now=now)
    kinesis = client("kinesis")
    shards = kinesis.describe_stream(StreamName=stage.names.stream)["StreamDescription"]["Shards"]
    latest = {s["ShardId"]: kinesis.get_shard_iterator(StreamName=stage.names.stream, ShardId=s["ShardId"],
                                                       ShardIteratorType="LATEST")["ShardIterator"] for s in shards}
    send(stage, [r.data for r in plan.records])
    finals = []

    def invoke(event):
        if event.get("isFinalInvokeForWindow"):
            finals.append(event)
        return statistics.handle(event)

    mapping = TumblingWindowMapping(kinesis, stage.names.stream, invoke,
                                    window_seconds=statistics.metrics.stream_window_seconds, batch_size=100)
    mapping.start("LATEST")
    mapping.iterators.update(latest)
    mapping.drain()
    assert finals and mapping.stats.final_invocations == len(finals)

    raw = []
    for shard, iterator in latest.items():
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            raw += [(shard, r) for r in page["Records"]]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    assert len(raw) == len(plan.records)
    expected = recompute(stage, statistics, raw)

    rows = view(stage)
    assert rows, "no metric rows were written"
    got = {}
    for metric, start, dims, count, total, low, high, distinct in rows:
        got[(metric, start, tuple(sorted(json.loads(dims).items(), key=str)))] = (count, total, low, high, distinct)
    assert set(got) == set(expected)
    for key, (count, total, low, high, distinct_users) in got.items():
        e_count, e_sum, e_min, e_max, e_users = expected[key]
        assert count == e_count, key
        if e_min is not None:
            assert total == pytest.approx(e_sum) and low == e_min and high == e_max, key
        if key[0] == "active_users_per_country":
            assert distinct_users == pytest.approx(len(e_users), rel=0.1, abs=2), key

    # WHEN every final invocation is repeated (a retried final invoke, or a replay of the same windows)
    for event in finals:
        statistics.handle(event)
    assert view(stage) == rows


def test_shipped_metrics_load_with_a_one_minute_stream_window(catalog):
    metrics = load_metrics(Path(REPO) / "metrics", catalog)
    assert metrics.stream_window_seconds == 60
    assert {m.name for m in metrics.metrics} >= {"leads_per_category", "events_per_type", "active_users_per_country"}


def test_late_event_counts_in_the_window_of_its_arrival_not_of_its_timestamp(stage, statistics):
    """The documented policy: Lambda windows by arrival; an event stamped 2 hours ago lands in the current one."""
    stamped = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    lead = {"type": "Lead", "messageId": "late-1", "userId": "u-1", "timestamp": stamped.isoformat(),
            "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat"}}
    kinesis = client("kinesis")
    mapping = TumblingWindowMapping(kinesis, stage.names.stream, statistics.handle, window_seconds=60)
    mapping.start("LATEST")
    send(stage, [orjson.dumps(lead)])
    mapping.drain()
    with psycopg.connect(stage.postgres.dsn) as conn:
        [(window_start,)] = conn.execute(
            "SELECT window_start FROM metric_values WHERE metric = 'leads_per_category'").fetchall()
    arrival = datetime.now(timezone.utc)
    assert abs((arrival - window_start).total_seconds()) < 180  # the arrival minute
    assert window_start > stamped + timedelta(minutes=100)
