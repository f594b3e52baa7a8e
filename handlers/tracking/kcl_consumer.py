"""KCL record processor (amazon-kclpy v3 interface) for the EC2 spot auto-scaling group.

The MultiLangDaemon (Java, from the KCL jars) owns leases and runs ``python -m handlers.tracking.kcl_consumer``
per shard, talking to it over stdin/stdout; :func:`main` serves that protocol (:mod:`handlers.tracking.
kcl_protocol`) with this processor. The processor hands each batch to the same :class:`Consumer` as the Lambda
and **checkpoints only after the sinks succeeded**:

* an outage (S3, PostgreSQL or Firehose unavailable — :class:`~handlers.core.failures.Unavailable`): wait it
  out with capped backoff, as long as it lasts, holding the lease; the shard waits (its iterator age is the
  signal), nothing is quarantined and nothing skipped;
* some records failed (Firehose entries): checkpoint just before the lowest failed record and retry from
  there, with the same backoff;
* anything else (a bug): retry a few times, then raise :class:`ShardHalted`. kclpy's ``KCLProcess`` catches
  ``Exception`` from a processor, prints it and reports the batch as done — the next checkpoint would then
  silently cover the failed records. So the halt is a ``BaseException``: it ends the process, the
  MultiLangDaemon restarts the record processor and the lease resumes from the last checkpoint. (Our own
  protocol loop lets any exception end the process; the ``BaseException`` keeps the processor safe under
  kclpy too.)
* a refused checkpoint: ``ShutdownException`` (the lease moved to another worker) stops the batch quietly —
  the new owner resumes from the last checkpoint; a throttled one is retried a few times, then left to the
  next batch's checkpoint (records are re-delivered at worst, and every sink is idempotent); anything else
  (``InvalidStateException``) is a bug and ends the process.

amazon-kclpy is not importable on every machine (its build downloads jars); the class then falls back to
``object`` so the record-processing logic is still importable and testable through the same interface.
The consumer image installs ``amazon-kclpy`` for the daemon and its jars (deploy/kcl-consumer/).
"""
from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import IO, Any, Callable, Sequence

from handlers.core.alerts import OutageReporter
from handlers.core.failures import Unavailable, backoff_delays
from handlers.core.kinesis import RawRecord
from handlers.tracking.consumer import BatchOutcome, Consumer

# checkpoint refusals (the daemon's exception names): the lease is gone / try again later
LEASE_GONE = frozenset({"ShutdownException"})
RETRYABLE = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})


class LeaseGone(Exception):
    """A checkpoint was refused because another worker owns the shard now: stop this batch, do not halt."""


class ShardHalted(BaseException):
    """The sinks kept failing: stop this record processor *process* so the shard restarts from the last
    checkpoint. A BaseException on purpose — kclpy swallows ``Exception`` and would move on."""


try:  # pragma: no cover - depends on the image
    from amazon_kclpy.v3.processor import RecordProcessorBase as _Base
except ImportError:  # pragma: no cover
    _Base = object


def _arrival_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) / 1000.0  # the daemon sends epoch milliseconds


class TrackingRecordProcessor(_Base):  # type: ignore[misc,valid-type]
    def __init__(self, consumer_factory: Callable[[], Consumer], *, max_attempts: int = 5,
                 backoff_seconds: float = 1.0, max_backoff_seconds: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> None:
        self._factory = consumer_factory
        self._consumer: Consumer | None = None
        self.shard_id = "unknown"
        self.max_attempts, self.backoff_seconds, self.sleep = max_attempts, backoff_seconds, sleep
        self.max_backoff_seconds, self.log = max_backoff_seconds, log
        self.outcomes: list[BatchOutcome] = []
        self.waits = 0
        self._outages = OutageReporter("tracking-kcl-consumer")

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        self._consumer = self._factory()

    def _to_raw(self, record: Any) -> RawRecord:
        data = getattr(record, "data", None)
        if data is None:
            data = base64.b64encode(record.binary_data).decode("ascii")
        return RawRecord(record.sequence_number, record.partition_key, data,
                         _arrival_seconds(record.approximate_arrival_timestamp), self.shard_id)

    def process_records(self, process_records_input: Any) -> None:
        assert self._consumer is not None, "initialize() was not called"
        pending: Sequence[RawRecord] = [self._to_raw(r) for r in process_records_input.records]
        checkpointer = process_records_input.checkpointer
        errors = 0
        delays = backoff_delays(self.backoff_seconds, self.max_backoff_seconds)
        while pending:
            try:
                outcome = self._consumer.handle(pending)
            except Unavailable as exc:  # an outage: the shard waits, however long it lasts
                self._wait(exc, next(delays))
                continue
            except Exception as exc:  # noqa: BLE001 - a bug: kclpy would swallow it and skip the batch
                errors += 1
                if errors >= self.max_attempts:
                    raise ShardHalted(f"{self.shard_id}: {type(exc).__name__}: {exc} "
                                      f"(after {errors} attempts)") from exc
                self.sleep(self.backoff_seconds * 2 ** (errors - 1))
                continue
            self.outcomes.append(outcome)
            try:
                if not outcome.failed_sequence_numbers:
                    self._checkpoint(checkpointer, pending[-1].sequence_number)
                    self._outages.recovered()
                    return
                lowest = min(outcome.failed_sequence_numbers, key=int)
                position = next(i for i, r in enumerate(pending) if r.sequence_number == lowest)
                if position:
                    self._checkpoint(checkpointer, pending[position - 1].sequence_number)
            except LeaseGone as gone:
                self.log(f"{self.shard_id}: {gone}; the new owner resumes from the last checkpoint")
                return
            pending = pending[position:]
            self._wait(outcome.error or f"records from {lowest} failed", next(delays))

    def _checkpoint(self, checkpointer: Any, sequence_number: str | None) -> None:
        """Checkpoint; a throttled checkpoint is retried a few times, then left to the next batch's."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                checkpointer.checkpoint(sequence_number)
                return
            except Exception as exc:  # noqa: BLE001 - the daemon's refusal: kclpy's or our CheckpointError
                name = str(getattr(exc, "value", "") or exc)
                if name in LEASE_GONE:
                    raise LeaseGone(f"checkpoint at {sequence_number} refused: {name}") from exc
                if name not in RETRYABLE:
                    raise
                if attempt == self.max_attempts:
                    self.log(f"{self.shard_id}: checkpoint at {sequence_number} still refused ({name}); the next "
                             f"batch's checkpoint covers it (at worst these records are delivered again)")
                    return
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))

    def _wait(self, problem: Any, delay: float) -> None:
        self.waits += 1
        self.log(f"{self.shard_id}: waiting for {getattr(problem, 'dependency', 'a sink')} — {problem}; "
                 f"retry in {delay:.1f} s (records held, not checkpointed)")
        self._outages.waiting(problem)
        self.sleep(delay)

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Another worker owns the shard now: stop without checkpointing (we may not)."""

    def shard_ended(self, shard_ended_input: Any) -> None:
        shard_ended_input.checkpointer.checkpoint()  # required to let child shards start

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        shutdown_requested_input.checkpointer.checkpoint()  # everything handed to us was already processed


def main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """The record processor process the MultiLangDaemon starts per shard (``executableName`` in
    consumer.properties: ``python -m handlers.tracking.kcl_consumer``), configured like the Lambda consumer
    (``ConsumerConfig.from_env``) plus ``KCL_BUG_ATTEMPTS`` (tries before a bug halts the shard, 5),
    ``KCL_BACKOFF_SECONDS`` (1) and ``KCL_MAX_BACKOFF_SECONDS`` (30, the cap while an outage is waited out).
    stdout is the protocol's: everything else anyone prints goes to stderr.
    Returns 0 when the daemon closes stdin, 2 when the shard halted (the daemon starts a new process)."""
    import sys

    from handlers.core.alerts import init_sentry
    from handlers.core.config import Env
    from handlers.tracking import kcl_protocol
    from handlers.tracking.consumer import ConsumerConfig, build_consumer

    protocol_out = stdout or sys.stdout
    sys.stdout = sys.stderr

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    env = Env()
    config = ConsumerConfig.from_env(env)
    init_sentry(config.stage)
    processor = TrackingRecordProcessor(lambda: build_consumer(config), log=log,
                                        max_attempts=int(env.optional("KCL_BUG_ATTEMPTS", "5") or 5),
                                        backoff_seconds=float(env.optional("KCL_BACKOFF_SECONDS", "1") or 1),
                                        max_backoff_seconds=float(env.optional("KCL_MAX_BACKOFF_SECONDS", "30") or 30))
    try:
        kcl_protocol.run(processor, stdin or sys.stdin, protocol_out)
    except ShardHalted as halted:
        import sentry_sdk

        sentry_sdk.capture_exception(halted)
        sentry_sdk.flush(timeout=5)
        log(f"shard halted, the daemon restarts it from its last checkpoint: {halted}")
        return 2
    except kcl_protocol.DaemonGone as gone:
        log(f"{gone}: exiting")
    return 0


if __name__ == "__main__":  # pragma: no cover - the daemon runs it
    raise SystemExit(main())
