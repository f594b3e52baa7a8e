"""Put records on a Kinesis stream with PutRecords (≤500 records / 5 MiB a call), retrying failed entries."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024


def put_records(kinesis: Any, stream: str, records: Iterable[tuple[str, bytes]], *,
                progress: Callable[[int], None] | None = None, max_attempts: int = 5) -> int:
    """``records`` are (partition key, data). Returns how many were accepted (all, or it raises)."""
    sent = 0
    batch: list[tuple[str, bytes]] = []
    size = 0

    def flush(entries: Sequence[tuple[str, bytes]]) -> None:
        nonlocal sent
        pending = list(entries)
        for attempt in range(max_attempts):
            response = kinesis.put_records(StreamName=stream, Records=[
                {"PartitionKey": key, "Data": data} for key, data in pending])
            if not response.get("FailedRecordCount"):
                sent += len(pending)
                pending = []
                break
            retry = [entry for entry, result in zip(pending, response["Records"]) if result.get("ErrorCode")]
            sent += len(pending) - len(retry)
            pending = retry
            time.sleep(0.1 * 2 ** attempt)
        if pending:
            raise RuntimeError(f"{len(pending)} records could not be put on {stream}")
        if progress:
            progress(sent)

    for key, data in records:
        entry_size = len(key.encode()) + len(data)
        if batch and (len(batch) == MAX_RECORDS or size + entry_size > MAX_BYTES):
            flush(batch)
            batch, size = [], 0
        batch.append((key, data))
        size += entry_size
    if batch:
        flush(batch)
    return sent
