"""The consumer: one batch of Kinesis records through archive -> core -> sinks -> quarantine.

Order matters for "nothing lost, nothing duplicated":

1. **archive** every raw record first (deterministic key: a retry overwrites);
2. run the pure core (it never raises: a record it cannot handle is a rejection, ``internal_error``);
3. **PostgreSQL** inserts (one row per messageId) inside a transaction that stays open while
4. the **quarantine** takes the rejections — plus events PostgreSQL refused as data (``sink_rejected``) —
   one object per record, written only if new; the records quarantined *now* are reported to Sentry, so a
   retried batch neither repeats a quarantine line nor re-alerts;
5. **Firehose**, the one sink that is not idempotent, takes the *new* events, retrying only failed entries;
   then PostgreSQL commits, minus the rows of events Firehose still refused.

An outage anywhere (:class:`~handlers.core.failures.Unavailable`: S3, PostgreSQL or Firehose cannot take
anything) raises before the commit: nothing downstream happened yet or it rolls back, and the batch is
retried whole — :meth:`Consumer.handle_patiently` waits it out with backoff, the event source after that.
A Firehose entry that still fails fails only its record: the event source resumes from the lowest failed
sequence number, and because its row was not committed the retry delivers it to both sinks — while events
that did commit are skipped by both. Events Firehose accepted whose commit then failed (PostgreSQL went away
between the two: the chaos suite's crash lands there) are remembered by the consumer until a retry commits them,
so the retry inserts them without sending them to Firehose again. What remains is one window for a warehouse
duplicate: the consumer *process* dying between Firehose's answer and the commit (the warehouse de-duplicates on
messageId). Every entry point (Lambda, KCL, the local driver, ``letgo recover``) calls :meth:`Consumer.handle` or
:meth:`Consumer.handle_patiently` on a consumer built once per process.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from handlers.core.alerts import ProblemReporter
from handlers.core.config import PACKAGE_ROOT, Env
from handlers.core.failures import Unavailable, backoff_delays
from handlers.core.kinesis import RawRecord
from handlers.core.secrets import DatabaseUrl, database_dsn
from handlers.schema.event_types import Catalog, load_catalog
from handlers.tracking.errors import Reason, Rejection, SinkError
from handlers.tracking.processor import BatchResult, Event, Processor
from handlers.tracking.settings import DEFAULT_SETTINGS, Settings, load_settings
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
    unavailable: str | None = None  # the dependency the batch is waiting for (an outage, not bad data)
    waits: int = 0  # backoff sleeps spent waiting out outages inside this call

    def add(self, other: "BatchOutcome") -> None:
        """Fold a retry's outcome into this one (``records`` stays the batch's)."""
        for name in ("archived", "delivered_postgres", "delivered_firehose", "quarantined", "duplicates", "alerts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed_sequence_numbers, self.error = other.failed_sequence_numbers, other.error


OnWait = Callable[[Unavailable | str, float, int], None]  # (what failed, next delay, retry number)


# at most this many messageIds remembered as sent to Firehose but not committed (a few batches' worth)
SENT_UNCOMMITTED_LIMIT = 100_000


class Consumer:
    def __init__(self, processor: Processor, archive: RawArchive, quarantine: Quarantine,
                 database: PostgresSink | None, warehouse: FirehoseSink | None, reporter: ProblemReporter) -> None:
        self.processor, self.archive, self.quarantine = processor, archive, quarantine
        self.database, self.warehouse, self.reporter = database, warehouse, reporter
        self._background = ThreadPoolExecutor(1, thread_name_prefix="archive")
        # messageId -> None: in Firehose, not yet committed to PostgreSQL (a retry must not send them again)
        self._sent_uncommitted: OrderedDict[str, None] = OrderedDict()

    def close(self) -> None:
        self._background.shutdown(wait=True)
        if self.database is not None:
            self.database.close()

    def _to_warehouse(self, events: list, blobs: dict[str, bytes], outcome: BatchOutcome, written: Any) -> None:
        """Firehose after the PostgreSQL insert, before its commit; failed entries are un-inserted."""
        if self.warehouse is None or not events:
            return
        already = [e for e in events if e.message_id in self._sent_uncommitted]  # sent by an attempt that failed
        events = [e for e in events if e.message_id not in self._sent_uncommitted]
        outcome.delivered_firehose = len(already)
        if not events:
            return
        try:
            self.warehouse.put([blobs[e.message_id] for e in events], [e.sequence_number for e in events])
            accepted = events
        except SinkError as exc:
            failed = exc.failed_sequence_numbers or frozenset(e.sequence_number for e in events)
            accepted = [e for e in events if e.sequence_number not in failed]
            outcome.failed_sequence_numbers = failed
            outcome.error = str(exc)
            if written is not None:  # retried records must find no row, or they would skip Firehose again
                written.discard({e.message_id for e in events if e.sequence_number in failed})
        outcome.delivered_firehose += len(accepted)
        for event in accepted:
            self._sent_uncommitted[event.message_id] = None
        while len(self._sent_uncommitted) > SENT_UNCOMMITTED_LIMIT:
            self._sent_uncommitted.popitem(last=False)

    def _committed(self, events: list) -> None:
        """These events are in PostgreSQL now: their Firehose copies no longer need remembering."""
        for event in events:
            self._sent_uncommitted.pop(event.message_id, None)

    @staticmethod
    def _documents(result: BatchResult) -> dict[str, bytes]:
        """Each event's Firehose line; a valid event too big for a Firehose record is quarantined instead
        (retrying it could never succeed, and a poison record must not block its shard)."""
        blobs, kept = {}, []
        for event in result.events:
            blob = event.to_json() + b"\n"
            if len(blob) > MAX_RECORD_BYTES:
                result.rejections.append(_rejection(event, Reason.RECORD_TOO_LARGE, (
                    f"the normalised event is {len(blob)} bytes, over Firehose's {MAX_RECORD_BYTES}-byte record "
                    f"limit"), blob))
                continue
            blobs[event.message_id] = blob
            kept.append(event)
        result.events = kept
        return blobs

    def _quarantine(self, records: Sequence[RawRecord], rejections: list[Rejection], outcome: BatchOutcome) -> None:
        """Every rejection to the quarantine; only records quarantined by this attempt reach Sentry."""
        def report(new: list[Rejection]) -> None:
            outcome.alerts += self.reporter.report(new)

        self.quarantine.put(records, rejections, on_new=report)
        outcome.quarantined = len(rejections)

    def handle(self, records: Sequence[RawRecord]) -> BatchOutcome:
        """Raises :class:`Unavailable` when the whole batch must wait; partial failures are in the outcome.

        The archive put overlaps the core, the PostgreSQL COPY and the quarantine (they are ~30 ms of S3 each;
        one after the other they dominated a batch). It must have succeeded before anything leaves or commits:
        the Firehose put and the commit wait for it, and if it failed nothing does — the transaction rolls back
        and the batch is retried whole (the quarantine objects already written are found, not repeated).
        """
        outcome = BatchOutcome(records=len(records))
        if not records:
            return outcome
        archiving = self._background.submit(self.archive.put, records)
        try:
            result: BatchResult = self.processor.process(records)
            blobs = self._documents(result)
            outcome.duplicates = len(result.duplicates)

            if self.database is None:
                self._quarantine(records, result.rejections, outcome)
                outcome.archived = self._archived(archiving, records)
                self._to_warehouse(result.events, blobs, outcome, None)
                self._committed(result.events)
                return outcome
            with self.database.writing(result.events) as written:
                refused = written.refused
                if refused:  # PostgreSQL refused these values: data, not an outage — quarantined, not retried
                    for event in result.events:
                        if event.message_id in refused:
                            result.rejections.append(_rejection(
                                event, Reason.SINK_REJECTED, refused[event.message_id],
                                blobs[event.message_id].rstrip(b"\n")))
                self._quarantine(records, result.rejections, outcome)
                outcome.archived = self._archived(archiving, records)  # archived before anything leaves or commits
                outcome.delivered_postgres = written.inserted
                outcome.duplicates += len(written.already_there)
                skip = set(written.already_there) | set(refused)
                self._to_warehouse([e for e in result.events if e.message_id not in skip], blobs, outcome, written)
                outcome.delivered_postgres -= len(written.discarded)
            self._committed(result.events)  # the transaction committed (an exception above skips this)
            return outcome
        finally:
            if not archiving.done():  # an earlier step failed: let the put finish before the batch is retried
                wait([archiving])

    @staticmethod
    def _archived(archiving: Future, records: Sequence[RawRecord]) -> int:
        archiving.result()  # re-raises the archive's SinkUnavailable: the batch waits
        return len(records)

    def handle_patiently(self, records: Sequence[RawRecord], *, budget_seconds: float, on_wait: OnWait | None = None,
                         sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic) -> BatchOutcome:
        """:meth:`handle`, retrying outages and failed records with capped backoff for up to ``budget_seconds``.

        What is still failing when the budget runs out comes back in ``failed_sequence_numbers`` (after an
        outage: every record not yet delivered): the event source retries from the lowest of them later — as
        a partial failure, so Lambda does not bisect and nothing is quarantined for an outage.
        """
        total = BatchOutcome(records=len(records))
        pending = list(records)
        deadline = clock() + budget_seconds
        delays = backoff_delays(0.5, 20.0)
        while True:
            try:
                outcome = self.handle(pending)
            except Unavailable as exc:
                total.failed_sequence_numbers = frozenset(r.sequence_number for r in pending)
                total.error, total.unavailable = str(exc), exc.dependency
                problem: Unavailable | str = exc
            else:
                total.add(outcome)
                if not outcome.failed_sequence_numbers:
                    total.unavailable = None
                    return total
                lowest = min(outcome.failed_sequence_numbers, key=int)
                pending = pending[next(i for i, r in enumerate(pending) if r.sequence_number == lowest):]
                total.unavailable = "firehose"  # its refused entries: an outage of the service, not the data
                problem = outcome.error or "some records failed"
            delay = next(delays)
            if clock() + delay > deadline:
                return total
            total.waits += 1
            if on_wait is not None:
                on_wait(problem, delay, total.waits)
            sleep(delay)


def _rejection(event: Event, reason: Reason, message: str, raw: bytes) -> Rejection:
    """A valid event set aside after the core accepted it (too big for Firehose, refused by PostgreSQL)."""
    app = event.context.get("app") if isinstance(event.context, dict) else None
    version = app.get("version") if isinstance(app, dict) and isinstance(app.get("version"), str) else None
    return Rejection(reason, None, message, event.sequence_number, event.index, event.type, version, raw)


@dataclass(frozen=True)
class ConsumerConfig:
    """Everything a deployed consumer reads from its environment, validated once (cold start)."""

    stage: str
    raw_bucket: str
    quarantine_bucket: str
    firehose_stream: str | None
    database: str | DatabaseUrl | None  # DATABASE_URL as is, or Aurora's secret re-read after a refused login
    event_types_dir: Path
    settings: Settings

    @property
    def database_url(self) -> str | None:
        return self.database() if callable(self.database) else self.database

    @classmethod
    def from_env(cls, env: Env | None = None) -> "ConsumerConfig":
        env = env or Env()
        return cls(stage=env.optional("STAGE", "local") or "local",
                   raw_bucket=env.required("RAW_BUCKET", "the raw archive"),
                   quarantine_bucket=env.required("QUARANTINE_BUCKET", "the quarantine"),
                   firehose_stream=env.optional("FIREHOSE_STREAM"),
                   database=database_dsn(env),  # DATABASE_URL, the IAM user or the secret
                   event_types_dir=env.path("EVENT_TYPES_DIR", PACKAGE_ROOT / "event_types"),
                   settings=load_settings(env.path("TRACKING_CONFIG", DEFAULT_SETTINGS)))


def processor_from_env(env: Env) -> Processor:
    """The validating core as every stream function builds it: event types (``EVENT_TYPES_DIR``) and settings
    (``TRACKING_CONFIG``), packaged defaults otherwise — shared by the consumer, the statistics, the indexer."""
    settings = load_settings(env.path("TRACKING_CONFIG", DEFAULT_SETTINGS))
    return Processor(load_catalog(env.path("EVENT_TYPES_DIR", PACKAGE_ROOT / "event_types"),
                                  max_depth=settings.max_depth), settings)


def build_consumer(config: ConsumerConfig, catalog: Catalog | None = None) -> Consumer:
    from handlers.core.aws import client

    catalog = catalog or load_catalog(config.event_types_dir, max_depth=config.settings.max_depth)
    s3 = client("s3")
    reporter = ProblemReporter.for_catalog(config.stage, catalog)
    return Consumer(
        processor=Processor(catalog, config.settings),
        archive=RawArchive(s3, config.raw_bucket, "raw"),
        quarantine=Quarantine(s3, config.quarantine_bucket, "quarantine"),
        database=PostgresSink(config.database) if config.database else None,
        warehouse=FirehoseSink(client("firehose"), config.firehose_stream,
                               max_attempts=config.settings.firehose_max_attempts,
                               backoff_seconds=config.settings.firehose_backoff_seconds)
        if config.firehose_stream else None,
        reporter=reporter,
    )
