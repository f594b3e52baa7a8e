"""Lambda entry point for the Kinesis event source mapping. Thin: typed event in, partial failures out.

Powertools supplies the typed Kinesis event (``KinesisStreamEvent``), the ``batchItemFailures`` response
shape and the structured logger. Its ``BatchProcessor`` would call us once per record, while our sinks are
bulk (one archive object, PutRecordBatch, COPY), so the batch goes to :class:`Consumer` whole and failed
records map back to their sequence numbers here. A whole-batch failure raises, so the mapping retries (and
bisects) the batch; partial failures are returned with ``ReportBatchItemFailures`` enabled.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

from handlers.core.alerts import init_sentry
from handlers.tracking.consumer import BatchOutcome, Consumer, ConsumerConfig, build_consumer, secret_string
from handlers.tracking.core import RawRecord

logger = Logger(service="tracking-consumer")
_consumer: Consumer | None = None


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


def process_event(event: dict[str, Any]) -> BatchOutcome:
    """Everything the handler does but the Lambda context; the local stage's driver calls this."""
    outcome = get_consumer().handle(records_from_event(event))
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
    return response_for(process_event(event))
