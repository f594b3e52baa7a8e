"""Replay the statistics from a point in time after a bug produced wrong metrics.

The original design's procedure, made one command (``letgo metrics replay --since T``):

1. **stop** the statistics consumer (in AWS: disable its event source mapping and wait);
2. **delete** the rows of every stream window from T on (T rounded down to a stream window, so that the
   first replayed window is complete);
3. **restart from T**: from Kinesis ``AT_TIMESTAMP`` when T is within the stream's retention; otherwise
   from the raw archive on S3 (every record the tracking consumer received, with its original arrival
   time, so it lands in the same windows), then on from the stream.

Windows are assigned by arrival time and the final invocation of a window replaces its rows, so the
replayed rows are exactly those a correct run would have written. Here: the steps (:func:`replay_local`) and
the whole procedure on the running local stage (:func:`replay_running_stage`). On AWS the event source
mapping's starting position cannot be changed in place: :mod:`letgo.ops.replay` redeploys it from T.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from handlers.statistics.sink import MetricSink
from handlers.tracking.sinks.s3objects import read_lines
from letgo.progress import Progress
from letgo.windows import TumblingWindowMapping


@dataclass
class ReplayReport:
    since: datetime
    source: str  # "kinesis" or "archive+kinesis"
    rows_deleted: int = 0
    records_replayed: int = 0
    windows_written: int = 0
    archive_shards: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"replayed from {self.since:%Y-%m-%dT%H:%M:%SZ} via {self.source}: deleted {self.rows_deleted} rows, "
                f"replayed {self.records_replayed} records"
                + (f" ({self.archive_shards} shards from the archive)" if self.archive_shards else "")
                + f", wrote {self.windows_written} windows")


def align(since: datetime, window_seconds: int) -> datetime:
    epoch = int(since.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, timezone.utc)


def archived_records(s3: Any, bucket: str, since: datetime) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(shard, records in sequence order) from the raw archive, arrival >= since, de-duplicated by sequence.

    Archive objects overlap when a sub-batch was retried (bisect, partial failure): readers de-duplicate.
    """
    start_day = since.date() - timedelta(days=1)  # an object is filed under its first record's day
    by_shard: dict[str, dict[int, dict[str, Any]]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for item in page.get("Contents", []):
            day = item["Key"].split("/")[1].removeprefix("dt=")
            if day < start_day.isoformat():
                continue
            for line in read_lines(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()):
                if line["approximateArrivalTimestamp"] < since.timestamp():
                    continue
                by_shard.setdefault(line["shardId"], {})[int(line["sequenceNumber"])] = {
                    "SequenceNumber": line["sequenceNumber"], "PartitionKey": line["partitionKey"],
                    "Data": base64.b64decode(line["data"]),
                    "ApproximateArrivalTimestamp": datetime.fromtimestamp(line["approximateArrivalTimestamp"],
                                                                          timezone.utc)}
    for shard, records in sorted(by_shard.items()):
        yield shard, [records[seq] for seq in sorted(records)]


def replay_local(*, since: datetime, sink: MetricSink, new_mapping: Callable[[], TumblingWindowMapping],
                 retention: timedelta, s3: Any = None, raw_bucket: str | None = None, metric: str | None = None,
                 now: datetime | None = None, progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Steps 2 and 3 on the local stage (step 1: the caller stops its statistics mapping first)."""
    mapping = new_mapping()
    since = align(since, mapping.window_seconds)
    now = now or datetime.now(timezone.utc)
    from_stream = since >= now - retention
    report = ReplayReport(since, "kinesis" if from_stream else "archive+kinesis")
    report.rows_deleted = sink.delete_from(since, metric)
    if from_stream:
        mapping.start("AT_TIMESTAMP", since.timestamp())
        report.records_replayed = mapping.drain(progress=progress)
    else:
        if s3 is None or not raw_bucket:
            raise ValueError(f"{since:%Y-%m-%d %H:%M} is beyond the stream's retention: the raw archive is needed")
        last: dict[str, str] = {}
        for shard, records in archived_records(s3, raw_bucket, since):
            report.archive_shards += 1
            mapping.feed(shard, records)  # windows stay open: the stream's tail may belong to them
            report.records_replayed += len(records)
            last[shard] = records[-1]["SequenceNumber"]
            if progress:
                progress(report.records_replayed)
        # whatever arrived after each shard's last archived record is still in the stream
        mapping.start("AT_TIMESTAMP", since.timestamp())
        for shard, sequence in last.items():
            mapping.iterators[shard] = mapping.kinesis.get_shard_iterator(
                StreamName=mapping.stream_name, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=sequence)["ShardIterator"]
        report.records_replayed += mapping.drain(progress=progress)
        report.notes.append("each shard from the archive up to its last archived record, then from the stream")
    report.windows_written = mapping.stats.final_invocations
    return report


def replay_running_stage(info: dict[str, Any], *, since: datetime, retention: timedelta, metric: str | None = None,
                         say: Callable[[str], None] = print, progress: Progress | None = None) -> ReplayReport:
    """The whole procedure on the running local stage (``info``: :func:`letgo.stage_control.stage_info`): pause its
    statistics consumer, replay here, and have it restart one window back — even when the replay failed."""
    from handlers.core.aws import client
    from handlers.statistics.lambda_statistics import build_handler
    from letgo import stage_control

    stage_control.pause_statistics(info)
    say("1. statistics consumer stopped")
    handler = build_handler({"DATABASE_URL": info["env"]["DATABASE_URL"]})
    window = handler.metrics.stream_window_seconds
    try:
        report = replay_local(
            since=since, sink=handler.sink, metric=metric, progress=progress,
            new_mapping=lambda: TumblingWindowMapping(client("kinesis"), info["stream"], handler.handle,
                                                      window_seconds=window),
            retention=retention, s3=client("s3"), raw_bucket=info["env"]["RAW_BUCKET"])
        if progress is not None:
            progress.finish()
        say(f"2-3. {report.describe()}")
    finally:
        # restart one window early: the last replayed window may be partial, and a rewrite replaces it whole
        resume = align(datetime.now(timezone.utc), window) - timedelta(seconds=window)
        stage_control.resume_statistics(info, resume.timestamp())
        handler.sink.close()
    say(f"4. statistics consumer restarted at {resume:%H:%M:%S}Z")
    return report
