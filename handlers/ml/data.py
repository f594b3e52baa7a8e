"""Training rows from the processed events on S3: read, de-duplicate, extract, cap.

Where the rows come from: Firehose writes the valid events as JSON lines (gzip in AWS) under
``s3://<processed>/events/type=<Type>/dt=<YYYY-MM-DD>/`` — one line per event in the platform's envelope
(``messageId``, ``type``, ``timestamp``, ``properties``, ``context``…; see ``Event.to_document``). The
loader lists one prefix per day of the definition's look-back window (listing a type's whole history would
grow forever), reads the objects in key order and keeps the first copy of every ``messageId``: Firehose is
at-least-once, so the same event can sit in two objects.

Each event becomes one row: the definition's columns read by path, plus the derived label (e.g. the price in
euros). Objects are plain or gzip JSON lines (detected by their magic bytes): moto's Firehose and AWS's
differ there, the rows do not.

The cap: at most ``max_rows`` rows survive, drawn per stratum (``stratify_by``) in proportion to its size —
largest-remainder quotas, then a seeded draw inside each stratum — so the capped sample has the population's
mix and the same input gives the same sample. The counts per stratum are logged and reported. The window's
rows are held in memory before the draw (only the declared columns, a few hundred bytes a row): the look-back
window, not the cap, sizes the job's memory.
"""
from __future__ import annotations

import gzip
import logging
import random
import zlib
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Callable, Hashable, Mapping, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from handlers.ml.datachecks import category_key
from handlers.ml.dataset import Dataset
from handlers.ml.errors import TrainingDataError
from handlers.ml.report import LoadReport, SampleReport

log = logging.getLogger(__name__)

EVENTS_PREFIX = "events/"
MISSING_STRATUM = "__missing__"
GZIP_MAGIC = b"\x1f\x8b"


# -- reading -----------------------------------------------------------------------------------------------------
def partition_prefix(event_type: str, day: date, prefix: str = EVENTS_PREFIX) -> str:
    return f"{prefix}type={event_type}/dt={day.isoformat()}/"


def window(end: date, lookback_days: int) -> list[date]:
    """The days read for a run ending on ``end`` (inclusive), oldest first."""
    return [end - timedelta(days=d) for d in range(lookback_days - 1, -1, -1)]


def decode_object(body: bytes) -> list[bytes]:
    """The JSON lines of one Firehose object, gzip (one or several members) or plain."""
    if body[:2] == GZIP_MAGIC:
        body = gzip.decompress(body)
    return [line for line in body.splitlines() if line.strip()]


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise TrainingDataError(bucket, prefix, f"cannot list: {exc}") from None
    return sorted(keys)


def _read(s3: Any, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise TrainingDataError(bucket, key, f"cannot read: {exc}") from None


def row_of(document: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    """One training row: every declared column read by its path, plus the derived label."""
    row = {column.name: column.extract(document) for column in spec.columns}
    row[spec.label.name] = spec.label.derive(row)
    return row


def load_rows(s3: Any, bucket: str, spec: Any, *, end: date, prefix: str = EVENTS_PREFIX,
              progress: Callable[[int, int], None] | None = None) -> tuple[Dataset, LoadReport]:
    """Rows of ``spec`` (a :class:`~handlers.ml.definition_types.DataSpec`) from the look-back window ending ``end``."""
    days = window(end, spec.lookback_days)
    keys = [key for day in days for key in _list_keys(s3, bucket, partition_prefix(spec.event_type, day, prefix))]
    log.info("reading %d objects of %s from s3://%s/%s (%s..%s)", len(keys), spec.event_type, bucket, prefix,
             days[0], days[-1])
    seen: set[str] = set()
    keyed: list[tuple[str, dict[str, Any]]] = []
    lines = duplicates = skipped = 0
    for done, key in enumerate(keys, 1):
        try:
            object_lines = decode_object(_read(s3, bucket, key))
        except (OSError, EOFError, zlib.error) as exc:
            raise TrainingDataError(bucket, key, f"not a readable gzip object: {exc}") from None
        for line in object_lines:
            lines += 1
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError:
                skipped += 1
                continue
            if not isinstance(document, dict) or document.get("type") != spec.event_type \
                    or not isinstance(document.get("messageId"), str):
                skipped += 1
                continue
            if document["messageId"] in seen:
                duplicates += 1
                continue
            seen.add(document["messageId"])
            keyed.append((document["messageId"], row_of(document, spec)))
        if done % 200 == 0:
            log.info("read %d/%d objects: %d events so far", done, len(keys), len(keyed))
        if progress is not None:
            progress(done, len(keys))
    # in messageId order: the same events give the same rows, sample and holdout, however Firehose happened to
    # cut them into objects (object names carry delivery times)
    rows = [row for _, row in sorted(keyed, key=lambda pair: pair[0])]
    if skipped:
        log.warning("%d lines were not %s events and were skipped", skipped, spec.event_type)
    report = LoadReport(spec.event_type, days[0].isoformat(), days[-1].isoformat(), len(keys), lines, len(rows),
                        duplicates, skipped)
    log.info("%s", report.describe())
    return Dataset.from_rows(rows, spec.kinds), report


# -- the cap and the holdout ---------------------------------------------------------------------------------------
def _strata(values: Sequence[Any]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, value in enumerate(values):
        groups.setdefault(MISSING_STRATUM if value is None else category_key(value), []).append(index)
    return groups


def proportional_quotas(sizes: Mapping[Hashable, int], cap: int) -> dict[Hashable, int]:
    """Largest-remainder allocation of ``cap`` over strata in proportion to their sizes (sums to min(cap, total))."""
    total = sum(sizes.values())
    if total <= cap:
        return dict(sizes)
    exact = {key: cap * size / total for key, size in sizes.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    left = cap - sum(quotas.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), str(k)))[:left]:
        quotas[key] += 1
    return quotas


def stratified_sample(strata: Sequence[Any], cap: int, seed: int, *, stratify_by: str = "") -> tuple[list[int],
                                                                                                      SampleReport]:
    """Indices of at most ``cap`` rows, in proportion per stratum, drawn with ``seed``; sorted."""
    groups = _strata(strata)
    quotas = proportional_quotas({k: len(v) for k, v in groups.items()}, cap)
    rng = random.Random(seed)
    chosen: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        chosen.extend(members if quotas[key] == len(members) else rng.sample(members, quotas[key]))
    report = SampleReport(stratify_by, cap, seed, len(strata), len(chosen),
                          MappingProxyType({k: (len(groups[k]), quotas[k]) for k in sorted(groups)}))
    return sorted(chosen), report


def cap_rows(dataset: Dataset, spec: Any) -> tuple[Dataset, SampleReport]:
    """At most ``spec.max_rows`` rows, stratified by ``spec.stratify_by``; the counts are logged."""
    indices, report = stratified_sample(dataset.column(spec.stratify_by), spec.max_rows, spec.seed,
                                        stratify_by=spec.stratify_by)
    log.info("sampling: %s", report.describe())
    return (dataset if len(indices) == len(dataset) else dataset.take(indices)), report


def split_holdout(strata: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, holdout) indices: ``fraction`` of every stratum held out, drawn with ``seed``; both sorted."""
    rng = random.Random(f"{seed}:holdout")
    train: list[int] = []
    holdout: list[int] = []
    for _, members in sorted(_strata(strata).items()):
        shuffled = list(members)
        rng.shuffle(shuffled)
        n = round(len(shuffled) * fraction)
        holdout.extend(shuffled[:n])
        train.extend(shuffled[n:])
    return sorted(train), sorted(holdout)
