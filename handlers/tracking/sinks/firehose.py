"""Kinesis Firehose sink (-> S3 -> Redshift): PutRecordBatch in chunks, retrying only failed entries.

Service limits per call: 500 records, 4 MiB in total, 1,000 KiB per record. A partial failure
(``FailedPutCount > 0``) retries just the rejected entries with exponential backoff; entries still failing
after the last attempt are reported by sequence number so the event source retries only those records.
Firehose itself is at-least-once, so the warehouse de-duplicates on ``messageId`` (see the README).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from handlers.tracking.errors import SinkError

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024


def chunks(blobs: Sequence[bytes]) -> list[list[int]]:
    """Split record indexes into calls within the count and size limits."""
    calls: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, blob in enumerate(blobs):
        if current and (len(current) == MAX_RECORDS_PER_CALL or size + len(blob) > MAX_BYTES_PER_CALL):
            calls.append(current)
            current, size = [], 0
        current.append(index)
        size += len(blob)
    if current:
        calls.append(current)
    return calls


class FirehoseSink:
    sink = "firehose"

    def __init__(self, firehose: Any, stream_name: str, *, max_attempts: int = 4, backoff_seconds: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.firehose, self.stream_name = firehose, stream_name
        self.max_attempts, self.backoff_seconds, self.sleep = max_attempts, backoff_seconds, sleep

    def put(self, blobs: Sequence[bytes], keys: Sequence[str]) -> int:
        """Deliver every blob; ``keys[i]`` names blob i (its sequence number) in the error. Returns calls made."""
        oversized = [keys[i] for i, blob in enumerate(blobs) if len(blob) > MAX_RECORD_BYTES]
        if oversized:  # the consumer quarantines oversized documents first; reaching here is a bug
            raise SinkError(self.sink, f"{len(oversized)} documents over {MAX_RECORD_BYTES} bytes",
                            frozenset(oversized))
        calls = 0
        failed: set[str] = set()
        last_error = ""
        for call in chunks(blobs):
            pending = call
            for attempt in range(self.max_attempts):
                if attempt:
                    self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                calls += 1
                try:
                    response = self.firehose.put_record_batch(
                        DeliveryStreamName=self.stream_name, Records=[{"Data": blobs[i]} for i in pending])
                except (ClientError, BotoCoreError) as exc:
                    last_error = str(exc)
                    continue  # the whole call failed: retry all of its pending entries
                if not response.get("FailedPutCount"):
                    pending = []
                    break
                results = response["RequestResponses"]
                last_error = next((r.get("ErrorMessage") or r.get("ErrorCode") for r in results
                                   if r.get("ErrorCode")), "")
                pending = [i for i, result in zip(pending, results) if result.get("ErrorCode")]
            failed.update(keys[i] for i in pending)
        if failed:
            raise SinkError(self.sink, f"{len(failed)} records still failing after {self.max_attempts} "
                                       f"attempts: {last_error}", frozenset(failed))
        return calls
