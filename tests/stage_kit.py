"""Helpers for tests that run against a local stage (functional and e2e tiers).

Stage folders live in a private temporary directory, *not* under pytest's ``tmp_path``: PostgreSQL runs as
the ``postgres`` user when we are root and must traverse to its folder, and every pytest session (including
concurrent ones on the same machine) resets ``/tmp/pytest-of-<user>`` to mode 0700.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import psycopg

from handlers.core.aws import client
from handlers.tracking import lambda_consumer
from letgo.inventory import Inventory, take_inventory
from letgo.producer import put_records
from letgo.stage import LocalStage


@contextmanager
def private_tmp(prefix: str = "letgo-e2e-") -> Iterator[Path]:
    """A temporary directory outside pytest's basetemp; any PostgreSQL still running from it is stopped."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        stop_leftover_postgres(directory)
        shutil.rmtree(directory, ignore_errors=True)


def stop_leftover_postgres(directory: Path) -> list[int]:
    """Safety net: a postmaster whose pid file is still under ``directory`` was started by this test run."""
    stopped = []
    for pid_file in directory.rglob("postmaster.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
            stopped.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    deadline = time.monotonic() + 15
    for pid in stopped:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
    return stopped


def empty_stage(stage: LocalStage) -> LocalStage:
    """GIVEN an empty stage: no rows, no objects, no alerts, a mapping positioned at the stream's end."""
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, event_ids")  # the sink keeps one id per stored row
    s3 = client("s3")
    for bucket in (stage.names.raw_bucket, stage.names.quarantine_bucket, stage.names.processed_bucket,
                   stage.names.partitioned_bucket, stage.names.models_bucket):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
    sqs = client("sqs")
    while messages := sqs.receive_message(QueueUrl=stage.queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=stage.queue_url, ReceiptHandle=message["ReceiptHandle"])
    stage.sentry_path.unlink(missing_ok=True)
    lambda_consumer.reset()
    stage.mapping = stage.new_mapping(retry_delay=0)
    stage.mapping.start("LATEST")
    return stage


def send(stage: LocalStage, payloads: Iterable[bytes]) -> int:
    return put_records(client("kinesis"), stage.names.stream, [(f"pk{i}", p) for i, p in enumerate(payloads)])


def inventory(stage: LocalStage) -> Inventory:
    return take_inventory(client("s3"), raw_bucket=stage.names.raw_bucket,
                          quarantine_bucket=stage.names.quarantine_bucket,
                          processed_bucket=stage.names.processed_bucket, database_url=stage.postgres.dsn)


def pg_message_ids(stage: LocalStage) -> list[str]:
    with psycopg.connect(stage.postgres.dsn) as conn:
        return [row[0] for row in conn.execute("SELECT message_id FROM events ORDER BY 1")]


def quarantine_lines(stage: LocalStage) -> list[dict[str, Any]]:
    from handlers.tracking.sinks.s3objects import Quarantine

    quarantine = Quarantine(client("s3"), stage.names.quarantine_bucket, "quarantine")
    return [line for key in quarantine.keys() for line in quarantine.read(key)]
