"""What the chaos cases share: a stream per case, the audit that decides "nothing lost, nothing duplicated",
and the one fault injector the real parts cannot provide (a frozen S3).

The audit is the ground truth, independent of the consumer's own counters: per messageId sent, PostgreSQL
holds it exactly once, or its unit is in the quarantine exactly once, or it is a re-send of a delivered
messageId; Firehose holds every delivered event (at most the documented duplicates); quarantine lines are
unique per (shard, sequence number, index); the on-failure queues end empty; Sentry heard of each rejected
unit at most once.
"""
from __future__ import annotations

import gzip
import socket
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson
import psycopg

from handlers.core.aws import client
from handlers.tracking import lambda_consumer
from letgo.driver import EventSourceMapping, sqs_on_failure
from letgo.producer import put_records
from letgo.stage import LocalStage
from letgo.traffic import TrafficRecord
from tests.stage_kit import quarantine_lines


# -- streams and mappings -------------------------------------------------------------------------------------
def case_stream(shards: int = 2) -> str:
    """A fresh stream for one case: its mapping starts at the beginning and sees only this case's records."""
    name = f"letgo-chaos-{uuid.uuid4().hex[:10]}"
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    return name


def put(stream: str, records: Iterable[TrafficRecord]) -> int:
    return put_records(client("kinesis"), stream, ((r.partition_key, r.data) for r in records))


def mapping_for(stage: LocalStage, stream: str, **options: Any) -> EventSourceMapping:
    """The consumer's mapping on ``stream`` with real backoff, speaking on the console as `make run` does."""
    options.setdefault("batch_size", 50)
    options.setdefault("retry_delay", 0.2)
    options.setdefault("max_retry_delay", 2.0)
    options.setdefault("say", print)
    mapping = EventSourceMapping(client("kinesis"), stream, lambda_consumer.process_event,
                                 on_failure=sqs_on_failure(client("sqs"), stage.queue_urls["consumer"]),
                                 region="eu-west-1", **options)
    mapping.start("TRIM_HORIZON")
    return mapping


# -- the audit --------------------------------------------------------------------------------------------------
def message_ids(record: TrafficRecord) -> list[str]:
    """The messageIds a well-formed record carries (valid and duplicate records are well-formed)."""
    data = record.data
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    document = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    items = document["batch"] if "batch" in document and "type" not in document else [document]
    return [item["messageId"] for item in items]


@dataclass
class Audit:
    case: str
    sent: int
    lost: int = 0
    duplicated: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.details.get("problems")


def audit(case: str, stage: LocalStage, records: list[TrafficRecord], *, firehose_copies_allowed: int = 0,
          alerts_may_be_missing: bool = False) -> Audit:
    expected_valid: set[str] = set()
    expected_rejected: Counter[str] = Counter()
    for record in records:
        if "valid" in record.expected:
            expected_valid.update(message_ids(record))
        for key, n in record.expected.items():
            if key.startswith("rejected:"):
                expected_rejected[key.removeprefix("rejected:")] += n
    result = Audit(case, sum(r.units for r in records))
    problems: list[str] = []

    with psycopg.connect(stage.postgres.dsn) as conn:
        rows = dict(conn.execute("SELECT message_id, count(*) FROM events GROUP BY 1").fetchall())
    missing_in_postgres = expected_valid - set(rows)
    unexpected_in_postgres = set(rows) - expected_valid
    repeated_rows = sum(n - 1 for n in rows.values())

    s3 = client("s3")
    firehose: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stage.names.processed_bucket):
        for item in page.get("Contents", []):
            for line in s3.get_object(Bucket=stage.names.processed_bucket, Key=item["Key"])["Body"].read().splitlines():
                if line.strip():
                    firehose[orjson.loads(line)["messageId"]] += 1
    missing_in_firehose = set(rows) - set(firehose)
    firehose_extra = sum(n - 1 for n in firehose.values())

    lines = quarantine_lines(stage)
    keys = Counter((line["shardId"], line["sequenceNumber"], line["index"]) for line in lines)
    repeated_lines = sum(n - 1 for n in keys.values())
    by_reason: Counter[str] = Counter()
    for (shard, sequence, index), _n in keys.items():
        reason = next(line["reason"] for line in lines if (line["shardId"], line["sequenceNumber"], line["index"]) ==
                      (shard, sequence, index))
        by_reason[reason] += 1
    missing_rejections = sum((expected_rejected - by_reason).values())
    unexpected_rejections = by_reason - expected_rejected

    sqs = client("sqs")
    queued = {name: int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"][
            "ApproximateNumberOfMessages"]) for name, url in stage.queue_urls.items()}

    alerted = alerted_units(stage)
    quarantined_units = sum(keys.values()) - repeated_lines

    result.lost = len(missing_in_postgres) + len(missing_in_firehose) + missing_rejections
    result.duplicated = repeated_rows + repeated_lines + max(0, firehose_extra - firehose_copies_allowed) \
        + max(0, alerted - quarantined_units)
    if unexpected_in_postgres:
        problems.append(f"{len(unexpected_in_postgres)} rows nobody sent as valid")
    if unexpected_rejections:
        problems.append(f"quarantined beyond the plan: {dict(unexpected_rejections)}")
    if any(queued.values()):
        problems.append(f"on-failure queues not empty: {queued}")
    if not alerts_may_be_missing and alerted != quarantined_units:
        problems.append(f"Sentry heard of {alerted} rejected units, the quarantine holds {quarantined_units}")
    result.details = {"postgres_rows": sum(rows.values()), "expected_valid": len(expected_valid),
                      "missing_in_postgres": sorted(missing_in_postgres)[:5], "repeated_rows": repeated_rows,
                      "firehose_records": sum(firehose.values()), "firehose_extra_copies": firehose_extra,
                      "missing_in_firehose": sorted(missing_in_firehose)[:5], "quarantined": dict(by_reason),
                      "expected_rejected": dict(expected_rejected), "repeated_quarantine_lines": repeated_lines,
                      "alerted_units": alerted, "queued": queued, "problems": problems}
    return result


def alerted_units(stage: LocalStage) -> int:
    """Rejected units Sentry was told about (each report carries the count of its group)."""
    if not stage.sentry_path.exists():
        return 0
    total = 0
    for line in stage.sentry_path.read_bytes().splitlines():
        event = orjson.loads(line)
        if (event.get("fingerprint") or [""])[0] == "tracking-rejection":
            total += int((event.get("extra") or {}).get("count") or 0)
    return total


# -- the one fake: a frozen S3 ----------------------------------------------------------------------------------
class FreezableRelay:
    """A TCP relay put in front of the S3 stand-in (``AWS_ENDPOINT_URL_S3``) that can *freeze*.

    A fake on purpose: moto serves every AWS API from one process, so stopping it (SIGSTOP) would freeze
    Kinesis too, and nothing else makes only S3 hang. Frozen, the relay keeps accepting connections and
    holds whatever the client sends without forwarding it — exactly what a client sees from a hung S3:
    no answer until its read timeout. Thawed, held requests go through late (S3 can apply a request whose
    answer was lost, too).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "FreezableRelay":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        self.flowing.wait()  # a connection made while frozen is accepted, then left hanging
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            downstream.close()
            return
        for source, target in ((downstream, upstream), (upstream, downstream)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            source.settimeout(0.1)  # the other pump may have closed both ends already
            while not self.closed.is_set():
                if not self.flowing.is_set():
                    self.flowing.wait(0.1)
                    continue
                try:
                    data = source.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.close()
                except OSError:
                    pass
