"""``letgo recover``: re-deliver what a stream mapping gave up on, from its on-failure queue.

When a batch keeps failing past the mapping's ``MaximumRecordAgeInSeconds`` (an outage longer than that, a
bug), Lambda sends only its *coordinates* to the on-failure queue — shard, first and last sequence number,
arrival times — never the records. Recovery, per message:

1. re-read exactly those records: from Kinesis (``AT_SEQUENCE_NUMBER``) while they are within the stream's
   retention, else from the raw archive (every record the consumer received, archived before anything else);
2. hand them to the *same* function in batches, as its mapping would (locally: the handler in-process; on
   AWS: a synchronous ``lambda:Invoke`` of the deployed function, which runs in its VPC with its role —
   :mod:`letgo.ops.recoveries`);
3. delete the message only once every record was delivered — a message whose records still fail stays in
   the queue for the next run.

The statistics' messages name a tumbling window (or records inside some): recovery recomputes each whole
window of that shard from all its records and writes it, replacing whatever partial rows were there.

Every consumer is idempotent (one row per messageId, quarantine objects per record, index writes by id,
window rows replaced), so running recovery twice is the same as once. ``dry_run`` lists what would be done.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import orjson
from botocore.exceptions import ClientError

from handlers.tracking.sinks.s3objects import read_lines
from letgo.driver import kinesis_event

Records = list[dict[str, Any]]  # GetRecords' shape: SequenceNumber, PartitionKey, Data, ApproximateArrivalTimestamp
Say = Callable[[str], None]


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class GaveUp:
    """One on-failure message: which records of which shard a mapping gave up on, and why."""

    message_id: str
    receipt: str
    shard: str
    start: str
    end: str
    first_arrival: float | None
    last_arrival: float | None
    condition: str
    reason: str
    window: tuple[float, float] | None = None  # a statistics window (start, end), when the message names one

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "GaveUp":
        body = orjson.loads(message["Body"])
        info = body["KinesisBatchInfo"]
        window = body.get("window")
        request, response = body.get("requestContext") or {}, body.get("responseContext") or {}
        return cls(message["MessageId"], message["ReceiptHandle"], info["shardId"], info["startSequenceNumber"],
                   info["endSequenceNumber"], _epoch(info.get("approximateArrivalOfFirstRecord")),
                   _epoch(info.get("approximateArrivalOfLastRecord")), request.get("condition") or "?",
                   str(request.get("reason") or response.get("functionError") or ""),
                   (_epoch(window["start"]), _epoch(window["end"])) if window else None)  # type: ignore[arg-type]

    def describe(self) -> str:
        span = f"{self.start}..{self.end}" if self.start != self.end else self.start
        return f"{self.shard} {span} ({self.condition}{': ' + self.reason[:120] if self.reason else ''})"


class RecordReader:
    """Reads records back by coordinates: from the stream while it has them, else from the raw archive."""

    def __init__(self, kinesis: Any, stream: str, s3: Any, raw_bucket: str) -> None:
        self.kinesis, self.stream, self.s3, self.raw_bucket = kinesis, stream, s3, raw_bucket

    # -- by sequence range ------------------------------------------------------------------------------
    def read(self, shard: str, start: str, end: str, first_arrival: float | None = None,
             last_arrival: float | None = None) -> tuple[Records, str]:
        """The records of ``shard`` from ``start`` to ``end`` (inclusive) and where they came from."""
        records = self._from_stream(shard, start, end)
        if records is not None:
            return records, "kinesis"
        return self._from_archive(shard, lambda seq, _arrival: int(start) <= seq <= int(end),
                                  first_arrival, last_arrival), "archive"

    def _from_stream(self, shard: str, start: str, end: str) -> Records | None:
        """None when the stream no longer holds ``start`` (trimmed past retention, or a deleted stream)."""
        try:
            iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard,
                                                       ShardIteratorType="AT_SEQUENCE_NUMBER",
                                                       StartingSequenceNumber=start)["ShardIterator"]
        except ClientError:
            return None
        records: Records = []
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in response["Records"]:
                if int(record["SequenceNumber"]) > int(end):
                    return records
                records.append(record)
            if not response["Records"] and not response.get("MillisBehindLatest"):
                break  # caught up with the shard's end
            iterator = response.get("NextShardIterator")
        if not records or records[0]["SequenceNumber"] != start:
            return None  # the first record was trimmed meanwhile: the archive has them all
        return records

    # -- by arrival window ------------------------------------------------------------------------------
    def read_window(self, shard: str, begin: float, end: float) -> tuple[Records, str]:
        """Every record of ``shard`` that arrived in [begin, end): a statistics window's whole input."""
        try:
            iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard,
                                                       ShardIteratorType="AT_TIMESTAMP",
                                                       Timestamp=begin)["ShardIterator"]
            records: Records = []
            while iterator:
                response = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
                for record in response["Records"]:
                    if record["ApproximateArrivalTimestamp"].timestamp() >= end:
                        return self._complete_from_archive(shard, begin, end, records)
                    records.append(record)
                if not response["Records"] and not response.get("MillisBehindLatest"):
                    break
                iterator = response.get("NextShardIterator")
            return self._complete_from_archive(shard, begin, end, records)
        except ClientError:
            return self._from_archive(shard, lambda _seq, arrival: begin <= arrival < end, begin, end), "archive"

    def _complete_from_archive(self, shard: str, begin: float, end: float, records: Records) -> tuple[Records, str]:
        """The stream answers AT_TIMESTAMP from its trim horizon: if the window starts before that, use the
        archive (which holds every record the consumer received) instead of a partial window."""
        archived = self._from_archive(shard, lambda _seq, arrival: begin <= arrival < end, begin, end)
        if len(archived) > len(records):
            return archived, "archive"
        return records, "kinesis"

    def _from_archive(self, shard: str, wanted: Callable[[int, float], bool], first_arrival: float | None,
                      last_arrival: float | None) -> Records:
        found: dict[int, dict[str, Any]] = {}
        for prefix in self._archive_prefixes(shard, first_arrival, last_arrival):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.raw_bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if f"/{shard}/" not in item["Key"]:
                        continue
                    body = self.s3.get_object(Bucket=self.raw_bucket, Key=item["Key"])["Body"].read()
                    for line in read_lines(body):
                        sequence = int(line["sequenceNumber"])
                        if line["shardId"] == shard and wanted(sequence, line["approximateArrivalTimestamp"]):
                            found[sequence] = {  # archive objects overlap after retries: one record per sequence
                                "SequenceNumber": line["sequenceNumber"], "PartitionKey": line["partitionKey"],
                                "Data": base64.b64decode(line["data"]),
                                "ApproximateArrivalTimestamp": datetime.fromtimestamp(
                                    line["approximateArrivalTimestamp"], timezone.utc)}
        return [found[sequence] for sequence in sorted(found)]

    @staticmethod
    def _archive_prefixes(shard: str, first: float | None, last: float | None) -> list[str]:
        if first is None or last is None:
            return ["raw/"]
        day = datetime.fromtimestamp(first, timezone.utc).date() - timedelta(days=1)  # filed under a batch's first day
        until = datetime.fromtimestamp(last, timezone.utc).date()
        prefixes = []
        while day <= until:
            prefixes.append(f"raw/dt={day.isoformat()}/{shard}/")
            day += timedelta(days=1)
        return prefixes


@dataclass
class RecoveryReport:
    function: str
    messages: int = 0
    recovered: int = 0  # messages whose records were all delivered (and deleted from the queue)
    left: int = 0  # messages kept: their records still fail (or a dry run)
    records: int = 0
    from_kinesis: int = 0
    from_archive: int = 0
    windows: int = 0
    problems: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)  # dry run: what would be done

    def describe(self) -> str:
        what = f"{self.windows} windows recomputed from " if self.windows else ""
        return (f"{self.function}: {self.messages} on-failure messages, {self.recovered} recovered, {self.left} left; "
                f"{what}{self.records} records re-delivered ({self.from_kinesis} from Kinesis, "
                f"{self.from_archive} from the raw archive)")


Deliver = Callable[[str, Records], set[str]]  # (shard, records) -> sequence numbers still failing


def failed_of(answer: Any) -> set[str]:
    """The records a function answer says failed: a BatchOutcome/IndexOutcome locally, Lambda's JSON on AWS."""
    if isinstance(answer, dict):
        return {item.get("itemIdentifier") for item in answer.get("batchItemFailures") or []}
    return set(getattr(answer, "failed_sequence_numbers", ()) or ())


def batch_deliverer(invoke: Callable[[dict[str, Any]], Any], *, stream_arn: str, region: str,
                    batch_size: int = 100) -> Deliver:
    """Records to a stream function in batches of ``batch_size``, each as its mapping's event would be."""
    def deliver(shard: str, records: Records) -> set[str]:
        failed: set[str] = set()
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            try:
                failed |= failed_of(invoke(kinesis_event(shard, chunk, stream_arn=stream_arn, region=region)))
            except Exception:  # noqa: BLE001 - a function error: these records are not delivered
                failed |= {r["SequenceNumber"] for r in chunk}
            if failed:
                break  # keep order: later records wait for the next recovery run
        return failed
    return deliver


class Recovery:
    """Drains one on-failure queue: re-read, re-deliver, delete — or, with ``dry_run``, only list."""

    def __init__(self, function: str, *, sqs: Any, queue_url: str, reader: RecordReader, say: Say = print,
                 deliver: Deliver | None = None, recompute_window: Callable[[str, float, float, Records], bool] | None
                 = None, window_seconds: int | None = None, progress: Callable[[int], None] | None = None,
                 visibility_seconds: int = 300) -> None:
        if (deliver is None) == (recompute_window is None):
            raise ValueError("a recovery delivers records (deliver) or recomputes windows (recompute_window)")
        self.function, self.sqs, self.queue_url, self.reader, self.say = function, sqs, queue_url, reader, say
        self.deliver, self.recompute_window, self.window_seconds = deliver, recompute_window, window_seconds
        self.progress, self.visibility_seconds = progress, visibility_seconds

    def messages(self) -> Iterable[GaveUp]:
        seen: set[str] = set()
        while True:
            received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                VisibilityTimeout=self.visibility_seconds,
                                                WaitTimeSeconds=0).get("Messages", [])
            fresh = [m for m in received if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield GaveUp.from_message(message)

    def run(self, *, dry_run: bool = False) -> RecoveryReport:
        report = RecoveryReport(self.function)
        kept: list[GaveUp] = []
        for gave_up in self.messages():
            report.messages += 1
            try:
                done = self._recover(gave_up, report, dry_run)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the others
                report.problems.append(f"{gave_up.describe()}: {type(exc).__name__}: {exc}")
                done = False
            if done and not dry_run:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=gave_up.receipt)
                report.recovered += 1
            else:
                report.left += 1
                kept.append(gave_up)
        for gave_up in kept:  # visible again at once: the queue shows what is left (and a dry run changed nothing)
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=gave_up.receipt,
                                               VisibilityTimeout=0)
        return report

    def _recover(self, gave_up: GaveUp, report: RecoveryReport, dry_run: bool) -> bool:
        if self.recompute_window is not None:
            return self._recover_windows(gave_up, report, dry_run)
        assert self.deliver is not None
        records, source = self.reader.read(gave_up.shard, gave_up.start, gave_up.end, gave_up.first_arrival,
                                           gave_up.last_arrival)
        self._count(report, records, source)
        if dry_run:
            report.plan.append(f"{gave_up.describe()}: {len(records)} records from {source} -> {self.function}")
            return False
        if not records:
            report.problems.append(f"{gave_up.describe()}: no record found in the stream or the raw archive")
            return False
        failed = self.deliver(gave_up.shard, records)
        if failed:
            report.problems.append(f"{gave_up.describe()}: {len(failed)} records still failing (kept in the queue)")
        return not failed

    def _recover_windows(self, gave_up: GaveUp, report: RecoveryReport, dry_run: bool) -> bool:
        assert self.recompute_window is not None and self.window_seconds
        size = self.window_seconds
        if gave_up.window is not None:
            windows = [gave_up.window]
        else:  # records inside some windows: recompute every window they fall in
            records, _source = self.reader.read(gave_up.shard, gave_up.start, gave_up.end, gave_up.first_arrival,
                                                gave_up.last_arrival)
            starts = sorted({math.floor(r["ApproximateArrivalTimestamp"].timestamp() / size) * size for r in records})
            windows = [(float(s), float(s + size)) for s in starts]
        ok = bool(windows)
        for begin, end in windows:
            records, source = self.reader.read_window(gave_up.shard, begin, end)
            self._count(report, records, source)
            label = f"window {datetime.fromtimestamp(begin, timezone.utc):%Y-%m-%dT%H:%M:%SZ} on {gave_up.shard}"
            if dry_run:
                report.plan.append(f"{label}: recompute from {len(records)} records ({source})")
                continue
            if self.recompute_window(gave_up.shard, begin, end, records):
                report.windows += 1
            else:
                ok = False
                report.problems.append(f"{label}: the window could not be written (kept in the queue)")
        return ok and not dry_run

    def _count(self, report: RecoveryReport, records: Records, source: str) -> None:
        report.records += len(records)
        if source == "kinesis":
            report.from_kinesis += len(records)
        else:
            report.from_archive += len(records)
        if self.progress:
            self.progress(report.records)


def window_recomputer(new_mapping: Callable[[], Any]) -> Callable[[str, float, float, Records], bool]:
    """Recompute one statistics window through a tumbling-window mapping (the same invokes as the stream's):
    its records, then the final invoke, which replaces the window's rows for that shard."""
    def recompute(shard: str, begin: float, end: float, records: Records) -> bool:
        mapping = new_mapping()
        if records:
            mapping.feed(shard, records)
        mapping.flush()
        return mapping.stats.final_failures == 0 and mapping.stats.sent_to_on_failure == 0
    return recompute


# -- wiring: the local stage (a deployed stage's: letgo.ops.recoveries) ----------------------------------------
FUNCTIONS = ("consumer", "statistics", "search-indexer")


def local_recoveries(info: dict[str, Any], functions: Iterable[str], *, say: Say = print,
                     indexer_invoke: Callable[[dict[str, Any]], Any] | None = None,
                     wait_seconds: float = 30.0) -> list[tuple[str, Recovery]]:
    """Recoveries on the local stage: the handlers run in this process, as the stage runs them.

    ``info``: the running stage's description (stream, queues, env — `letgo stage up` writes it). The search
    indexer needs ``indexer_invoke`` (the process that holds the index writer: the stage itself).
    """
    from handlers.core.aws import client
    from handlers.core.config import Env
    from handlers.tracking import lambda_consumer

    kinesis, stream = client("kinesis"), info["stream"]
    stream_arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    region = Env().optional("AWS_REGION", "eu-west-1")
    reader = RecordReader(kinesis, stream, client("s3"), info["env"]["RAW_BUCKET"])
    sqs, queues = client("sqs"), info["queues"]
    recoveries: list[tuple[str, Recovery]] = []
    for function in functions:
        if function == "consumer":
            def invoke(event: dict[str, Any]) -> Any:  # waits out a short outage, as the deployed function does
                return lambda_consumer.process_event(event, budget_seconds=wait_seconds,
                                                     on_wait=lambda problem, delay, _n: say(
                                                         f"  waiting for {getattr(problem, 'dependency', 'a sink')}:"
                                                         f" {problem}; retry in {delay:.1f} s"))
            deliver = batch_deliverer(invoke, stream_arn=stream_arn, region=region)
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=queues[function], reader=reader,
                                                  say=say, deliver=deliver)))
        elif function == "statistics":
            from handlers.statistics.lambda_statistics import build_handler
            from letgo.windows import TumblingWindowMapping

            handler = build_handler({"DATABASE_URL": info["env"]["DATABASE_URL"]})
            seconds = handler.metrics.stream_window_seconds

            def new_mapping(handler: Any = handler, seconds: int = seconds) -> TumblingWindowMapping:
                return TumblingWindowMapping(kinesis, stream, handler.handle, window_seconds=seconds,
                                             maximum_retry_attempts=3, retry_delay=0.5, region=region,
                                             function_name="statistics", say=say)
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=queues[function], reader=reader,
                                                  say=say, recompute_window=window_recomputer(new_mapping),
                                                  window_seconds=seconds)))
        elif function == "search-indexer":
            if indexer_invoke is None:
                raise ValueError("the local search indexer's recovery runs where its index writer is (the stage)")
            deliver = batch_deliverer(indexer_invoke, stream_arn=stream_arn, region=region, batch_size=500)
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=queues[function], reader=reader,
                                                  say=say, deliver=deliver)))
        else:
            raise ValueError(f"unknown function {function!r}; expected one of {FUNCTIONS}")
    return recoveries
