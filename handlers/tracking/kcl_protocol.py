"""The KCL MultiLangDaemon's line protocol, spoken by the consumer image's record processor process.

The daemon (Java, the KCL jars that ``amazon-kclpy`` installs) owns leases and checkpoints; for each shard it
starts ``executableName`` (``python -m handlers.tracking.kcl_consumer``) and talks to it in JSON, one message
per line: it writes ``initialize``, ``processRecords``, ``leaseLost``, ``shardEnded``, ``shutdownRequested``
(``shutdown`` with a reason on older daemons) to the process's stdin; the process answers each with
``{"action": "status", "responseFor": <action>}`` on stdout, and in between may ask
``{"action": "checkpoint", "sequenceNumber": s, "subSequenceNumber": n}``, to which the daemon replies with a
``checkpoint`` message carrying ``error`` (an exception name such as ``ShutdownException``) when it failed.

Why our own ~100 lines rather than ``amazon_kclpy.kcl.KCLProcess``: kclpy cannot be installed where this project
is built and tested (its build downloads the jars), so its Python side could only ever run in production,
untested; and ``KCLProcess`` catches every ``Exception`` from a processor, prints it and reports the batch done —
the next checkpoint would silently cover records that never reached a sink. Here a processor's exception ends
the process: the daemon starts a new one and the lease resumes from the last checkpoint. The inputs handed to
the processor carry the attributes of kclpy's v3 input classes (``shard_id``, ``records``, ``checkpointer``,
records with ``data``/``binary_data``, ``sequence_number``, ``partition_key``,
``approximate_arrival_timestamp``), so the same processor also runs under kclpy. The image still installs
amazon-kclpy, for the jars and the daemon (deploy/kcl-consumer/).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any


class CheckpointError(Exception):
    """The daemon refused a checkpoint; ``value`` names its exception (kclpy's CheckpointError has the same)."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class DaemonGone(BaseException):
    """stdin closed while waiting for the daemon's answer: nothing more can be checkpointed; end the process."""


class Channel:
    """One JSON message per line in, one per line out (each written between newlines and flushed at once)."""

    def __init__(self, inbound: IO[str], outbound: IO[str]) -> None:
        self.inbound, self.outbound = inbound, outbound

    def read(self) -> dict[str, Any] | None:
        for line in self.inbound:
            if line.strip():
                return json.loads(line)
        return None

    def write(self, message: dict[str, Any]) -> None:
        # a line of its own even if something else wrote to stdout without a newline (kclpy does the same)
        self.outbound.write("\n" + json.dumps(message) + "\n")
        self.outbound.flush()


@dataclass(frozen=True)
class Record:
    """A record as the daemon sends it: base64 ``data``, arrival in epoch milliseconds."""

    data: str
    partition_key: str
    sequence_number: str
    sub_sequence_number: int | None
    timestamp_millis: int

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "Record":
        return cls(message["data"], message["partitionKey"], message["sequenceNumber"],
                   message.get("subSequenceNumber"), int(message["approximateArrivalTimestamp"]))

    @property
    def binary_data(self) -> bytes:
        return base64.b64decode(self.data)

    @property
    def approximate_arrival_timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_millis / 1000.0)  # naive local time, as kclpy gives it


class Checkpointer:
    """Asks the daemon to checkpoint and waits for its answer; a refusal raises :class:`CheckpointError`."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.channel.write({"action": "checkpoint", "sequenceNumber": sequence_number,
                            "subSequenceNumber": sub_sequence_number})
        answer = self.channel.read()
        if answer is None:
            raise DaemonGone("the daemon closed stdin while a checkpoint was pending")
        if answer.get("action") != "checkpoint":
            raise CheckpointError("InvalidStateException")  # the daemon answered something else: out of step
        if answer.get("error"):
            raise CheckpointError(str(answer["error"]))


@dataclass
class Input:
    """What a processor method receives (the attributes of kclpy's v3 inputs that apply to ``action``)."""

    action: str
    checkpointer: Checkpointer | None = None
    shard_id: str | None = None
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    records: list[Record] = field(default_factory=list)
    millis_behind_latest: int | None = None


def dispatch(processor: Any, message: dict[str, Any], checkpointer: Checkpointer) -> None:
    action = message["action"]
    if action == "initialize":
        processor.initialize(Input(action, shard_id=message["shardId"], sequence_number=message.get("sequenceNumber"),
                                   sub_sequence_number=message.get("subSequenceNumber")))
    elif action == "processRecords":
        processor.process_records(Input(action, checkpointer, records=[Record.from_message(r)
                                                                       for r in message["records"]],
                                        millis_behind_latest=message.get("millisBehindLatest")))
    elif action == "leaseLost" or (action == "shutdown" and message.get("reason") == "ZOMBIE"):
        processor.lease_lost(Input(action))
    elif action == "shardEnded" or action == "shutdown":  # an older daemon's shutdown(TERMINATE)
        processor.shard_ended(Input(action, checkpointer))
    elif action == "shutdownRequested":
        processor.shutdown_requested(Input(action, checkpointer))
    else:
        raise ValueError(f"the MultiLangDaemon sent an unknown action {action!r}")


def run(processor: Any, inbound: IO[str], outbound: IO[str]) -> None:
    """Serve the daemon until it closes stdin: each message dispatched, then its status written."""
    channel = Channel(inbound, outbound)
    checkpointer = Checkpointer(channel)
    while (message := channel.read()) is not None:
        dispatch(processor, message, checkpointer)  # an exception ends the process: the lease resumes elsewhere
        channel.write({"action": "status", "responseFor": message["action"]})
