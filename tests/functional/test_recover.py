"""``letgo recover`` on a real moto server and a real PostgreSQL: the paths the chaos suite does not take.

The chaos suite recovers consumer batches from Kinesis after a long PostgreSQL outage. Here: the same records
come back from the raw archive once the stream no longer has them; a statistics window whose final write
failed is recomputed whole (equal to a clean run); a message whose records still fail stays in the queue.
"""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from handlers.core.aws import client
from handlers.statistics.lambda_statistics import build_handler
from handlers.tracking import lambda_consumer
from letgo.driver import sqs_on_failure
from letgo.recover import GaveUp, Recovery, RecordReader, batch_deliverer, local_recoveries, window_recomputer
from letgo.traffic import generate
from letgo.windows import TumblingWindowMapping
from tests.chaos.kit import audit, case_stream, mapping_for, put



@pytest.fixture
def queues_empty(stage):
    sqs = client("sqs")
    for url in stage.queue_urls.values():
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    yield stage
    if not stage.postgres.running():
        stage.postgres.start()


def _info(stage, stream):
    return {"stream": stream, "queues": stage.queue_urls,
            "env": {"RAW_BUCKET": stage.names.raw_bucket, "DATABASE_URL": stage.postgres.dsn}}


@pytest.mark.functional
def test_records_gone_from_the_stream_come_back_from_the_raw_archive(queues_empty):
    stage = queues_empty
    records = generate(400, seed=21, now=datetime.now(timezone.utc)).records
    stream = case_stream()
    put(stream, records)
    mapping = mapping_for(stage, stream, maximum_record_age_seconds=2)
    stage.postgres.stop("immediate")
    try:
        mapping.drain()  # archived first, then every batch gives up: PostgreSQL is down
    finally:
        stage.postgres.start()
    assert mapping.stats.sent_to_on_failure == len(records)
    reader = RecordReader(client("kinesis"), stream, client("s3"), stage.names.raw_bucket)
    client("kinesis").delete_stream(StreamName=stream)  # past retention: the stream no longer has them

    recovery = Recovery("consumer", sqs=client("sqs"), queue_url=stage.queue_urls["consumer"], reader=reader,
                        deliver=batch_deliverer(lambda_consumer.process_event, stream_arn=mapping.stream_arn,
                                                region="eu-west-1"))
    report = recovery.run()
    assert report.from_archive == len(records) and report.from_kinesis == 0
    assert report.left == 0 and report.recovered == report.messages > 0
    result = audit("recovered-from-archive", stage, records)
    assert result.ok, result.details


@pytest.mark.functional
def test_a_message_whose_records_still_fail_stays_in_the_queue(queues_empty):
    stage = queues_empty
    records = generate(120, seed=22, now=datetime.now(timezone.utc)).records
    stream = case_stream(shards=1)
    put(stream, records)
    mapping = mapping_for(stage, stream, maximum_record_age_seconds=1)
    stage.postgres.stop("immediate")
    try:
        mapping.drain()
        [(_name, recovery)] = local_recoveries(_info(stage, stream), ["consumer"], say=print, wait_seconds=0)
        report = recovery.run()  # PostgreSQL is still down
    finally:
        stage.postgres.start()
    assert report.recovered == 0 and report.left == report.messages > 0 and report.problems
    [(_name, recovery)] = local_recoveries(_info(stage, stream), ["consumer"], say=print)
    assert recovery.run().recovered == report.messages  # still there, recovered once the database is back
    assert audit("kept-then-recovered", stage, records).ok


def _rows(stage):
    with psycopg.connect(stage.postgres.dsn) as conn:
        return sorted(conn.execute(
            "SELECT metric, stream_window_start, shard_id, dims_key, count, sum FROM metric_windows").fetchall())


@pytest.mark.functional
def test_a_statistics_window_whose_write_failed_is_recomputed_whole(queues_empty):
    stage = queues_empty
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")
    records = generate(600, seed=23, now=datetime.now(timezone.utc)).records
    stream = case_stream()
    put(stream, records)
    handler = build_handler({"DATABASE_URL": stage.postgres.dsn})
    seconds = handler.metrics.stream_window_seconds
    kinesis = client("kinesis")

    # the truth: a clean run over the same stream
    clean = TumblingWindowMapping(kinesis, stream, handler.handle, window_seconds=seconds)
    clean.start("TRIM_HORIZON")
    clean.drain()
    truth = _rows(stage)
    assert truth
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")

    # the failure: the database goes down before the windows are written; they give up after a short age
    failing = TumblingWindowMapping(kinesis, stream, handler.handle, window_seconds=seconds,
                                    maximum_record_age_seconds=1, retry_delay=0.1,
                                    on_failure=sqs_on_failure(client("sqs"), stage.queue_urls["statistics"]))
    failing.start("TRIM_HORIZON")
    stage.postgres.stop("immediate")
    try:
        failing.drain()
    finally:
        stage.postgres.start()
    handler.sink.close()
    assert failing.stats.final_failures >= 1 and _rows(stage) == []

    def new_mapping():
        return TumblingWindowMapping(kinesis, stream, handler.handle, window_seconds=seconds,
                                     maximum_retry_attempts=3, retry_delay=0.1)

    reader = RecordReader(kinesis, stream, client("s3"), stage.names.raw_bucket)
    recovery = Recovery("statistics", sqs=client("sqs"), queue_url=stage.queue_urls["statistics"], reader=reader,
                        recompute_window=window_recomputer(new_mapping), window_seconds=seconds)
    dry = recovery.run(dry_run=True)
    assert dry.messages == failing.stats.final_failures and dry.plan and _rows(stage) == []
    report = recovery.run()
    assert report.windows == report.messages == failing.stats.final_failures and not report.problems
    assert _rows(stage) == truth  # each window whole, as the clean run wrote it
    assert recovery.run().messages == 0


@pytest.mark.unit
def test_on_failure_message_parses_lambdas_format():
    body = ('{"requestContext": {"requestId": "r", "functionArn": "arn:aws:lambda:eu-west-1:1:function:f", '
            '"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4}, "responseContext": '
            '{"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}, "version": "1.0", '
            '"timestamp": "2026-12-04T10:00:00.000Z", "KinesisBatchInfo": {"shardId": "shardId-000000000003", '
            '"startSequenceNumber": "4956", "endSequenceNumber": "4960", "approximateArrivalOfFirstRecord": '
            '"2026-12-04T09:59:00.000Z", "approximateArrivalOfLastRecord": "2026-12-04T09:59:01.500Z", '
            '"batchSize": 5, "streamArn": "arn:aws:kinesis:eu-west-1:1:stream/s"}}')
    gave_up = GaveUp.from_message({"MessageId": "m", "ReceiptHandle": "h", "Body": body})
    assert (gave_up.shard, gave_up.start, gave_up.end, gave_up.condition, gave_up.reason) == (
        "shardId-000000000003", "4956", "4960", "RetryAttemptsExhausted", "Unhandled")
    assert gave_up.first_arrival == datetime(2026, 12, 4, 9, 59, tzinfo=timezone.utc).timestamp()
    assert gave_up.window is None
