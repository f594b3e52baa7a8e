"""Tumbling windows on a real moto stream: per-shard windows by arrival time, state, final invokes, faults.

Arrival times come from moto, so several windows need real time to pass: a 2-second window and a sleep to
the next window boundary between sends. Single-window tests use a 900-second window instead.
"""
from __future__ import annotations

import base64
import copy
import math
import os
import time
from collections import Counter, defaultdict
from datetime import datetime

import orjson
import pytest

from handlers.core.aws import client
from letgo.driver import sqs_on_failure
from letgo.producer import put_records
from letgo.windows import TumblingWindowMapping
from tests.stage_kit import send

pytestmark = pytest.mark.functional


def mapping(stage, invoke, *, window_seconds=2, **options) -> TumblingWindowMapping:
    m = TumblingWindowMapping(client("kinesis"), stage.names.stream, invoke, window_seconds=window_seconds,
                              on_failure=sqs_on_failure(client("sqs"), stage.queue_url),
                              region=os.environ["AWS_REGION"], retry_delay=0, **options)
    m.start("LATEST")
    return m


def to_next_window(seconds: float) -> None:
    now = time.time()
    time.sleep(math.floor(now / seconds) * seconds + seconds - now + 0.05)


def away_from_boundary(seconds: float, margin: float = 3.0) -> None:
    """Make sure what is sent next lands in one window of ``seconds``."""
    now = time.time()
    if math.floor(now / seconds) * seconds + seconds - now < margin:
        to_next_window(seconds)


def send_one_shard(stage, payloads) -> None:
    put_records(client("kinesis"), stage.names.stream, [("same-key", p) for p in payloads])


def payloads(event) -> list[bytes]:
    return [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Recorder:
    """A well-behaved window function: counts records and lists payloads in its state."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> dict:
        self.events.append(copy.deepcopy(event))
        if event["isFinalInvokeForWindow"]:
            return {"state": {}, "batchItemFailures": []}
        state = event["state"]
        return {"state": {"count": state.get("count", 0) + len(event["Records"]),
                          "seen": state.get("seen", []) + [p.decode() for p in payloads(event)]},
                "batchItemFailures": []}

    def by_window(self) -> dict[tuple[str, str], list[dict]]:
        grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for event in self.events:
            grouped[(event["shardId"], event["window"]["start"])].append(event)
        return grouped


def test_records_land_in_their_own_arrival_window_with_state_threaded_and_one_final_invoke(stage):
    recorder = Recorder()
    m = mapping(stage, recorder, window_seconds=2, batch_size=7)
    sent = []
    for wave in range(3):
        if wave:
            to_next_window(2)
        batch = [f"w{wave}-r{i}".encode() for i in range(20)]
        send(stage, batch)
        sent += batch
    m.drain()

    # every record delivered exactly once, in a window of its own arrival time, never mixed with another
    delivered = Counter(p for e in recorder.events for p in payloads(e))
    assert delivered == Counter(sent)
    for event in recorder.events:
        start, end = epoch(event["window"]["start"]), epoch(event["window"]["end"])
        assert end - start == 2 and start % 2 == 0
        assert len(event["Records"]) <= 7
        assert event["eventSourceARN"] == m.stream_arn and not event["isWindowTerminatedEarly"]
        for record in event["Records"]:
            assert start <= record["kinesis"]["approximateArrivalTimestamp"] < end
            assert record["eventID"].startswith(event["shardId"] + ":")
    windows = recorder.by_window()
    assert len({start for _, start in windows}) >= 3

    for events in windows.values():
        *batches, final = events
        # exactly one final invoke per (shard, window): the last one, without records, with the full state
        assert [e["isFinalInvokeForWindow"] for e in events] == [False] * len(batches) + [True]
        assert final["Records"] == [] and batches
        # state starts empty and is threaded from one invoke of the window to the next
        assert batches[0]["state"] == {}
        for previous, current in zip(batches, batches[1:]):
            assert current["state"]["count"] == previous["state"].get("count", 0) + len(previous["Records"])
        window_payloads = [p.decode() for e in batches for p in payloads(e)]
        assert final["state"] == {"count": len(window_payloads), "seen": window_payloads}

    # on a shard, a window is closed before the next one opens
    for shard in m.shards:
        starts = [e["window"]["start"] for e in recorder.events if e["shardId"] == shard]
        assert starts == sorted(starts)
    assert m.stats.final_invocations == m.stats.windows_closed == len(windows)
    assert m.stats.invocations == len(recorder.events) and m.windows == {}


def test_a_raised_exception_retries_the_same_records_with_the_same_state(stage):
    away_from_boundary(900)
    calls: list[dict] = []

    def flaky(event):
        calls.append(copy.deepcopy(event))
        if event["isFinalInvokeForWindow"]:
            return {"state": {}}
        if len(calls) == 2:
            event["state"]["count"] = 999  # a function that scribbles on its state and then fails
            raise RuntimeError("boom")
        if len(calls) == 3:
            return {"batchItemFailures": []}  # no state: Lambda counts that as a failed invoke too
        return {"state": {"count": event["state"].get("count", 0) + len(event["Records"])}}

    m = mapping(stage, flaky, window_seconds=900, batch_size=4)
    send_one_shard(stage, [f"r{i}".encode() for i in range(10)])
    m.drain()

    first, failed, invalid, retried = calls[:4]
    assert failed["Records"] == invalid["Records"] == retried["Records"] != first["Records"]
    assert failed["state"] == invalid["state"] == retried["state"] == {"count": 4}
    assert calls[-1]["isFinalInvokeForWindow"] and calls[-1]["state"] == {"count": 10}
    assert m.stats.function_errors == 2 and m.stats.invalid_responses == 1
    assert m.stats.sent_to_on_failure == 0


def test_retries_exhausted_send_the_batch_to_on_failure_and_the_window_keeps_its_state(stage):
    away_from_boundary(900)
    calls: list[dict] = []

    def poisoned(event):
        calls.append(copy.deepcopy(event))
        if b"poison" in payloads(event):
            raise ValueError("poison")
        return {"state": {"count": event["state"].get("count", 0) + len(event["Records"])}}

    m = mapping(stage, poisoned, window_seconds=900, batch_size=3, maximum_retry_attempts=2)
    send_one_shard(stage, [b"a", b"b", b"c", b"d", b"poison", b"f", b"g"])
    m.drain()

    poisoned_calls = [c for c in calls if b"poison" in payloads(c)]
    assert len(poisoned_calls) == 3  # first attempt + 2 retries, whole batch, same state
    assert all(c["state"] == {"count": 3} and payloads(c) == [b"d", b"poison", b"f"] for c in poisoned_calls)
    assert calls[-1]["isFinalInvokeForWindow"] and calls[-1]["state"] == {"count": 4}  # a, b, c + g
    [message] = client("sqs").receive_message(QueueUrl=stage.queue_url, MaxNumberOfMessages=10)["Messages"]
    info = orjson.loads(message["Body"])["KinesisBatchInfo"]
    assert info["batchSize"] == 3 and info["startSequenceNumber"] == poisoned_calls[0]["Records"][0]["kinesis"][
        "sequenceNumber"]
    assert m.stats.sent_to_on_failure == 3


def test_a_partial_failure_resumes_from_the_lowest_failed_record_with_the_prior_state(stage):
    away_from_boundary(900)
    calls: list[dict] = []

    def partial(event):
        calls.append(copy.deepcopy(event))
        state = event["state"]
        if event["isFinalInvokeForWindow"]:
            return {"state": state}
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        new_state = {"seen": state.get("seen", []) + [p.decode() for p in payloads(event)]}
        if len(calls) == 2:  # second batch: items 3 and 1 fail → resume from item 1
            return {"state": {"seen": ["discarded"]},
                    "batchItemFailures": [{"itemIdentifier": seqs[3]}, {"itemIdentifier": seqs[1]}]}
        return {"state": new_state, "batchItemFailures": []}

    m = mapping(stage, partial, window_seconds=900, batch_size=5)
    send_one_shard(stage, [f"r{i}".encode() for i in range(10)])
    m.drain()

    first, failing, resumed, final = calls
    assert payloads(failing) == [b"r5", b"r6", b"r7", b"r8", b"r9"]
    assert payloads(resumed) == [b"r6", b"r7", b"r8", b"r9"]
    assert failing["state"] == resumed["state"] == {"seen": ["r0", "r1", "r2", "r3", "r4"]}
    assert final["isFinalInvokeForWindow"] and final["Records"] == []
    assert final["state"] == {"seen": ["r0", "r1", "r2", "r3", "r4", "r6", "r7", "r8", "r9"]}
    assert m.stats.partial_failures == 1 and m.stats.records_delivered == 10


def test_flush_closes_open_windows_and_drops_their_state(stage):
    away_from_boundary(900)
    recorder = Recorder()
    m = mapping(stage, recorder, window_seconds=900, batch_size=50)
    send(stage, [f"r{i}".encode() for i in range(20)])
    while m.poll():
        pass
    assert recorder.events and not any(e["isFinalInvokeForWindow"] for e in recorder.events)
    open_shards = set(m.windows)
    assert open_shards == {e["shardId"] for e in recorder.events}

    assert m.flush() == len(open_shards)
    finals = [e for e in recorder.events if e["isFinalInvokeForWindow"]]
    assert {e["shardId"] for e in finals} == open_shards and len(finals) == len(open_shards)
    assert sum(e["state"]["count"] for e in finals) == 20 and all(e["Records"] == [] for e in finals)
    assert m.windows == {} and m.flush() == 0 and m.stats.windows_closed == len(open_shards)

    # the same window seen again after a flush starts from an empty state
    send_one_shard(stage, [b"late"])
    m.drain()
    late = [e for e in recorder.events if payloads(e) == [b"late"]]
    assert len(late) == 1 and late[0]["state"] == {}


def test_a_clock_past_the_window_end_closes_it_when_the_shard_is_caught_up(stage):
    away_from_boundary(900)
    recorder = Recorder()
    now = [time.time()]
    m = mapping(stage, recorder, window_seconds=900, clock=lambda: now[0])
    send_one_shard(stage, [b"a", b"b"])
    m.poll()
    assert m.stats.final_invocations == 0 and len(m.windows) == 1
    now[0] += 900
    m.poll()
    assert m.stats.final_invocations == 1 and m.windows == {}
    assert recorder.events[-1]["isFinalInvokeForWindow"] and recorder.events[-1]["state"]["count"] == 2


def test_a_state_over_the_size_limit_terminates_the_window_early(stage):
    away_from_boundary(900)
    recorder = Recorder()
    m = mapping(stage, recorder, window_seconds=900, batch_size=2, max_state_bytes=40)
    send_one_shard(stage, [b"aaaaaaaaaa", b"bbbbbbbbbb", b"c"])
    m.drain()
    flags = [(len(e["Records"]), e["isFinalInvokeForWindow"], e["isWindowTerminatedEarly"], e["state"])
             for e in recorder.events]
    assert flags == [(2, False, False, {}),
                     (0, True, True, {"count": 2, "seen": ["aaaaaaaaaa", "bbbbbbbbbb"]}),
                     (1, False, False, {}),
                     (0, True, False, {"count": 1, "seen": ["c"]})]
    assert len({e["window"]["start"] for e in recorder.events}) == 1
    assert m.stats.windows_terminated_early == 1


def test_window_seconds_is_bounded_like_tumbling_window_in_seconds(stage):
    for bad in (0, 901, 1.5):
        with pytest.raises(ValueError):
            TumblingWindowMapping(client("kinesis"), stage.names.stream, Recorder(), window_seconds=bad)
