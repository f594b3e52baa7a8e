"""The KCL record processor on a real moto server and a real PostgreSQL, driven like kclpy drives it.

amazon-kclpy cannot be installed here (its build downloads the KCL jars), so these tests play the part of
``amazon_kclpy.kcl.KCLProcess``: they call the v3 methods (initialize / process_records / lease_lost /
shard_ended / shutdown_requested) with stand-ins carrying the attributes of kclpy's input classes
(``amazon_kclpy.messages``). The records are real: put on the local stream with the producer and read back
with GetRecords, so sequence numbers, partition keys and arrival times are Kinesis's own. The checkpointer
stands for the MultiLangDaemon: it records every checkpoint and what PostgreSQL held at that moment.

Faults are real where they can be: PostgreSQL is really stopped. The Firehose partial failure reuses
``FlakyFirehose`` from test_event_path — the only fake, because moto cannot make PutRecordBatch reject
some entries.
"""
from __future__ import annotations

import base64
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from handlers.core.aws import client
from handlers.tracking.consumer import Consumer, ConsumerConfig, build_consumer
from handlers.tracking.kcl_consumer import ShardHalted, TrackingRecordProcessor
from letgo.producer import put_records
from tests.stage_kit import inventory, pg_message_ids
from tests.functional.test_event_path import FlakyFirehose, lead

pytestmark = pytest.mark.functional

PARTITION_KEY = "kcl-device-1"  # one key: every record lands on one shard, in order, as one lease sees it


# -- stand-ins for kclpy's plain input objects (amazon_kclpy.messages) ------------------------------------
@dataclass(frozen=True)
class KclRecord:
    """Mirrors amazon_kclpy.messages.Record: the daemon sends base64 ``data`` and arrival in epoch millis."""

    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: str
    timestamp_millis: int

    @property
    def binary_data(self) -> bytes:
        return base64.b64decode(self.data)

    @property
    def approximate_arrival_timestamp(self) -> datetime:
        # kclpy turns the daemon's epoch milliseconds into a naive local datetime, exactly like this
        return datetime.fromtimestamp(self.timestamp_millis / 1000.0)


@dataclass
class RecordingCheckpointer:
    """Stands for the MultiLangDaemon's side of Checkpointer.checkpoint(sequence_number, sub_sequence_number)."""

    stage: Any
    checkpoints: list[str | None] = field(default_factory=list)
    rows_at_checkpoint: list[list[str] | None] = field(default_factory=list)

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.checkpoints.append(sequence_number)
        try:
            self.rows_at_checkpoint.append(pg_message_ids(self.stage))
        except psycopg.OperationalError:
            self.rows_at_checkpoint.append(None)  # PostgreSQL down when the checkpoint was taken


def initialize_input(shard_id: str) -> SimpleNamespace:
    return SimpleNamespace(action="initialize", shard_id=shard_id, sequence_number="LATEST", sub_sequence_number=0)


def process_records_input(records: list[KclRecord], checkpointer: RecordingCheckpointer) -> SimpleNamespace:
    return SimpleNamespace(action="processRecords", records=records, checkpointer=checkpointer,
                           millis_behind_latest=0)


# -- real records from the local stream ---------------------------------------------------------------------
def put_and_read(stage, payloads: list[bytes]) -> tuple[str, list[KclRecord]]:
    """Put the payloads on the stream and read them back from LATEST iterators taken before sending."""
    kinesis = client("kinesis")
    description = kinesis.describe_stream(StreamName=stage.names.stream)["StreamDescription"]
    shards = [s["ShardId"] for s in description["Shards"]]
    latest = {shard: kinesis.get_shard_iterator(StreamName=stage.names.stream, ShardId=shard,
                                                ShardIteratorType="LATEST")["ShardIterator"] for shard in shards}
    put_records(kinesis, stage.names.stream, [(PARTITION_KEY, p) for p in payloads])
    found: dict[str, list[dict[str, Any]]] = {}
    for shard, iterator in latest.items():
        records: list[dict[str, Any]] = []
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator)
            if not response["Records"]:
                break
            records.extend(response["Records"])
            iterator = response.get("NextShardIterator")
        if records:
            found[shard] = records
    assert len(found) == 1, f"one partition key must map to one shard, got {list(found)}"
    (shard, records), = found.items()
    assert len(records) == len(payloads)
    return shard, [KclRecord(sequence_number=r["SequenceNumber"], sub_sequence_number=0,
                             partition_key=r["PartitionKey"], data=base64.b64encode(r["Data"]).decode("ascii"),
                             timestamp_millis=int(r["ApproximateArrivalTimestamp"].timestamp() * 1000))
                   for r in records]


def new_processor(stage, shard: str, *, wrap=None, **options) -> TrackingRecordProcessor:
    """A processor as the consumer image builds it, initialized for ``shard`` like the daemon does."""

    def factory() -> Consumer:
        consumer = build_consumer(ConsumerConfig.from_env())
        return wrap(consumer) if wrap else consumer

    processor = TrackingRecordProcessor(factory, **options)
    processor.initialize(initialize_input(shard))
    return processor


# -- tests --------------------------------------------------------------------------------------------------
def test_process_records_healthy_sinks_checkpoint_once_at_last_record_after_rows_committed(stage):
    ids = [str(uuid.uuid4()) for _ in range(25)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    sleeps: list[float] = []
    processor = new_processor(stage, shard, sleep=sleeps.append)
    checkpointer = RecordingCheckpointer(stage)

    processor.process_records(process_records_input(records, checkpointer))

    assert checkpointer.checkpoints == [records[-1].sequence_number]
    assert checkpointer.rows_at_checkpoint == [sorted(ids)]  # the rows were committed before the checkpoint
    assert sleeps == []
    assert pg_message_ids(stage) == sorted(ids)
    inv = inventory(stage)
    assert inv.archived == 25 and inv.firehose_distinct == inv.firehose_records == 25


def test_process_records_postgres_down_then_back_retries_and_checkpoints_only_after_success(stage):
    ids = [str(uuid.uuid4()) for _ in range(40)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    checkpointer = RecordingCheckpointer(stage)
    sleeps: list[float] = []

    def restart_postgres_on_first_backoff(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            assert checkpointer.checkpoints == []  # nothing checkpointed while PostgreSQL was down
            stage.postgres.start()

    processor = new_processor(stage, shard, sleep=restart_postgres_on_first_backoff, backoff_seconds=0.5)
    stage.postgres.stop()
    try:
        processor.process_records(process_records_input(records, checkpointer))
    finally:
        if not sleeps:  # never retried: bring PostgreSQL back for the other tests
            stage.postgres.start()

    assert sleeps == [0.5]
    assert checkpointer.checkpoints == [records[-1].sequence_number]
    assert checkpointer.rows_at_checkpoint == [sorted(ids)]
    assert pg_message_ids(stage) == sorted(ids)  # each row exactly once (message_id is unique per event)
    inv = inventory(stage)
    assert inv.postgres_rows == 40 and inv.firehose_distinct == inv.firehose_records == 40


def test_process_records_postgres_down_waits_without_checkpoint_then_delivers_once(stage):
    """An outage is not bad data: the processor holds the batch (and the lease) and backs off for as long as
    PostgreSQL is down — no checkpoint, nothing committed, nothing sent on, nothing quarantined."""
    ids = [str(uuid.uuid4()) for _ in range(20)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    checkpointer = RecordingCheckpointer(stage)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # PostgreSQL comes back after the fourth backoff
        sleeps.append(seconds)
        assert checkpointer.checkpoints == []  # held: nothing checkpointed while PostgreSQL is down
        if len(sleeps) == 4:
            stage.postgres.start()

    processor = new_processor(stage, shard, sleep=sleep, max_attempts=2, backoff_seconds=0.5)
    stage.postgres.stop()
    try:
        processor.process_records(process_records_input(records, checkpointer))
    finally:
        if not stage.postgres.running():
            stage.postgres.start()
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # capped exponential backoff, past max_attempts: outages never halt
    assert processor.waits == 4
    assert checkpointer.checkpoints == [records[-1].sequence_number]
    assert checkpointer.rows_at_checkpoint == [sorted(ids)]
    inv = inventory(stage)
    assert inv.firehose_records == inv.firehose_distinct == 20 and inv.quarantined == 0


def test_process_records_firehose_partial_failure_checkpoints_before_lowest_failed_then_at_last(stage):
    bad = [b"not json", lead(price=-1), lead(channel="pigeon")]  # quarantined: they reach no sink
    ids = [str(uuid.uuid4()) for _ in range(30)]
    shard, records = put_and_read(stage, bad + [lead(i) for i in ids])
    flaky: list[FlakyFirehose] = []

    def with_flaky_firehose(consumer: Consumer) -> Consumer:
        # FlakyFirehose (test_event_path) is the one fake: moto cannot reject only some PutRecordBatch entries.
        # It rejects every third entry, the first included, of its first N calls; N = two whole FirehoseSink.put
        # calls, so the failure outlives the sink's own entry retries on the processor's first two attempts.
        flaky.append(FlakyFirehose(consumer.warehouse.firehose, failing_calls=2 * consumer.warehouse.max_attempts))
        consumer.warehouse.firehose = flaky[0]
        consumer.warehouse.sleep = lambda _s: None
        return consumer

    checkpointer = RecordingCheckpointer(stage)
    sleeps: list[float] = []
    processor = new_processor(stage, shard, wrap=with_flaky_firehose, sleep=sleeps.append, backoff_seconds=0.5)

    processor.process_records(process_records_input(records, checkpointer))

    # the lowest failed record is the first good event (records[3]): checkpoint just before it, then, once
    # the retries got through, at the last record
    assert checkpointer.checkpoints == [records[2].sequence_number, records[-1].sequence_number]
    assert ids[0] not in checkpointer.rows_at_checkpoint[0]  # the failed event's row was not committed
    assert checkpointer.rows_at_checkpoint[-1] == sorted(ids)
    assert sleeps == [0.5, 1.0]
    assert [bool(o.failed_sequence_numbers) for o in processor.outcomes] == [True, True, False]
    assert flaky[0].calls == flaky[0].failing_calls + 1  # every faulty call was used, then one healthy one
    assert pg_message_ids(stage) == sorted(ids)  # each event once
    inv = inventory(stage)
    assert inv.firehose_distinct == 30 and inv.firehose_records == 30  # each event reached Firehose once
    assert inv.archived == 33 and inv.quarantined == 3


@pytest.mark.parametrize("method, action", [("shard_ended", "shardEnded"),
                                            ("shutdown_requested", "shutdownRequested")])
def test_shutdown_paths_shard_end_or_requested_checkpoint_without_sequence_number(stage, method, action):
    shard, records = put_and_read(stage, [lead() for _ in range(3)])
    processor = new_processor(stage, shard, sleep=lambda _s: None)
    processor.process_records(process_records_input(records, RecordingCheckpointer(stage)))
    checkpointer = RecordingCheckpointer(stage)

    getattr(processor, method)(SimpleNamespace(action=action, checkpointer=checkpointer))

    assert checkpointer.checkpoints == [None]  # checkpoint(): at the end of what the daemon delivered


def test_lease_lost_after_a_batch_does_not_checkpoint(stage):
    shard, records = put_and_read(stage, [lead() for _ in range(3)])
    processor = new_processor(stage, shard, sleep=lambda _s: None)
    checkpointer = RecordingCheckpointer(stage)
    processor.process_records(process_records_input(records, checkpointer))
    assert checkpointer.checkpoints == [records[-1].sequence_number]

    # kclpy's LeaseLostInput carries no checkpointer; checkpointing is impossible once the lease is gone
    processor.lease_lost(SimpleNamespace(action="leaseLost"))

    assert checkpointer.checkpoints == [records[-1].sequence_number]


def kclpy_perform_action(call, *args) -> None:
    """What amazon_kclpy.kcl.KCLProcess._perform_action does with a processor's exception: print, go on.

    It then reports the action as done, so the daemon moves to the next batch; it does not restart the shard.
    """
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - mirrors kclpy's bare except
        traceback.print_exc()


def test_process_records_persistent_failure_halts_past_kclpy_so_the_shard_restarts_from_checkpoint(stage):
    """kclpy swallows ``Exception``; ShardHalted is a BaseException, so the process ends instead of moving on,
    and the restarted processor gets the same records again from the last checkpoint."""
    first_ids = [str(uuid.uuid4()) for _ in range(10)]
    shard, first = put_and_read(stage, [lead(i) for i in first_ids])

    def with_a_bug(consumer: Consumer) -> Consumer:
        # A fake, on purpose: a bug in the consumer (not an outage, which is waited out) cannot be produced
        # with the real parts, so the batch handler raises a plain error here.
        def broken(records: Any) -> Any:
            raise KeyError("a bug")
        consumer.handle = broken  # type: ignore[method-assign]
        return consumer

    processor = new_processor(stage, shard, wrap=with_a_bug, sleep=lambda _s: None, max_attempts=2)
    checkpointer = RecordingCheckpointer(stage)
    with pytest.raises(ShardHalted):
        kclpy_perform_action(processor.process_records, process_records_input(first, checkpointer))
    assert checkpointer.checkpoints == []
    # WHEN the daemon restarts the processor, the lease resumes at the last checkpoint: the same records
    restarted = new_processor(stage, shard, sleep=lambda _s: None, max_attempts=2)
    kclpy_perform_action(restarted.process_records, process_records_input(first, checkpointer))
    assert checkpointer.checkpoints == [first[-1].sequence_number]
    assert checkpointer.rows_at_checkpoint[-1] == sorted(first_ids)
