"""The consumer on a real moto server and a real PostgreSQL: sinks, idempotency and faults.

Faults use the real thing where it can be produced: PostgreSQL is really stopped, the raw bucket really
disappears. moto cannot make Firehose reject *some* entries of a PutRecordBatch, so that one fault wraps
the real client and marks entries failed (the only fake here).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import orjson
import pytest

from handlers.core.aws import client
from handlers.core.runtime import SAFETY_MARGIN_SECONDS
from handlers.tracking import lambda_consumer
from tests.stage_kit import inventory, pg_message_ids, send

pytestmark = pytest.mark.functional


def lead(message_id: str | None = None, **properties) -> bytes:
    return orjson.dumps({
        "type": "Lead", "messageId": message_id or str(uuid.uuid4()), "userId": "u-1",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "context": {"app": {"version": "4.12.0"}, "ip": "10.1.2.3"},
        "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat", **properties}})


def test_good_and_bad_events_each_end_in_exactly_one_place(stage):
    good = [lead() for _ in range(120)]
    bad = [b"not json", lead(price=-1), lead(channel="pigeon")]
    send(stage, good + bad + [good[0]])  # + a re-sent event
    stage.mapping.drain()
    inv = inventory(stage)
    assert inv.archived == 124
    assert inv.postgres_rows == 120 == inv.firehose_distinct == inv.firehose_records
    assert inv.quarantined_by_reason == {"not_json": 1, "out_of_range": 1, "not_in_enum": 1}
    assert sum(o.duplicates for o in stage.mapping.stats.outcomes) == 1


def test_retried_batch_overwrites_archive_and_skips_existing_rows(stage):
    delivered = []
    stage.mapping.invoke = lambda event: delivered.append(event) or lambda_consumer.process_event(event)
    send(stage, [lead() for _ in range(30)] + [b"{bad"])
    stage.mapping.drain()
    before = inventory(stage)
    # WHEN every batch is delivered again (as after a crash before the checkpoint)
    outcomes = [lambda_consumer.process_event(event) for event in delivered]
    after = inventory(stage)
    assert (after.archive_objects, after.archived, after.postgres_rows, after.quarantined) == \
        (before.archive_objects, before.archived, before.postgres_rows, before.quarantined) == \
        (len(delivered), 31, 30, 1)
    assert sum(o.duplicates for o in outcomes) == 30 and sum(o.delivered_postgres for o in outcomes) == 0


def test_postgres_down_during_a_batch_loses_and_duplicates_nothing(stage):
    ids = [str(uuid.uuid4()) for _ in range(80)]
    send(stage, [lead(i) for i in ids])
    stage.postgres.stop()
    restarted = []

    def restart_on_retry(_seconds):
        if not restarted:
            stage.postgres.start()
            restarted.append(True)

    stage.mapping.sleep = restart_on_retry
    stage.mapping.drain()
    stats = stage.mapping.stats
    # an outage, not bad data: the batch was handed back whole and waited for — no function error, no bisect
    assert restarted and stats.waits >= 1 and stats.function_errors == stats.bisects == 0
    assert pg_message_ids(stage) == sorted(ids)
    inv = inventory(stage)
    assert inv.firehose_distinct == inv.firehose_records == 80 and inv.quarantined == 0



class KillsPostgresAfterAccepting:
    """The real moto Firehose client; after its first accepted batch, the consumer's PostgreSQL session is really
    terminated (pg_terminate_backend from another session) — PostgreSQL gone between Firehose's answer and the
    commit, where the chaos suite's crash once landed and the retry sent the batch to Firehose a second time."""

    def __init__(self, real, dsn: str) -> None:
        self.real, self.dsn, self.killed = real, dsn, 0

    def put_record_batch(self, DeliveryStreamName, Records):  # noqa: N803 - boto3's names
        answer = self.real.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=Records)
        if not self.killed:
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                self.killed = conn.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE state = 'idle in transaction' AND pid <> pg_backend_pid()) AS t").fetchone()[0]
        return answer


def test_postgres_lost_between_firehose_and_the_commit_sends_nothing_to_firehose_twice(stage):
    ids = [str(uuid.uuid4()) for _ in range(60)]
    send(stage, [lead(i) for i in ids])
    consumer = lambda_consumer.get_consumer()
    consumer.warehouse.firehose = KillsPostgresAfterAccepting(consumer.warehouse.firehose, stage.postgres.dsn)
    stage.mapping.drain()
    assert consumer.warehouse.firehose.killed == 1  # the consumer's open transaction was really cut
    assert stage.mapping.stats.waits >= 1  # the commit failed: an outage, waited out and retried
    assert pg_message_ids(stage) == sorted(ids)
    inv = inventory(stage)
    assert inv.firehose_distinct == inv.firehose_records == 60  # the retry inserted them without re-sending


def test_s3_error_while_archiving_is_retried_then_everything_lands_once(stage):
    s3 = client("s3")
    ids = [str(uuid.uuid4()) for _ in range(40)]
    send(stage, [lead(i) for i in ids])
    s3.delete_bucket(Bucket=stage.names.raw_bucket)  # a real NoSuchBucket from S3 on the next archive write
    recreated = []

    def recreate_on_retry(_seconds):
        if not recreated:
            s3.create_bucket(Bucket=stage.names.raw_bucket,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            recreated.append(True)

    stage.mapping.sleep = recreate_on_retry
    stage.mapping.drain()
    stats = stage.mapping.stats
    assert recreated and stats.waits >= 1 and stats.function_errors == stats.bisects == 0
    inv = inventory(stage)
    assert pg_message_ids(stage) == sorted(ids)
    assert inv.archived == 40 and inv.firehose_distinct == inv.firehose_records == 40


class FlakyFirehose:
    """Wraps the real moto client; rejects every third entry of the first N calls (moto cannot)."""

    def __init__(self, real, failing_calls: int) -> None:
        self.real, self.failing_calls, self.calls = real, failing_calls, 0

    def put_record_batch(self, DeliveryStreamName, Records):  # noqa: N803 - boto3's names
        self.calls += 1
        if self.calls > self.failing_calls:
            return self.real.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=Records)
        accepted = [r for i, r in enumerate(Records) if i % 3]
        if accepted:
            self.real.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=accepted)
        return {"FailedPutCount": len(Records) - len(accepted), "RequestResponses": [
            {"RecordId": "x"} if i % 3 else {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
            for i in range(len(Records))]}


@pytest.mark.parametrize("failing_calls, expect_partial_failure", [(1, False), (10, True)],
                         ids=["recovers-within-entry-retries", "reported-as-partial-batch-failure"])
def test_firehose_partial_failure_retries_only_failed_entries(stage, failing_calls, expect_partial_failure):
    ids = [str(uuid.uuid4()) for _ in range(45)]
    send(stage, [lead(i) for i in ids])
    consumer = lambda_consumer.get_consumer()
    consumer.warehouse.firehose = FlakyFirehose(consumer.warehouse.firehose, failing_calls)
    consumer.warehouse.sleep = lambda _s: None
    stage.mapping.drain()
    inv = inventory(stage)
    assert pg_message_ids(stage) == sorted(ids)
    assert inv.firehose_distinct == 45
    # entries Firehose keeps refusing are its outage: those records are handed back and waited for
    assert (stage.mapping.stats.waits > 0) is expect_partial_failure
    if not expect_partial_failure:
        assert inv.firehose_records == 45  # only the rejected entries were re-sent: no duplicates


def test_lambda_handler_reports_partial_batch_failures(stage):
    """The deployed entry point itself (Powertools decorator, response shape), on a real event."""
    kinesis = client("kinesis")
    latest = {shard: kinesis.get_shard_iterator(StreamName=stage.names.stream, ShardId=shard,
                                                ShardIteratorType="LATEST")["ShardIterator"]
              for shard in stage.mapping.shards}
    send(stage, [lead() for _ in range(6)])
    shard_records = max(((shard, kinesis.get_records(ShardIterator=it)["Records"]) for shard, it in latest.items()),
                        key=lambda pair: len(pair[1]))
    event = stage.mapping.event_for(*shard_records)

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "consumer", 512, "req-1"
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:consumer"

        @staticmethod
        def get_remaining_time_in_millis() -> int:  # 1 s of waiting before the handler's safety margin
            return int((SAFETY_MARGIN_SECONDS + 1) * 1000)

    consumer = lambda_consumer.get_consumer()
    real = consumer.warehouse.firehose
    consumer.warehouse.firehose = FlakyFirehose(real, 100)
    consumer.warehouse.sleep = lambda _s: None
    response = lambda_consumer.handler(event, Context())
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    sequence_numbers = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert failed and set(failed) < set(sequence_numbers)
    # WHEN the mapping retries (here: the same event again) with Firehose healthy, THEN all succeed once
    consumer.warehouse.firehose = real
    assert lambda_consumer.handler(event, Context()) == {"batchItemFailures": []}
    assert len(pg_message_ids(stage)) == len(sequence_numbers) == inventory(stage).firehose_distinct


def test_valid_event_too_big_for_firehose_is_quarantined_not_retried_forever(stage):
    """Kinesis takes 1 MiB, Firehose 1,000 KiB: a valid ~1.01 MB event must not become a poison record."""
    big = orjson.loads(lead())
    big["context"]["padding"] = {f"k{i}": "x" * 1000 for i in range(1030)}  # undeclared context keys are kept
    assert 1000 * 1024 < len(orjson.dumps(big)) < 1024 * 1024  # fits Kinesis, not Firehose
    send(stage, [orjson.dumps(big), lead()])
    stage.mapping.drain()
    inv = inventory(stage)
    assert inv.quarantined_by_reason == {"record_too_large": 1}
    assert inv.postgres_rows == 1 == inv.firehose_distinct
    assert stage.mapping.stats.partial_failures == 0 and stage.mapping.stats.sent_to_on_failure == 0
