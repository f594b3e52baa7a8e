"""Raw archive and quarantine on S3: gzip JSON lines under deterministic keys.

The key of a batch is ``<prefix>/dt=<arrival date>/<shard>/<first seq>-<last seq>.jsonl.gz``; a retried
batch has the same records, hence the same key and the same bytes (gzip ``mtime=0``), so it overwrites
rather than duplicates.
"""
from __future__ import annotations

import base64
import gzip
import io
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from handlers.tracking.core import RawRecord
from handlers.tracking.errors import Rejection, SinkError


def batch_key(prefix: str, records: Sequence[RawRecord]) -> str:
    first = records[0]
    day = datetime.fromtimestamp(first.arrival, timezone.utc).strftime("%Y-%m-%d")
    return f"{prefix}/dt={day}/{first.shard_id}/{first.sequence_number}-{records[-1].sequence_number}.jsonl.gz"


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

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson",
                               ContentEncoding="gzip")
        except (ClientError, BotoCoreError) as exc:
            raise SinkError(self.sink, f"cannot write s3://{self.bucket}/{key}: {exc}") from exc


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
    return {"shardId": shard_id, "sequenceNumber": rejection.sequence_number, "index": rejection.index,
            "arrival": arrival, "reason": rejection.reason.value, "field": rejection.field,
            "message": rejection.message, "eventType": rejection.event_type, "appVersion": rejection.app_version,
            "raw": base64.b64encode(rejection.raw).decode("ascii")}


class Quarantine(_S3Writer):
    """Rejected records with their reason codes; nothing is ever dropped. Re-driven by ``letgo quarantine``."""

    sink = "quarantine"

    def put(self, records: Sequence[RawRecord], rejections: Sequence[Rejection]) -> str | None:
        if not rejections:
            return None
        arrival = {r.sequence_number: r.arrival for r in records}
        shard = records[0].shard_id
        key = batch_key(self.prefix, records)
        self._put(key, gzip_lines(quarantine_line(r, shard, arrival[r.sequence_number]) for r in rejections))
        return key

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
