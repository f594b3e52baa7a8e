"""One local stage (real moto server + real PostgreSQL) per test session, cleaned between tests."""
from __future__ import annotations

import pytest

from handlers.core.aws import client
from handlers.tracking import lambda_consumer
from letgo.stage import LocalStage


@pytest.fixture(scope="session")
def session_stage(tmp_path_factory):
    with LocalStage(tmp_path_factory.mktemp("stage"), shards=2, batch_size=50) as stage:
        yield stage


def _empty(bucket: str) -> None:
    s3 = client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


@pytest.fixture
def stage(session_stage):
    """GIVEN an empty stage: no rows, no objects, no alerts, a mapping positioned at the stream's end."""
    import psycopg

    with psycopg.connect(session_stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events")
    for bucket in (session_stage.names.raw_bucket, session_stage.names.quarantine_bucket,
                   session_stage.names.processed_bucket):
        _empty(bucket)
    sqs = client("sqs")
    while messages := sqs.receive_message(QueueUrl=session_stage.queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=session_stage.queue_url, ReceiptHandle=message["ReceiptHandle"])
    session_stage.sentry_path.unlink(missing_ok=True)
    lambda_consumer.reset()
    session_stage.mapping = session_stage.new_mapping(retry_delay=0)
    session_stage.mapping.start("LATEST")
    yield session_stage
    lambda_consumer.reset()


def pg_message_ids(stage) -> list[str]:
    import psycopg

    with psycopg.connect(stage.postgres.dsn) as conn:
        return [row[0] for row in conn.execute("SELECT message_id FROM events ORDER BY 1")]
