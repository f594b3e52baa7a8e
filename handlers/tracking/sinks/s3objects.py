"""Raw archive and quarantine on S3: gzip JSON lines under deterministic keys.

**Archive**: one object per batch, ``raw/dt=<arrival date>/<shard>/<first seq>-<last seq>.jsonl.gz``; a
retried batch has the same records, hence the same key and the same bytes (gzip ``mtime=0``), so it
overwrites. A batch cut differently on a retry (bisect, a partial failure) writes its own range: archive
readers de-duplicate by (shard, sequence number).

**Quarantine**: one object per rejected *record*, ``quarantine/dt=<arrival date>/<shard>/<seq>.jsonl.gz``,
holding a line per rejected unit (index) of that record — so lines are unique per (shard, sequence number,
index) however batches are cut, retried or bisected. Written with ``If-None-Match: *`` (S3 conditional
writes): the first attempt creates it, a retry learns the record was quarantined already, and only records
quarantined *now* are reported to Sentry — a rejection is alerted once, not once per retry.

Any S3 failure here is an outage (:class:`SinkUnavailable`): the batch waits, nothing is set aside.
"""
from __future__ import annotations

import base64
import gzip
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from handlers.core.failures import describe
from handlers.core.kinesis import RawRecord
from handlers.tracking.errors import Rejection, SinkUnavailable


def _day(arrival: float) -> str:
    return datetime.fromtimestamp(arrival, timezone.utc).strftime("%Y-%m-%d")


def batch_key(prefix: str, records: Sequence[RawRecord]) -> str:
    first = records[0]
    return f"{prefix}/dt={_day(first.arrival)}/{first.shard_id}/{first.sequence_number}-" \
           f"{records[-1].sequence_number}.jsonl.gz"


def record_key(prefix: str, record: RawRecord) -> str:
    return f"{prefix}/dt={_day(record.arrival)}/{record.shard_id}/{record.sequence_number}.jsonl.gz"


def gzip_lines(lines: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=5) as out:
        for line in lines:
            out.write(orjson.dumps(line))
            out.write(b"\n")
    return buffer.getvalue()


def read_lines(body: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(body).splitlines():
        if line:
            yield orjson.loads(line)


class _S3Writer:
    sink = "s3"

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def _put(self, key: str, body: bytes, *, only_if_new: bool = False) -> bool:
        """Write the object; with ``only_if_new`` return False (and write nothing) if it already exists."""
        extra = {"IfNoneMatch": "*"} if only_if_new else {}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson",
                               ContentEncoding="gzip", **extra)
        except ClientError as exc:
            if only_if_new and exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False  # written by an earlier attempt of this batch
            # any other answer (throttling, 5xx, access denied, a missing bucket, a 409 conflicting write)
            # is not the records' fault: the batch waits for it to be fixed
            raise SinkUnavailable(self.sink, f"cannot write s3://{self.bucket}/{key}: {describe(exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise SinkUnavailable(self.sink, f"cannot write s3://{self.bucket}/{key}: {describe(exc)}") from exc
        return True


class RawArchive(_S3Writer):
    """Every raw record, exactly as received, before anything else looks at it."""

    sink = "archive"

    def put(self, records: Sequence[RawRecord]) -> str:
        key = batch_key(self.prefix, records)
        self._put(key, gzip_lines(
            {"shardId": r.shard_id, "sequenceNumber": r.sequence_number, "partitionKey": r.partition_key,
             "approximateArrivalTimestamp": r.arrival, "data": r.data} for r in records))
        return key


def quarantine_line(rejection: Rejection, shard_id: str, arrival: float) -> dict[str, Any]:
    line = {"shardId": shard_id, "sequenceNumber": rejection.sequence_number, "index": rejection.index,
            "arrival": arrival, "reason": rejection.reason.value, "field": rejection.field,
            "message": rejection.message, "eventType": rejection.event_type, "appVersion": rejection.app_version,
            "raw": base64.b64encode(rejection.raw).decode("ascii")}
    if rejection.exception:  # internal_error: where the core failed (no record values in a traceback's text)
        line["exception"] = rejection.exception
    return line


class Quarantine(_S3Writer):
    """Rejected records with their reason codes; nothing is ever dropped. Re-driven by ``letgo quarantine``."""

    sink = "quarantine"
    max_parallel_puts = 16

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        super().__init__(s3, bucket, prefix)
        self._pool: ThreadPoolExecutor | None = None

    def put(self, records: Sequence[RawRecord], rejections: Sequence[Rejection],
            on_new: Callable[[list[Rejection]], Any] | None = None) -> list[Rejection]:
        """Quarantine every rejection, one object per record; returns the rejections quarantined by *this*
        call — those of records an earlier attempt had quarantined are left out: they were reported then.

        ``on_new`` (the Sentry report) is called with them even when some other PUT failed and the batch
        will be retried: a retry finds those objects and would never report them.
        """
        if not rejections:
            return []
        by_record = {r.sequence_number: r for r in records}
        grouped: dict[str, list[Rejection]] = defaultdict(list)
        for rejection in rejections:
            grouped[rejection.sequence_number].append(rejection)

        def put_one(sequence_number: str) -> bool | SinkUnavailable:
            record = by_record[sequence_number]
            lines = sorted(grouped[sequence_number], key=lambda r: r.index)
            body = gzip_lines(quarantine_line(r, record.shard_id, record.arrival) for r in lines)
            try:
                return self._put(record_key(self.prefix, record), body, only_if_new=True)
            except SinkUnavailable as exc:
                return exc

        order = list(grouped)
        if len(order) == 1:
            results = [put_one(order[0])]
        else:  # one PUT per rejected record, side by side (boto3 clients are thread-safe)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_parallel_puts, thread_name_prefix="quarantine")
            results = list(self._pool.map(put_one, order))
        new = [r for sequence_number, result in zip(order, results) if result is True for r in grouped[sequence_number]]
        if new and on_new is not None:
            on_new(new)
        failure = next((result for result in results if isinstance(result, SinkUnavailable)), None)
        if failure is not None:
            raise failure
        return new

    def keys(self) -> Iterator[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for item in page.get("Contents", []):
                yield item["Key"]

    def read(self, key: str) -> list[dict[str, Any]]:
        return list(read_lines(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()))

    def rewrite(self, key: str, lines: list[dict[str, Any]]) -> None:
        """Keep only ``lines`` under ``key`` (the ones a re-drive could not fix); delete it when empty."""
        if lines:
            self._put(key, gzip_lines(lines))
        else:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
