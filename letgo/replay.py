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


def replay_aws(lambda_client: Any, *, function_name: str, since: datetime, sink: MetricSink, window_seconds: int,
               retention: timedelta, deploy: Callable[[datetime], None], metric: str | None = None,
               now: datetime | None = None, wait: Callable[[float], None] | None = None,
               timeout_seconds: float = 300) -> ReplayReport:
    """Stop the statistics mapping, delete rows from T, redeploy it at AT_TIMESTAMP T through CloudFormation.

    An event source mapping's starting position cannot be changed in place, and a mapping recreated behind
    CloudFormation's back would make the stack drift; so ``deploy(T)`` runs ``humilis update`` with the
    statistics layer's ``replay_from`` set to T — CloudFormation replaces the mapping, which reads from T
    (with no maximum record age). Beyond the stream's retention this refuses: replay from the archive first.
    """
    import time

    wait = wait or time.sleep
    since = align(since, window_seconds)
    now = now or datetime.now(timezone.utc)
    if since < now - retention:
        raise ValueError(f"{since:%Y-%m-%dT%H:%M}Z is beyond the stream's retention ({retention}); replay that part "
                         f"from the raw archive (replay_local with the production database), then from the stream")
    report = ReplayReport(since, "kinesis")
    function_arn = lambda_client.get_function_configuration(FunctionName=function_name)["FunctionArn"]
    mappings = lambda_client.list_event_source_mappings(FunctionName=function_arn)["EventSourceMappings"]
    if not mappings:
        raise ValueError(f"{function_name} has no event source mapping to replay")
    for mapping in mappings:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    deadline = time.monotonic() + timeout_seconds
    while any(lambda_client.get_event_source_mapping(UUID=m["UUID"])["State"] not in ("Disabled", "Deleted")
              for m in mappings):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the statistics mapping of {function_name} did not stop within {timeout_seconds:.0f} s;"
                               f" nothing was deleted")
        wait(2)
    report.notes.append(f"{len(mappings)} mapping(s) of {function_name} disabled")
    report.rows_deleted = sink.delete_from(since, metric)
    deploy(since)
    report.notes.append("statistics layer redeployed with replay_from: its mapping now reads from there")
    return report
