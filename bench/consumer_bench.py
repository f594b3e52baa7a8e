"""Benchmark 6: the whole consumer against a full shard, under AWS-like latencies (issue: keep up with traffic).

The event core alone is fast; what a shard needs is the whole batch — archive put, core, quarantine, the
PostgreSQL COPY and commit, Firehose — done quickly enough to drain 1,000 records/s (a shard's write limit)
with headroom. The production code runs unchanged (the Lambda entry point ``process_event`` over
:class:`~handlers.tracking.consumer.Consumer` and its real sinks); only the clients at the boundary are
replaced by a stated latency model, because the local emulator's own latency (~20 ms a call) is not AWS's:

* S3 ``PutObject``: 30 ms + size / 100 MB/s (conditional writes honoured: the quarantine relies on them);
* Firehose ``PutRecordBatch``: 25 ms per call;
* PostgreSQL: a real server behind a relay that delays every packet 0.5 ms each way (1 ms round trip);
* ``GetRecords``: 10 ms before each batch (the mapping's read; batching window not modelled: the shard is full).

It reports sustained records/s per shard (one batch at a time per shard: ParallelizationFactor 1), the ratio to
the shard's write limit, and the batch latency (p50/p99), for several batch sizes — the stage parameter.
"""
from __future__ import annotations

import socket
import statistics
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from bench.timing import progress
from bench.workloads import Workload
from handlers.core.alerts import ProblemReporter
from handlers.tracking import lambda_consumer
from handlers.tracking.consumer import Consumer
from handlers.tracking.processor import Processor
from handlers.tracking.sinks.firehose import FirehoseSink
from handlers.tracking.sinks.postgres import PostgresSink
from handlers.tracking.sinks.s3objects import Quarantine, RawArchive
from letgo.driver import kinesis_event

SHARD_WRITE_LIMIT = 1000  # records/s a Kinesis shard accepts
GOAL_RATIO = 3.0
S3_PUT_SECONDS, S3_BYTES_PER_SECOND = 0.030, 100e6
FIREHOSE_CALL_SECONDS = 0.025
POSTGRES_ONE_WAY_SECONDS = 0.0005
GET_RECORDS_SECONDS = 0.010


class LatencyS3:
    """put_object with S3's latency and its conditional-write answer; objects kept in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.lock = threading.Lock()

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, IfNoneMatch: str | None = None,  # noqa: N803
                   **_: Any) -> dict[str, Any]:
        time.sleep(S3_PUT_SECONDS + len(Body) / S3_BYTES_PER_SECOND)
        with self.lock:
            if IfNoneMatch == "*" and (Bucket, Key) in self.objects:
                raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
            self.objects[(Bucket, Key)] = Body
        return {}


class LatencyFirehose:
    def __init__(self) -> None:
        self.records = 0

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        time.sleep(FIREHOSE_CALL_SECONDS)
        self.records += len(Records)
        return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": str(i)} for i in range(len(Records))]}


class DelayRelay:
    """A TCP relay to PostgreSQL that delays every chunk by ``one_way`` seconds in each direction."""

    def __init__(self, port: int, one_way: float) -> None:
        self.target, self.one_way = ("127.0.0.1", port), one_way
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                time.sleep(self.one_way)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def _consumer(processor: Processor, dsn: str) -> tuple[Consumer, LatencyS3, LatencyFirehose]:
    s3, firehose = LatencyS3(), LatencyFirehose()
    consumer = Consumer(processor=processor, archive=RawArchive(s3, "raw", "raw"),
                        quarantine=Quarantine(s3, "quarantine", "quarantine"), database=PostgresSink(dsn),
                        warehouse=FirehoseSink(firehose, "processed"),
                        reporter=ProblemReporter.for_catalog("bench", processor.catalog))
    return consumer, s3, firehose


def _as_get_records(workload: Workload) -> list[dict[str, Any]]:
    import base64
    from datetime import datetime, timezone

    return [{"SequenceNumber": r.sequence_number, "PartitionKey": r.partition_key, "Data": base64.b64decode(r.data),
             "ApproximateArrivalTimestamp": datetime.fromtimestamp(r.arrival, timezone.utc)}
            for r in workload.records]


def run(workload: Workload, processor: Processor, dsn: str,
        batch_sizes: tuple[int, ...] = (100, 500)) -> dict[str, Any]:
    """Drain the workload through the Lambda entry point, batch after batch, for each batch size."""
    import psycopg

    records = _as_get_records(workload)
    lambda_consumer.logger.setLevel("WARNING")  # one log line per batch is CloudWatch's, not this table's
    relay_port = int(dsn.rsplit(":", 1)[1].split("/")[0])
    relay = DelayRelay(relay_port, POSTGRES_ONE_WAY_SECONDS)
    relayed = dsn.replace(f":{relay_port}/", f":{relay.port}/")
    results = []
    try:
        for size in batch_sizes:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute("TRUNCATE events, event_ids")
            consumer, s3, firehose = _consumer(processor, relayed)
            lambda_consumer.use(consumer)
            latencies = []
            progress(f"consumer: {len(records):,} records in batches of {size} (latency model on)")
            started = time.perf_counter()
            for i in range(0, len(records), size):
                batch = records[i:i + size]
                time.sleep(GET_RECORDS_SECONDS)
                t0 = time.perf_counter()
                outcome = lambda_consumer.process_event(kinesis_event("shardId-000000000000", batch,
                                                                      stream_arn="arn:bench", region="eu-west-1"))
                latencies.append(time.perf_counter() - t0)
                if outcome.failed_sequence_numbers:
                    raise AssertionError(f"consumer bench: {len(outcome.failed_sequence_numbers)} records failed")
            elapsed = time.perf_counter() - started
            consumer.close()
            per_second = len(records) / elapsed
            latencies.sort()
            results.append({
                "batch_size": size, "records": len(records), "seconds": round(elapsed, 3),
                "records_per_second": round(per_second),
                "ratio_to_shard_limit": round(per_second / SHARD_WRITE_LIMIT, 2),
                "batch_ms_p50": round(1000 * statistics.median(latencies), 1),
                "batch_ms_p99": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
                "firehose_records": firehose.records, "s3_objects": len(s3.objects)})
            progress(f"consumer: batch {size}: {per_second:,.0f} records/s "
                     f"({per_second / SHARD_WRITE_LIMIT:.2f}x a shard's write limit), "
                     f"p99 batch {results[-1]['batch_ms_p99']} ms")
    finally:
        lambda_consumer.reset()
        relay.close()
    return {"workload": workload.name, "latency_model": {
        "s3_put_ms": S3_PUT_SECONDS * 1000, "s3_mb_per_s": S3_BYTES_PER_SECOND / 1e6,
        "firehose_call_ms": FIREHOSE_CALL_SECONDS * 1000, "postgres_round_trip_ms": 2000 * POSTGRES_ONE_WAY_SECONDS,
        "get_records_ms": GET_RECORDS_SECONDS * 1000}, "shard_write_limit": SHARD_WRITE_LIMIT, "goal_ratio": GOAL_RATIO,
        "results": results}
