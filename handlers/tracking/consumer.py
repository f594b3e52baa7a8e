"""The consumer: one batch of Kinesis records through archive -> core -> quarantine -> sinks.

Order matters for "nothing lost, nothing duplicated":

1. **archive** every raw record first (deterministic key: a retry overwrites);
2. run the pure core; write **rejections to the quarantine** (deterministic key) and report them to
   Sentry, grouped;
3. **PostgreSQL** inserts (idempotent on messageId) inside a transaction that stays open while
4. **Firehose**, the one sink that is not idempotent, takes the *new* events, retrying only failed entries;
   then PostgreSQL commits, minus the rows of events Firehose still refused.

A failure in 1–3 fails the whole batch (nothing downstream happened yet, or it rolls back). A Firehose
entry that still fails fails only its record; the event source resumes from the lowest failed sequence
number, and because its row was not committed the retry delivers it to both sinks — while events that
did commit are skipped by both (a crash between Firehose's answer and the commit is the one window for a
warehouse duplicate; the warehouse de-duplicates on messageId). Every entry point (Lambda, KCL, the local driver) calls :meth:`Consumer.handle`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson

from handlers.core.alerts import ProblemReporter
from handlers.tracking.core import BatchResult, Processor, RawRecord
from handlers.tracking.errors import Reason, Rejection, SinkError
from handlers.tracking.event_types import Catalog, load_catalog
from handlers.tracking.settings import PACKAGE_ROOT, Settings, load_settings
from handlers.tracking.sinks.firehose import MAX_RECORD_BYTES, FirehoseSink
from handlers.tracking.sinks.postgres import PostgresSink
from handlers.tracking.sinks.s3objects import Quarantine, RawArchive


@dataclass
class BatchOutcome:
    """What happened to one batch; the local stage sums these into its report."""

    records: int = 0
    archived: int = 0
    delivered_postgres: int = 0
    delivered_firehose: int = 0
    quarantined: int = 0
    duplicates: int = 0  # in-batch duplicates + rows PostgreSQL already had
    alerts: int = 0
    failed_sequence_numbers: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None


class Consumer:
    def __init__(self, processor: Processor, archive: RawArchive, quarantine: Quarantine,
                 database: PostgresSink | None, warehouse: FirehoseSink | None, reporter: ProblemReporter) -> None:
        self.processor, self.archive, self.quarantine = processor, archive, quarantine
        self.database, self.warehouse, self.reporter = database, warehouse, reporter

    def _to_warehouse(self, events: list, blobs: dict[str, bytes], outcome: BatchOutcome, written: Any) -> None:
        """Firehose after the PostgreSQL insert, before its commit; failed entries are un-inserted."""
        if self.warehouse is None or not events:
            return
        try:
            self.warehouse.put([blobs[e.message_id] for e in events], [e.sequence_number for e in events])
            outcome.delivered_firehose = len(events)
        except SinkError as exc:
            failed = exc.failed_sequence_numbers or frozenset(e.sequence_number for e in events)
            outcome.delivered_firehose = sum(1 for e in events if e.sequence_number not in failed)
            outcome.failed_sequence_numbers = failed
            outcome.error = str(exc)
            if written is not None:  # retried records must find no row, or they would skip Firehose again
                written.discard({e.message_id for e in events if e.sequence_number in failed})

    @staticmethod
    def _documents(result: BatchResult) -> dict[str, bytes]:
        """Each event's Firehose line; a valid event too big for a Firehose record is quarantined instead
        (retrying it could never succeed, and a poison record must not block its shard)."""
        blobs, kept = {}, []
        for event in result.events:
            blob = event.to_json() + b"\n"
            if len(blob) > MAX_RECORD_BYTES:
                result.rejections.append(Rejection(
                    Reason.RECORD_TOO_LARGE, None, f"the normalised event is {len(blob)} bytes, over Firehose's "
                    f"{MAX_RECORD_BYTES}-byte record limit", event.sequence_number, 0, event.type, None, blob))
                continue
            blobs[event.message_id] = blob
            kept.append(event)
        result.events = kept
        return blobs

    def handle(self, records: Sequence[RawRecord]) -> BatchOutcome:
        """Raises SinkError when the whole batch must be retried; partial failures are in the outcome."""
        outcome = BatchOutcome(records=len(records))
        if not records:
            return outcome
        self.archive.put(records)
        outcome.archived = len(records)

        result: BatchResult = self.processor.process(records)
        blobs = self._documents(result)
        self.quarantine.put(records, result.rejections)
        outcome.quarantined = len(result.rejections)
        outcome.duplicates = len(result.duplicates)
        if result.rejections:
            outcome.alerts = self.reporter.report(result.rejections)

        if self.database is None:
            self._to_warehouse(result.events, blobs, outcome, None)
            return outcome
        with self.database.writing(result.events) as written:
            outcome.delivered_postgres = written.inserted
            outcome.duplicates += len(written.already_there)
            known = set(written.already_there)
            self._to_warehouse([e for e in result.events if e.message_id not in known], blobs, outcome, written)
            outcome.delivered_postgres -= len(written.discarded)
        return outcome


@dataclass(frozen=True)
class ConsumerConfig:
    """Everything a deployed consumer reads from its environment, validated once."""

    stage: str
    raw_bucket: str
    quarantine_bucket: str
    firehose_stream: str | None
    database_url: str | None
    event_types_dir: Path
    settings: Settings

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> "ConsumerConfig":
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("RAW_BUCKET", "QUARANTINE_BUCKET") if not env.get(k)]
        if missing:
            raise RuntimeError(f"consumer misconfigured: set {', '.join(missing)}")
        return cls(stage=env.get("STAGE", "local"), raw_bucket=env["RAW_BUCKET"],
                   quarantine_bucket=env["QUARANTINE_BUCKET"], firehose_stream=env.get("FIREHOSE_STREAM") or None,
                   database_url=env.get("DATABASE_URL") or database_url_from_secret(env.get("DATABASE_SECRET_ARN"), env),
                   event_types_dir=Path(env.get("EVENT_TYPES_DIR") or PACKAGE_ROOT / "event_types"),
                   settings=load_settings(Path(env["TRACKING_CONFIG"]) if env.get("TRACKING_CONFIG") else None))


def database_url_from_secret(secret_arn: str | None, env: dict[str, str] | None = None) -> str | None:
    """Aurora's credentials live in its RDS-managed secret (username, password) — never in a template.

    The endpoint comes from the environment (DATABASE_HOST / DATABASE_PORT / DATABASE_NAME, outputs of the
    aurora layer); the secret's own ``host`` / ``port`` / ``dbname`` win when present.
    """
    if not secret_arn:
        return None
    from urllib.parse import quote

    from handlers.core.aws import client

    env = os.environ if env is None else env
    secret = orjson.loads(client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    host = secret.get("host") or env.get("DATABASE_HOST")
    port = secret.get("port") or env.get("DATABASE_PORT") or 5432
    name = secret.get("dbname") or env.get("DATABASE_NAME") or "events"
    if not host:
        raise RuntimeError("consumer misconfigured: DATABASE_SECRET_ARN is set but DATABASE_HOST is not")
    return (f"postgresql://{quote(secret['username'], safe='')}:{quote(secret['password'], safe='')}"
            f"@{host}:{port}/{name}?sslmode=require")


def secret_string(secret_arn: str) -> str:
    from handlers.core.aws import client

    return client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]


def build_consumer(config: ConsumerConfig, catalog: Catalog | None = None) -> Consumer:
    from handlers.core.aws import client

    catalog = catalog or load_catalog(config.event_types_dir, max_depth=config.settings.max_depth)
    s3 = client("s3")
    reporter = ProblemReporter.for_catalog(config.stage, catalog)
    return Consumer(
        processor=Processor(catalog, config.settings),
        archive=RawArchive(s3, config.raw_bucket, "raw"),
        quarantine=Quarantine(s3, config.quarantine_bucket, "quarantine"),
        database=PostgresSink(config.database_url) if config.database_url else None,
        warehouse=FirehoseSink(client("firehose"), config.firehose_stream,
                               max_attempts=config.settings.firehose_max_attempts,
                               backoff_seconds=config.settings.firehose_backoff_seconds)
        if config.firehose_stream else None,
        reporter=reporter,
    )
