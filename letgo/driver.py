"""The local twin of Lambda's Kinesis event source mapping: polls the local stream and invokes the handler.

moto runs no Lambda code without Docker, so this driver does what the mapping does in AWS, in-process:
reads up to ``batch_size`` records per shard with GetRecords, builds the very event Lambda would send,
and honours the mapping's failure settings —

* ``ReportBatchItemFailures``: a returned failure resumes the shard from the lowest failed sequence number.
  That is how the consumer hands back a batch it could not deliver because a sink is down (an outage, not
  bad data): no bisecting, retried with capped exponential backoff while the shard waits — the console
  says what it is waiting for;
* function error (an exception): with ``bisect_on_error`` the batch is split in two and each half retried
  (splitting does not use up retries, as in AWS);
* ``maximum_retry_attempts`` / ``maximum_record_age_seconds`` (-1: no limit, AWS's default): past either,
  the batch's coordinates go to the on-failure destination (an SQS queue), in Lambda's format — the
  records themselves stay in the stream and the raw archive, for ``letgo recover``.

With a ``checkpoint_path`` the position per shard survives the process (as the mapping's does in AWS): a
consumer killed mid-batch and started again resumes after the last batch it finished.
"""
from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import orjson

Invoke = Callable[[dict[str, Any]], Any]  # returns an object with .failed_sequence_numbers (BatchOutcome)


@dataclass
class MappingStats:
    invocations: int = 0
    records_delivered: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisects: int = 0
    waits: int = 0  # retries of a batch handed back (an outage): the shard waited
    waited_seconds: float = 0.0
    sent_to_on_failure: int = 0
    outcomes: list[Any] = field(default_factory=list)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventSourceMapping:
    def __init__(self, kinesis: Any, stream_name: str, invoke: Invoke, *, batch_size: int = 100,
                 maximum_retry_attempts: int = -1, maximum_record_age_seconds: float = -1,
                 bisect_on_error: bool = True, on_failure: Any = None, region: str = "eu-west-1",
                 sleep: Callable[[float], None] = time.sleep, retry_delay: float = 0.2, max_retry_delay: float = 5.0,
                 now: Callable[[], float] = time.time, say: Callable[[str], None] | None = None,
                 checkpoint_path: Path | None = None, function_name: str = "consumer") -> None:
        self.kinesis, self.stream_name, self.invoke = kinesis, stream_name, invoke
        self.batch_size, self.max_retries, self.bisect = batch_size, maximum_retry_attempts, bisect_on_error
        self.max_record_age = maximum_record_age_seconds
        self.on_failure, self.region, self.sleep, self.retry_delay = on_failure, region, sleep, retry_delay
        self.max_retry_delay, self.now, self.say = max_retry_delay, now, say or (lambda _line: None)
        self.checkpoint_path, self.function_name = checkpoint_path, function_name
        description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        self.stream_arn = description["StreamARN"]
        self.shards = [s["ShardId"] for s in description["Shards"]]
        self.iterators: dict[str, str | None] = {}
        self.checkpoints: dict[str, str] = self._load_checkpoints()
        self.stats = MappingStats()

    # -- positioning ------------------------------------------------------------------------------------
    def start(self, position: str = "TRIM_HORIZON", timestamp: float | None = None) -> None:
        """Position every shard; a shard with a checkpoint resumes right after it, whatever ``position``."""
        for shard in self.shards:
            args: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard, "ShardIteratorType": position}
            if shard in self.checkpoints:
                args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self.checkpoints[shard])
            elif position == "AT_TIMESTAMP":
                args["Timestamp"] = timestamp
            self.iterators[shard] = self.kinesis.get_shard_iterator(**args)["ShardIterator"]

    def _load_checkpoints(self) -> dict[str, str]:
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return {}
        return orjson.loads(self.checkpoint_path.read_bytes())

    def _checkpoint(self, shard: str, sequence_number: str) -> None:
        self.checkpoints[shard] = sequence_number
        if self.checkpoint_path is None:
            return
        temporary = self.checkpoint_path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(self.checkpoints))
        os.replace(temporary, self.checkpoint_path)  # atomic: a kill leaves the old or the new position

    # -- polling ----------------------------------------------------------------------------------------
    def poll(self) -> int:
        """One GetRecords round over all shards; returns how many records were handed to the function."""
        if not self.iterators:
            self.start()
        handled = 0
        for shard, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            response = self._get_records(shard, iterator)
            self.iterators[shard] = response.get("NextShardIterator")
            records = response["Records"]
            if records:
                self._deliver(shard, records)
                self._checkpoint(shard, records[-1]["SequenceNumber"])
                handled += len(records)
        return handled

    def _get_records(self, shard: str, iterator: str) -> dict[str, Any]:
        """GetRecords, waiting out the stream's own hiccups (throttling, 5xx — moto answers 500 under concurrent
        writes too) the way the mapping does; an iterator that expired meanwhile restarts after the checkpoint."""
        from botocore.exceptions import ClientError

        from handlers.core.failures import aws_unavailable, describe

        retries = 0
        while True:
            try:
                return self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            except ClientError as exc:
                expired = exc.response.get("Error", {}).get("Code") == "ExpiredIteratorException"
                if expired and shard in self.checkpoints:
                    iterator = self.kinesis.get_shard_iterator(
                        StreamName=self.stream_name, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                        StartingSequenceNumber=self.checkpoints[shard])["ShardIterator"]
                    continue
                if not aws_unavailable(exc):
                    raise
                problem = describe(exc)
            except Exception as exc:  # noqa: BLE001 - connection-level failures
                if not aws_unavailable(exc):
                    raise
                problem = describe(exc)
            retries += 1
            delay = self._backoff(retries)
            self.say(f"{self.function_name} on {shard}: waiting for Kinesis GetRecords — {problem}; retry in "
                     f"{delay:.1f} s"[:300])
            self.sleep(delay)

    def drain(self, idle_polls: int = 2, progress: Callable[[int], None] | None = None) -> int:
        """Poll until ``idle_polls`` consecutive rounds find nothing new; returns records handled."""
        total, idle = 0, 0
        while idle < idle_polls:
            handled = self.poll()
            total += handled
            idle = idle + 1 if handled == 0 else 0
            if progress and handled:
                progress(total)
        return total

    # -- delivery semantics -----------------------------------------------------------------------------
    def event_for(self, shard: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return kinesis_event(shard, records, stream_arn=self.stream_arn, region=self.region)

    def _expired(self, records: list[dict[str, Any]], retries: int) -> str | None:
        """Why the mapping gives up on these records now, or None."""
        if 0 <= self.max_retries < retries:
            return "RetryAttemptsExhausted"
        if self.max_record_age > 0:
            age = self.now() - records[0]["ApproximateArrivalTimestamp"].timestamp()
            if age > self.max_record_age:
                return "RecordAgeExceeded"
        return None

    def _backoff(self, retries: int) -> float:
        return min(self.max_retry_delay, self.retry_delay * 2 ** max(0, retries - 1))

    def _deliver(self, shard: str, records: list[dict[str, Any]], retries: int = 0) -> None:
        while records:
            self.stats.invocations += 1
            try:
                outcome = self.invoke(self.event_for(shard, records))
            except Exception as exc:  # noqa: BLE001 - a function error, exactly as Lambda sees it
                self.stats.function_errors += 1
                self.say(f"{self.function_name} on {shard}: function error {type(exc).__name__}: {exc}"[:300])
                if self.bisect and len(records) > 1:  # splitting does not use up a retry
                    self.stats.bisects += 1
                    middle = len(records) // 2
                    self._deliver(shard, records[:middle], retries)
                    self._deliver(shard, records[middle:], retries)
                    return None
                retries += 1
                condition = self._expired(records, retries)
                if condition:
                    return self._give_up(shard, records, condition, f"{type(exc).__name__}: {exc}")
                self.sleep(self._backoff(retries))
                continue
            self.stats.outcomes.append(outcome)
            failed = outcome.failed_sequence_numbers
            if not failed:
                self.stats.records_delivered += len(records)
                return None
            lowest = min(failed, key=int)
            position = next(i for i, r in enumerate(records) if r["SequenceNumber"] == lowest)
            self.stats.records_delivered += position
            records = records[position:]
            retries += 1
            waiting_for = getattr(outcome, "unavailable", None)
            if waiting_for:
                self.stats.waits += 1
            else:
                self.stats.partial_failures += 1
            condition = self._expired(records, retries)
            if condition:
                return self._give_up(shard, records, condition, getattr(outcome, "error", None) or "partial failure")
            delay = self._backoff(retries)
            if waiting_for:
                age = self.now() - records[0]["ApproximateArrivalTimestamp"].timestamp()
                self.say(f"{self.function_name} on {shard}: waiting for {waiting_for} — "
                         f"{getattr(outcome, 'error', '') or 'unavailable'}; {len(records)} records held "
                         f"(oldest {age:.0f} s), retry {retries} in {delay:.1f} s"[:400])
                self.stats.waited_seconds += delay
            self.sleep(delay)
        return None

    def _give_up(self, shard: str, records: list[dict[str, Any]], condition: str, reason: str,
                 window: dict[str, str] | None = None) -> None:
        """``records``: the first and last record at least (a window passes just those two)."""
        self.stats.sent_to_on_failure += len(records) if window is None else 1
        self.say(f"{self.function_name} on {shard}: giving up on {len(records)} records ({condition}: {reason})"[:300]
                 + " — their coordinates go to the on-failure queue; `letgo recover` re-delivers them")
        if self.on_failure is not None:
            arrivals = [r["ApproximateArrivalTimestamp"].timestamp() for r in records]
            extra = {"window": window} if window is not None else {}
            self.on_failure({**extra,
                "version": "1.0", "timestamp": _iso(self.now()),
                "requestContext": {"condition": condition, "reason": reason[:500],
                                   "functionArn": f"arn:aws:lambda:{self.region}:123456789012:function:"
                                                  f"{self.function_name}"},
                "KinesisBatchInfo": {"shardId": shard, "batchSize": len(records) if window is None else None,
                                     "startSequenceNumber": records[0]["SequenceNumber"],
                                     "endSequenceNumber": records[-1]["SequenceNumber"],
                                     "approximateArrivalOfFirstRecord": _iso(min(arrivals)),
                                     "approximateArrivalOfLastRecord": _iso(max(arrivals)),
                                     "streamArn": self.stream_arn}})


def kinesis_event(shard: str, records: list[dict[str, Any]], *, stream_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's Kinesis mapping sends for ``records`` (GetRecords' shape) of ``shard``."""
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{r['SequenceNumber']}",
        "eventName": "aws:kinesis:record", "awsRegion": region, "eventSourceARN": stream_arn,
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/local-consumer"} for r in records]}


def sqs_on_failure(sqs: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    def send(message: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=orjson.dumps(message).decode())

    return send
