"""Lanes: stream functions side by side, one thread per mapping, jobs run between two polls of their lane."""
from __future__ import annotations

import threading
import time

import pytest

from letgo.lanes import Lane, drain_side_by_side

pytestmark = pytest.mark.unit


def test_lanes_poll_side_by_side_so_one_slow_function_does_not_hold_the_others():
    slow_started, fast_polls = threading.Event(), []

    def slow() -> int:  # a lane stuck on its sink for a while
        slow_started.set()
        time.sleep(0.3)
        return 1

    def fast() -> int:
        fast_polls.append(time.monotonic())
        return 1

    lanes = [Lane("slow", slow, idle_seconds=0.01), Lane("fast", fast, idle_seconds=0.01)]
    for lane in lanes:
        lane.start()
    slow_started.wait(1)
    time.sleep(0.2)
    for lane in lanes:
        lane.stop(2)
    assert len(fast_polls) > 10  # it went on while the slow lane was busy


def test_a_job_runs_in_its_lane_between_two_polls_never_during_one():
    busy = threading.Lock()
    overlaps = []

    def poll() -> int:
        with busy:
            time.sleep(0.005)
        return 1

    def job() -> str:
        overlaps.append(busy.locked())
        return threading.current_thread().name

    lane = Lane("statistics", poll, idle_seconds=0.01)
    lane.start()
    names = [lane.submit(job).result(2) for _ in range(5)]
    lane.stop(2)
    assert names == ["lane-statistics"] * 5 and overlaps == [False] * 5


def test_an_error_in_a_lane_stops_that_lane_and_is_raised_when_it_is_stopped():
    def broken() -> int:
        raise KeyError("a bug")

    lane = Lane("broken", broken)
    lane.start()
    lane.join(2)
    with pytest.raises(KeyError):
        lane.stop(1)


def test_drain_side_by_side_overlaps_the_waits_and_returns_each_result():
    def drain(name: str):
        return lambda: time.sleep(0.3) or name

    results = drain_side_by_side([("a", drain("a")), ("b", drain("b")), ("c", drain("c"))])
    assert {k: v for k, v in results.items() if k != "_seconds"} == {"a": "a", "b": "b", "c": "c"}
    assert results["_seconds"] < 0.8  # three waits of 0.3 s overlapped, not added
