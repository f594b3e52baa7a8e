"""Lambda entry point for the Kinesis event source mapping. Thin: typed event in, partial failures out.

Powertools supplies the typed Kinesis event (``KinesisStreamEvent``), the ``batchItemFailures`` response
shape and the structured logger. Its ``BatchProcessor`` would call us once per record, while our sinks are
bulk (one archive object, PutRecordBatch, COPY), so the batch goes to :class:`Consumer` whole and failed
records map back to their sequence numbers here.

An outage (a sink unavailable) is waited out inside the invocation with capped backoff, as long as the
function's remaining time allows; then every record not yet delivered is returned in ``batchItemFailures``.
That is a partial failure, not a function error: the mapping neither bisects nor quarantines, it retries
from the lowest returned record (``MaximumRetryAttempts: -1``) until the outage ends or the records reach
``MaximumRecordAgeInSeconds`` — then their coordinates go to the on-failure queue, for ``letgo recover``.
The outage is reported to Sentry once per container and dependency every few minutes, not per retry.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

from handlers.core.alerts import OutageReporter, init_sentry
from handlers.tracking.consumer import BatchOutcome, Consumer, ConsumerConfig, OnWait, build_consumer, secret_string
from handlers.tracking.core import RawRecord

logger = Logger(service="tracking-consumer")
_consumer: Consumer | None = None
_outages = OutageReporter("tracking-consumer")
# Seconds of the invocation kept free after waiting: one batch normally takes well under a second, but an
# attempt against a dependency that hangs lasts until its timeouts (S3/Firehose: 3 s connect, 10 s read, 2
# tries; PostgreSQL: 5 s connect + its statement timeout). A timeout would be a function error: the batch
# would be bisected and retried — nothing lost, but wasteful.
SAFETY_MARGIN_SECONDS = 40.0
MAX_WAIT_SECONDS = 600.0


def records_from_event(event: dict[str, Any]) -> list[RawRecord]:
    """The one decode point for Lambda: Kinesis event -> RawRecord (data stays base64 for the archive)."""
    out = []
    for record in KinesisStreamEvent(event).records:
        shard_id = record.event_id.split(":", 1)[0]
        out.append(RawRecord(record.kinesis.sequence_number, record.kinesis.partition_key, record.kinesis.data,
                             record.kinesis.approximate_arrival_timestamp, shard_id))
    return out


def response_for(outcome: BatchOutcome) -> PartialItemFailureResponse:
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in sorted(outcome.failed_sequence_numbers,
                                                                              key=int)]}


def get_consumer() -> Consumer:
    global _consumer
    if _consumer is None:  # once per container: YAML validated here, a broken file fails the cold start
        config = ConsumerConfig.from_environment()
        dsn_secret = os.environ.get("SENTRY_DSN_SECRET_ARN")
        init_sentry(config.stage, dsn=secret_string(dsn_secret) if dsn_secret else None)
        _consumer = build_consumer(config)
    return _consumer


def _log_wait(problem: Any, delay: float, retry: int) -> None:
    logger.warning("waiting for a sink", extra={"problem": str(problem), "retry": retry, "delay_seconds": delay})
    _outages.waiting(problem)


def process_event(event: dict[str, Any], *, budget_seconds: float = 0.0, on_wait: OnWait | None = None) -> BatchOutcome:
    """Everything the handler does but the Lambda context; the local stage's driver calls this.

    ``budget_seconds``: how long to wait out an outage inside this call (0: hand the batch straight back —
    the local driver does its own waiting, as the mapping does in AWS).
    """
    consumer = get_consumer()
    outcome = consumer.handle_patiently(records_from_event(event), budget_seconds=budget_seconds,
                                        on_wait=on_wait or _log_wait)
    if outcome.unavailable is None:
        _outages.recovered()
    logger.info("batch processed", extra={k: v for k, v in vars(outcome).items()
                                         if k != "failed_sequence_numbers"})
    return outcome


def reset() -> None:
    """Drop the cached consumer (the local stage and tests re-point the environment between runs)."""
    global _consumer
    if _consumer is not None and _consumer.database is not None:
        _consumer.database.close()
    _consumer = None


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    budget = min(MAX_WAIT_SECONDS, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS)
    return response_for(process_event(event, budget_seconds=max(0.0, budget)))
