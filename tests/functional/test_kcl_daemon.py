"""The consumer image's record processor process, driven by a stand-in for the KCL MultiLangDaemon.

amazon-kclpy cannot be installed here (its build downloads the KCL jars), so ``Daemon`` plays the daemon's part
of its documented line protocol: it starts the real entry point, ``python -m handlers.tracking.kcl_consumer``
(what ``executableName`` names in the image's consumer.properties), writes ``initialize`` / ``processRecords`` /
``leaseLost`` / ``shardEnded`` / ``shutdownRequested`` to its stdin, answers every ``checkpoint`` request (or
refuses it, naming the daemon's exception), and expects ``{"action": "status", "responseFor": ...}`` after each
message — with nothing else on stdout. The records are real (put on the local stream, read back), the sinks are
real (moto's S3 and Firehose, PostgreSQL); the one fault injected in code is the bug that halts a shard.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.functional.test_event_path import lead
from tests.functional.test_kcl_consumer import KclRecord, put_and_read
from tests.stage_kit import pg_message_ids

pytestmark = pytest.mark.functional
ENTRY = [sys.executable, "-m", "handlers.tracking.kcl_consumer"]
WITH_A_BUG = [sys.executable, "-c", (
    "from handlers.tracking import consumer\n"
    "def broken(self, records):\n    raise KeyError('a bug')\n"
    "consumer.Consumer.handle = broken  # a bug in the batch handler: not an outage\n"
    "from handlers.tracking.kcl_consumer import main\nraise SystemExit(main())\n")]
FAST = {"KCL_BUG_ATTEMPTS": "2", "KCL_BACKOFF_SECONDS": "0.2", "KCL_MAX_BACKOFF_SECONDS": "0.5"}


@dataclass
class Daemon:
    """The MultiLangDaemon's side of one record processor process."""

    stage: Any
    command: list[str] = field(default_factory=lambda: list(ENTRY))
    refuse: list[str] = field(default_factory=list)  # exception names for the next checkpoint answers
    checkpoints: list[tuple[str | None, list[str] | None]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stderr = tempfile.TemporaryFile("w+")  # the process's log (a pipe could fill up and block it)
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, env={**os.environ, **FAST})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # stdout closed: the process ended

    def _line(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line == "":
                return None
            if line.strip():
                return json.loads(line)  # anything on stdout that is not a protocol message fails here
        raise AssertionError(f"no answer from the record processor within {timeout} s")

    def quiet_for(self, seconds: float) -> bool:
        """Nothing written on stdout for ``seconds`` (the processor holds its batch)."""
        time.sleep(seconds)
        return all(not line.strip() for line in list(self.lines.queue))

    def send(self, message: dict[str, Any], timeout: float = 60) -> bool:
        """Write one message; answer its checkpoints; True once its status came, False if the process ended."""
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        while (answer := self._line(timeout)) is not None:
            if answer["action"] == "checkpoint":
                rows = pg_message_ids(self.stage) if self.stage.postgres.running() else None
                self.checkpoints.append((answer["sequenceNumber"], rows))
                reply = {"action": "checkpoint", "sequenceNumber": answer["sequenceNumber"],
                         "subSequenceNumber": answer["subSequenceNumber"]}
                if self.refuse:
                    reply["error"] = self.refuse.pop(0)
                self.process.stdin.write(json.dumps(reply) + "\n")
                self.process.stdin.flush()
                continue
            assert answer == {"action": "status", "responseFor": message["action"]}, answer
            self.answered.append(message["action"])
            return True
        return False

    def close(self) -> tuple[int, str]:
        self.process.stdin.close()
        code = self.process.wait(timeout=30)
        self.stderr.seek(0)
        return code, self.stderr.read()


def initialize(shard: str) -> dict[str, Any]:
    return {"action": "initialize", "shardId": shard, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}


def process_records(records: list[KclRecord]) -> dict[str, Any]:
    return {"action": "processRecords", "millisBehindLatest": 0, "records": [
        {"action": "record", "data": r.data, "partitionKey": r.partition_key, "sequenceNumber": r.sequence_number,
         "subSequenceNumber": r.sub_sequence_number, "approximateArrivalTimestamp": r.timestamp_millis}
        for r in records]}


def test_a_shard_from_initialize_to_shard_end_checkpoints_after_the_rows_are_committed(stage):
    ids = [str(uuid.uuid4()) for _ in range(12)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    daemon = Daemon(stage)
    assert daemon.send(initialize(shard))
    assert daemon.send(process_records(records[:5]))
    assert daemon.send(process_records(records[5:]))
    assert daemon.send({"action": "shardEnded"})
    code, stderr = daemon.close()
    assert code == 0, stderr[-2000:]
    assert daemon.answered == ["initialize", "processRecords", "processRecords", "shardEnded"]
    assert [seq for seq, _ in daemon.checkpoints] == [records[4].sequence_number, records[-1].sequence_number, None]
    assert daemon.checkpoints[0][1] == sorted(ids[:5])  # committed before the checkpoint was asked for
    assert daemon.checkpoints[1][1] == sorted(ids)


def test_a_bug_ends_the_process_without_a_checkpoint_and_the_next_one_resumes_from_the_last(stage):
    ids = [str(uuid.uuid4()) for _ in range(6)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    faulty = Daemon(stage, command=WITH_A_BUG)
    assert faulty.send(initialize(shard))
    assert faulty.send(process_records(records)) is False  # no status: the process ended instead
    code, stderr = faulty.close()
    assert code == 2 and "shard halted" in stderr and "KeyError" in stderr
    assert faulty.checkpoints == [] and pg_message_ids(stage) == []  # nothing skipped, nothing written

    # WHEN the daemon starts a new process, the lease resumes at the last checkpoint: the same records
    daemon = Daemon(stage)
    assert daemon.send(initialize(shard)) and daemon.send(process_records(records))
    assert daemon.close()[0] == 0
    assert daemon.checkpoints == [(records[-1].sequence_number, sorted(ids))]


def test_a_checkpoint_refused_because_the_lease_moved_stops_quietly_then_lease_lost(stage):
    shard, records = put_and_read(stage, [lead() for _ in range(4)])
    daemon = Daemon(stage, refuse=["ShutdownException"])
    assert daemon.send(initialize(shard)) and daemon.send(process_records(records))
    assert daemon.send({"action": "leaseLost"})
    code, stderr = daemon.close()
    assert code == 0 and "the new owner resumes from the last checkpoint" in stderr
    assert [seq for seq, _ in daemon.checkpoints] == [records[-1].sequence_number]  # asked once, not retried


def test_a_throttled_checkpoint_is_asked_again(stage):
    shard, records = put_and_read(stage, [lead() for _ in range(3)])
    daemon = Daemon(stage, refuse=["ThrottlingException"])
    assert daemon.send(initialize(shard)) and daemon.send(process_records(records))
    assert daemon.send({"action": "shutdownRequested"})
    assert daemon.close()[0] == 0
    assert [seq for seq, _ in daemon.checkpoints] == [records[-1].sequence_number] * 2 + [None]


def test_postgres_down_the_process_holds_the_batch_and_checkpoints_once_it_is_back(stage):
    ids = [str(uuid.uuid4()) for _ in range(8)]
    shard, records = put_and_read(stage, [lead(i) for i in ids])
    daemon = Daemon(stage)
    assert daemon.send(initialize(shard))
    stage.postgres.stop()
    try:
        daemon.process.stdin.write(json.dumps(process_records(records)) + "\n")
        daemon.process.stdin.flush()
        assert daemon.quiet_for(3.0), "the processor answered while PostgreSQL was down"  # holding: no checkpoint
    finally:
        stage.postgres.start()
    answer = daemon._line(60)
    assert answer["action"] == "checkpoint" and answer["sequenceNumber"] == records[-1].sequence_number
    assert pg_message_ids(stage) == sorted(ids)
    daemon.process.stdin.write(json.dumps({"action": "checkpoint", "sequenceNumber": answer["sequenceNumber"],
                                           "subSequenceNumber": None}) + "\n")
    daemon.process.stdin.flush()
    assert daemon._line(30) == {"action": "status", "responseFor": "processRecords"}
    code, stderr = daemon.close()
    assert code == 0 and "waiting for postgres" in stderr
