"""Kinesis records at the edge of every stream function, and the partial batch response they answer with.

Powertools supplies the typed event (``KinesisStreamEvent``) and the response type; this module turns the
event into :class:`RawRecord` (the data stays base64, as delivered, for the raw archive) and failed sequence
numbers back into ``batchItemFailures`` — the same way for the consumer, the statistics and the indexer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent


@dataclass(slots=True, frozen=True)
class RawRecord:
    """A Kinesis record as every event source hands it over: base64 data plus its coordinates."""

    sequence_number: str
    partition_key: str
    data: str  # base64, exactly as delivered (archived as is)
    arrival: float  # approximate arrival timestamp, epoch seconds
    shard_id: str = "shardId-000000000000"


def records_from_event(event: dict[str, Any]) -> list[RawRecord]:
    """The one decode point for Lambda's Kinesis events (and the local driver's, which are the same)."""
    out = []
    for record in KinesisStreamEvent(event).records:
        shard_id = record.event_id.split(":", 1)[0]
        out.append(RawRecord(record.kinesis.sequence_number, record.kinesis.partition_key, record.kinesis.data,
                             record.kinesis.approximate_arrival_timestamp, shard_id))
    return out


def batch_item_failures(sequence_numbers: Iterable[str]) -> PartialItemFailureResponse:
    """``ReportBatchItemFailures``' answer: Lambda resumes the shard from the lowest of them."""
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in sorted(set(sequence_numbers), key=int)]}
