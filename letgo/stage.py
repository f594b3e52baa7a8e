"""The local stage: the platform's event path on one machine, with embedded stand-ins.

moto server (S3, Kinesis, Firehose, SQS) + a real PostgreSQL cluster under ``.local/`` + the local
Sentry store + the event-source-mapping driver, all wired through the *same* environment variables the
Lambda reads in AWS (``RAW_BUCKET``, ``FIREHOSE_STREAM``, ``DATABASE_URL``…). Only ``AWS_ENDPOINT_URL``
differs. ``with LocalStage(...) as stage:`` starts everything and always stops it. ``letgo stage up`` runs it
with the statistics, the search indexer and the HTTP servers around it: :mod:`letgo.stage_control`.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from handlers.core.aws import client, reset_clients
from handlers.tracking import lambda_consumer
from letgo.driver import EventSourceMapping, sqs_on_failure
from letgo.postgres_migrations import migrate
from letgo.services.moto import FAKE_CREDENTIALS, MotoServer
from letgo.services.postgres import PostgresServer

Say = Callable[[str], None]


@dataclass(frozen=True)
class StageNames:
    stream: str = "letgo-events-local"
    raw_bucket: str = "letgo-raw-events-local"
    quarantine_bucket: str = "letgo-quarantine-local"
    processed_bucket: str = "letgo-processed-events-local"
    # moto's Firehose cannot partition: `partition_into_bucket` lays the processed events out here as AWS's
    # dynamic partitioning does (events/type=<T>/dt=<day>/), for code reading that layout (training)
    partitioned_bucket: str = "letgo-processed-partitioned-local"
    models_bucket: str = "letgo-models-local"
    firehose: str = "letgo-events-to-warehouse-local"
    on_failure_queue: str = "letgo-consumer-on-failure-local"
    statistics_on_failure_queue: str = "letgo-statistics-on-failure-local"
    indexer_on_failure_queue: str = "letgo-search-indexer-on-failure-local"


class StageAlreadyRunning(RuntimeError):
    """A local stage is live in this folder (its PostgreSQL answers): starting another would wipe it."""

    def __init__(self, workdir: Path, postgres_pid: int) -> None:
        self.workdir, self.postgres_pid = workdir, postgres_pid
        super().__init__(f"a local stage is already running in {workdir} (PostgreSQL pid {postgres_pid}); "
                         f"stop it first (`letgo stage down`)")


# How long the local mappings hold a failing batch before its coordinates go to the on-failure queue: long
# enough to ride out a restart of PostgreSQL or the emulator, short enough that a stage someone forgot does not
# wait forever (AWS: see max_record_age_seconds in environments/parameters.yaml).
LOCAL_MAX_RECORD_AGE_SECONDS = 300


class LocalStage:
    def __init__(self, workdir: Path, *, shards: int = 2, batch_size: int = 500, say: Say = lambda _: None,
                 max_record_age_seconds: float = LOCAL_MAX_RECORD_AGE_SECONDS) -> None:
        self.workdir = Path(workdir).resolve()
        self.shards, self.batch_size, self.say = shards, batch_size, say
        self.max_record_age_seconds = max_record_age_seconds
        self.names = StageNames()
        self.region = FAKE_CREDENTIALS["AWS_REGION"]  # the stage's clients are pointed there by start()
        self.moto = MotoServer(self.workdir / "moto.log")
        self.postgres = PostgresServer(self.workdir / "postgres")
        self.sentry_path = self.workdir / "sentry" / "events.jsonl"
        self._saved_env: dict[str, str | None] = {}
        self.mapping: EventSourceMapping | None = None
        self.queue_url = ""
        self.queue_urls: dict[str, str] = {}  # consumer name -> its on-failure queue

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalStage":
        self.refuse_if_running()  # before the try: the cleanup below must not stop someone else's stage
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _running_postmaster(self) -> int | None:
        pid_file = self.postgres.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def refuse_if_running(self) -> None:
        running = self._running_postmaster()
        if running is not None:  # never wipe the folder of a live stage (e.g. `letgo stage up` in another shell)
            raise StageAlreadyRunning(self.workdir, running)

    def start(self) -> None:
        self.refuse_if_running()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.say("starting moto server (AWS APIs) on 127.0.0.1 …")
        self.moto.start()
        self.say(f"  moto server at {self.moto.url}")
        self.say("starting PostgreSQL …")
        self.postgres.start()
        applied = migrate(self.postgres.dsn)
        self.say(f"  PostgreSQL on 127.0.0.1:{self.postgres.port}, migrations applied: {', '.join(applied) or 'none'}")
        self._set_env({**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.moto.url, "STAGE": "local",
                       "RAW_BUCKET": self.names.raw_bucket, "QUARANTINE_BUCKET": self.names.quarantine_bucket,
                       "FIREHOSE_STREAM": self.names.firehose, "DATABASE_URL": self.postgres.dsn,
                       "SENTRY_DSN": "", "SENTRY_LOCAL_PATH": str(self.sentry_path)})
        reset_clients()
        lambda_consumer.reset()
        lambda_consumer.logger.setLevel("WARNING")  # the driver prints progress; per-batch logs are for CloudWatch
        self._create_resources()
        self.mapping = self.new_mapping()
        self.say(f"  stream {self.names.stream} ({self.shards} shards), buckets, Firehose and the on-failure "
                 f"queue created")

    def stop(self) -> None:
        lambda_consumer.reset()
        self.postgres.stop()
        self.moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        reset_clients()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _create_resources(self) -> None:
        s3, kinesis = client("s3"), client("kinesis")
        region = self.region
        for bucket in (self.names.raw_bucket, self.names.quarantine_bucket, self.names.processed_bucket,
                       self.names.partitioned_bucket, self.names.models_bucket):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
        kinesis.create_stream(StreamName=self.names.stream, ShardCount=self.shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=self.names.stream)
        client("firehose").create_delivery_stream(
            DeliveryStreamName=self.names.firehose, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-local",
                "BucketARN": f"arn:aws:s3:::{self.names.processed_bucket}", "Prefix": "events/",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60}})
        sqs = client("sqs")
        for consumer, queue in (("consumer", self.names.on_failure_queue),
                                ("statistics", self.names.statistics_on_failure_queue),
                                ("search-indexer", self.names.indexer_on_failure_queue)):
            self.queue_urls[consumer] = sqs.create_queue(QueueName=queue)["QueueUrl"]
        self.queue_url = self.queue_urls["consumer"]

    # -- the event path ---------------------------------------------------------------------------------
    def new_mapping(self, invoke: Callable[[dict[str, Any]], Any] | None = None, *, function: str = "consumer",
                    **options: Any) -> EventSourceMapping:
        """A mapping on the stage's stream for ``function`` (consumer, search-indexer), with its own queue."""
        options.setdefault("batch_size", self.batch_size)
        options.setdefault("maximum_record_age_seconds", self.max_record_age_seconds)
        options.setdefault("say", self.say)
        return EventSourceMapping(client("kinesis"), self.names.stream, invoke or lambda_consumer.process_event,
                                  on_failure=sqs_on_failure(client("sqs"), self.queue_urls[function]),
                                  region=self.region, function_name=function, **options)

    def new_window_mapping(self, invoke: Callable[[dict[str, Any]], Any], *, window_seconds: int,
                           **options: Any) -> Any:
        """The statistics' tumbling-window mapping on the stage's stream, with its own on-failure queue."""
        from letgo.windows import TumblingWindowMapping

        options.setdefault("maximum_record_age_seconds", self.max_record_age_seconds)
        options.setdefault("say", self.say)
        return TumblingWindowMapping(client("kinesis"), self.names.stream, invoke, window_seconds=window_seconds,
                                     on_failure=sqs_on_failure(client("sqs"), self.queue_urls["statistics"]),
                                     region=self.region, function_name="statistics", **options)
