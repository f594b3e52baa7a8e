"""Count what actually landed in every sink — the ground truth behind the conservation report.

Readers de-duplicate the way the platform's consumers of these stores must: archive lines by
(shard, sequence number) and quarantine lines by (shard, sequence number, index), since a retried
sub-batch (bisect, partial failure) is written under a different sequence range.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from handlers.tracking.sinks.s3objects import read_lines


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


@dataclass
class Inventory:
    archived: int = 0
    archive_objects: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    postgres_rows: int = 0
    postgres_by_type: dict[str, int] = field(default_factory=dict)
    firehose_records: int = 0
    firehose_distinct: int = 0
    firehose_objects: int = 0


def take_inventory(s3: Any, *, raw_bucket: str, quarantine_bucket: str, processed_bucket: str,
                   database_url: str | None) -> Inventory:
    inv = Inventory()
    archived: set[tuple[str, str]] = set()
    keys = _objects(s3, raw_bucket, "raw/")
    inv.archive_objects = len(keys)
    for key in keys:
        for line in read_lines(s3.get_object(Bucket=raw_bucket, Key=key)["Body"].read()):
            archived.add((line["shardId"], line["sequenceNumber"]))
    inv.archived = len(archived)

    quarantined: dict[tuple[str, str, int], str] = {}
    for key in _objects(s3, quarantine_bucket, "quarantine/"):
        for line in read_lines(s3.get_object(Bucket=quarantine_bucket, Key=key)["Body"].read()):
            quarantined[(line["shardId"], line["sequenceNumber"], line["index"])] = line["reason"]
    inv.quarantined = len(quarantined)
    inv.quarantined_by_reason = dict(Counter(quarantined.values()).most_common())

    message_ids: list[str] = []
    keys = _objects(s3, processed_bucket, "events/")
    inv.firehose_objects = len(keys)
    for key in keys:
        for line in s3.get_object(Bucket=processed_bucket, Key=key)["Body"].read().splitlines():
            if line.strip():
                message_ids.append(orjson.loads(line)["messageId"])
    inv.firehose_records, inv.firehose_distinct = len(message_ids), len(set(message_ids))

    if database_url:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
        inv.postgres_by_type = {name: count for name, count in rows}
        inv.postgres_rows = sum(inv.postgres_by_type.values())
    return inv
