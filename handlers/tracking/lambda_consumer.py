"""Lambda entry point for the Kinesis event source mapping. Thin: typed event in, partial failures out.

Powertools supplies the typed Kinesis event (``KinesisStreamEvent``, via :mod:`handlers.core.kinesis`), the
``batchItemFailures`` response shape and the structured logger. Its ``BatchProcessor`` would call us once per
record, while our sinks are bulk (one archive object, PutRecordBatch, COPY), so the batch goes to
:class:`Consumer` whole and failed records map back to their sequence numbers.

An outage (a sink unavailable) is waited out inside the invocation with capped backoff, as long as the
function's remaining time allows; then every record not yet delivered is returned in ``batchItemFailures``.
That is a partial failure, not a function error: the mapping neither bisects nor quarantines, it retries
from the lowest returned record (``MaximumRetryAttempts: -1``) until the outage ends or the records reach
``MaximumRecordAgeInSeconds`` — then their coordinates go to the on-failure queue, for ``letgo recover``.
The outage is reported to Sentry once per container and dependency every few minutes, not per retry.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

from handlers.core.alerts import OutageReporter
from handlers.core.config import Env
from handlers.core.kinesis import batch_item_failures, records_from_event
from handlers.core.runtime import ColdStart, wait_budget
from handlers.tracking.consumer import BatchOutcome, Consumer, ConsumerConfig, OnWait, build_consumer

__all__ = ["get_consumer", "handler", "process_event", "reset", "use"]

logger = Logger(service="tracking-consumer")
_outages = OutageReporter("tracking-consumer")


def _build(env: Env) -> Consumer:  # YAML validated here: a broken file fails the cold start
    return build_consumer(ConsumerConfig.from_env(env))


_app = ColdStart("tracking-consumer", _build)


def get_consumer() -> Consumer:
    return _app.get()


def reset() -> None:
    """Drop the cached consumer (the local stage and tests re-point the environment between runs)."""
    _app.reset()


def use(consumer: Consumer) -> None:
    """Run this consumer instead of one built from the environment (benchmarks with other clients)."""
    _app.use(consumer)


def _log_wait(problem: Any, delay: float, retry: int) -> None:
    logger.warning("waiting for a sink", extra={"problem": str(problem), "retry": retry, "delay_seconds": delay})
    _outages.waiting(problem)


def process_event(event: dict[str, Any], *, budget_seconds: float = 0.0, on_wait: OnWait | None = None) -> BatchOutcome:
    """Everything the handler does but the Lambda context; the local stage's driver calls this.

    ``budget_seconds``: how long to wait out an outage inside this call (0: hand the batch straight back —
    the local driver does its own waiting, as the mapping does in AWS).
    """
    outcome = get_consumer().handle_patiently(records_from_event(event), budget_seconds=budget_seconds,
                                              on_wait=on_wait or _log_wait)
    if outcome.unavailable is None:
        _outages.recovered()
    logger.info("batch processed", extra={k: v for k, v in vars(outcome).items()
                                         if k != "failed_sequence_numbers"})
    return outcome


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return batch_item_failures(process_event(event, budget_seconds=wait_budget(context)).failed_sequence_numbers)
