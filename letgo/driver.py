"""The local twin of Lambda's Kinesis event source mapping: polls the local stream and invokes the handler.

moto runs no Lambda code without Docker, so this driver does what the mapping does in AWS, in-process:
reads up to ``batch_size`` records per shard with GetRecords, builds the very event Lambda would send,
and honours the mapping's failure settings —

* ``ReportBatchItemFailures``: a returned failure resumes the shard from the lowest failed sequence number;
* function error (an exception): with ``bisect_on_error`` the batch is split in two and each half retried;
* ``maximum_retry_attempts``: after that the batch's metadata goes to the on-failure destination (an SQS
  queue), as in AWS — the records themselves stay in the stream and in the raw archive.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
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
    sent_to_on_failure: int = 0
    outcomes: list[Any] = field(default_factory=list)


class EventSourceMapping:
    def __init__(self, kinesis: Any, stream_name: str, invoke: Invoke, *, batch_size: int = 100,
                 maximum_retry_attempts: int = 3, bisect_on_error: bool = True, on_failure: Any = None,
                 region: str = "eu-west-1", sleep: Callable[[float], None] = time.sleep,
                 retry_delay: float = 0.05) -> None:
        self.kinesis, self.stream_name, self.invoke = kinesis, stream_name, invoke
        self.batch_size, self.max_retries, self.bisect = batch_size, maximum_retry_attempts, bisect_on_error
        self.on_failure, self.region, self.sleep, self.retry_delay = on_failure, region, sleep, retry_delay
        description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        self.stream_arn = description["StreamARN"]
        self.shards = [s["ShardId"] for s in description["Shards"]]
        self.iterators: dict[str, str | None] = {}
        self.stats = MappingStats()

    # -- positioning ------------------------------------------------------------------------------------
    def start(self, position: str = "TRIM_HORIZON", timestamp: float | None = None) -> None:
        for shard in self.shards:
            args: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard, "ShardIteratorType": position}
            if position == "AT_TIMESTAMP":
                args["Timestamp"] = timestamp
            self.iterators[shard] = self.kinesis.get_shard_iterator(**args)["ShardIterator"]

    # -- polling ----------------------------------------------------------------------------------------
    def poll(self) -> int:
        """One GetRecords round over all shards; returns how many records were handed to the function."""
        if not self.iterators:
            self.start()
        handled = 0
        for shard, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            self.iterators[shard] = response.get("NextShardIterator")
            records = response["Records"]
            if records:
                self._deliver(shard, records)
                handled += len(records)
        return handled

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
        return {"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode("ascii"),
                        "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{r['SequenceNumber']}",
            "eventName": "aws:kinesis:record", "awsRegion": self.region, "eventSourceARN": self.stream_arn,
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/local-consumer"} for r in records]}

    def _deliver(self, shard: str, records: list[dict[str, Any]], attempts_left: int | None = None) -> None:
        attempts_left = self.max_retries + 1 if attempts_left is None else attempts_left
        while records:
            self.stats.invocations += 1
            try:
                outcome = self.invoke(self.event_for(shard, records))
            except Exception as exc:  # noqa: BLE001 - a function error, exactly as Lambda sees it
                self.stats.function_errors += 1
                attempts_left -= 1
                if attempts_left <= 0:
                    return self._give_up(shard, records, repr(exc))
                self.sleep(self.retry_delay)
                if self.bisect and len(records) > 1:
                    self.stats.bisects += 1
                    middle = len(records) // 2
                    self._deliver(shard, records[:middle], attempts_left)
                    self._deliver(shard, records[middle:], attempts_left)
                    return None
                continue
            self.stats.outcomes.append(outcome)
            failed = outcome.failed_sequence_numbers
            if not failed:
                self.stats.records_delivered += len(records)
                return None
            self.stats.partial_failures += 1
            lowest = min(failed, key=int)
            position = next(i for i, r in enumerate(records) if r["SequenceNumber"] == lowest)
            self.stats.records_delivered += position
            records = records[position:]
            attempts_left -= 1
            if attempts_left <= 0:
                return self._give_up(shard, records, "partial batch failure retries exhausted")
            self.sleep(self.retry_delay)
        return None

    def _give_up(self, shard: str, records: list[dict[str, Any]], reason: str) -> None:
        self.stats.sent_to_on_failure += len(records)
        if self.on_failure is not None:
            self.on_failure({"requestContext": {"condition": "RetryAttemptsExhausted", "reason": reason},
                             "KinesisBatchInfo": {"shardId": shard, "batchSize": len(records),
                                                  "startSequenceNumber": records[0]["SequenceNumber"],
                                                  "endSequenceNumber": records[-1]["SequenceNumber"],
                                                  "streamArn": self.stream_arn}})


def sqs_on_failure(sqs: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    def send(message: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=orjson.dumps(message).decode())

    return send
