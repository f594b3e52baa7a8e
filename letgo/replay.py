"""Replay the statistics from a point in time after a bug produced wrong metrics.

The original design's procedure, made one command (``letgo metrics replay --since T``):

1. **stop** the statistics consumer (in AWS: disable its event source mapping and wait);
2. **delete** the rows of every stream window from T on (T rounded down to a stream window, so that the
   first replayed window is complete);
3. **restart from T**: from Kinesis ``AT_TIMESTAMP`` when T is within the stream's retention; otherwise
   from the raw archive on S3 (every record the tracking consumer received, with its original arrival
   time, so it lands in the same windows), then on from the stream.

Windows are assigned by arrival time and the final invocation of a window replaces its rows, so the
replayed rows are exactly those a correct run would have written. In AWS the event source mapping's
starting position cannot be changed, so step 3 deletes it and creates it again at ``AT_TIMESTAMP``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from handlers.statistics.sink import MetricSink
from handlers.tracking.sinks.s3objects import read_lines
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
    start_day = since.date()
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


def replay_aws(lambda_client: Any, *, mapping_uuid: str, since: datetime, sink: MetricSink, window_seconds: int,
               metric: str | None = None, wait: Callable[[float], None] | None = None) -> tuple[ReplayReport, str]:
    """Disable the mapping, delete rows from T, recreate the mapping at AT_TIMESTAMP T. Returns the new UUID.

    Beyond the stream's retention, run ``replay_local`` over the archive with the production DSN first,
    then restart the mapping at the archive's last arrival (the same two steps, in that order).
    """
    import time

    wait = wait or time.sleep
    since = align(since, window_seconds)
    report = ReplayReport(since, "kinesis")
    current = lambda_client.update_event_source_mapping(UUID=mapping_uuid, Enabled=False)
    for _ in range(120):
        if lambda_client.get_event_source_mapping(UUID=mapping_uuid)["State"] in ("Disabled", "Deleted"):
            break
        wait(1)
    report.rows_deleted = sink.delete_from(since, metric)
    lambda_client.delete_event_source_mapping(UUID=mapping_uuid)
    keep = ("EventSourceArn", "FunctionArn", "BatchSize", "MaximumBatchingWindowInSeconds", "ParallelizationFactor",
            "DestinationConfig", "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError",
            "MaximumRetryAttempts", "TumblingWindowInSeconds", "FunctionResponseTypes")
    config = {k: current[k] for k in keep if current.get(k) is not None}
    config["FunctionName"] = config.pop("FunctionArn")
    created = lambda_client.create_event_source_mapping(**config, Enabled=True, StartingPosition="AT_TIMESTAMP",
                                                        StartingPositionTimestamp=since)
    report.notes.append(f"event source mapping {mapping_uuid} replaced by {created['UUID']} at AT_TIMESTAMP")
    return report, created["UUID"]
