"""The local twin of a Kinesis event source mapping with ``TumblingWindowInSeconds``: stateful windows.

Reuses :class:`~letgo.driver.EventSourceMapping` for positioning and polling; only delivery differs.
Per shard, records are cut at window boundaries aligned to their *arrival* time
(``start = floor(ApproximateArrivalTimestamp / window_seconds) * window_seconds``) and each invoke carries
at most ``batch_size`` records of ONE window plus that window's state, as Lambda sends it::

    {"Records": [...], "window": {"start": "2024-01-01T00:00:00Z", "end": "..."}, "state": {...},
     "shardId": ..., "eventSourceARN": ..., "isFinalInvokeForWindow": false, "isWindowTerminatedEarly": false}

The function returns ``{"state": {...}, "batchItemFailures": [...]}``; the state is kept for the next invoke
of that window on that shard. A window is closed by a final invoke (no records, ``isFinalInvokeForWindow``)
when a record of another window shows up on its shard, when ``flush()`` is called (``drain()`` ends with
one), or — if a ``clock`` is given — when a poll finds the shard caught up and the clock is past the
window's end. The closed window's state is dropped.

Failures, as in AWS:

* a response without ``state`` is a failed invoke (Lambda's rule), like an exception: the same records are
  retried with the same state (capped backoff) until ``maximum_retry_attempts`` or ``maximum_record_age_seconds``
  (-1 each by default: no limit, as in AWS) run out, then their metadata goes to ``on_failure``
  and the window goes on with the state it had (no bisecting: a window's batch is retried whole);
* ``batchItemFailures`` resume from the lowest failed sequence number with the state from *before* the
  invoke (the failed invoke's state is discarded); an unknown item identifier fails the whole batch;
* a state larger than ``max_state_bytes`` (1 MB in AWS) terminates the window early: a final invoke with
  ``isWindowTerminatedEarly`` and the rest of the window starts again from ``{}``;
* a failing final invoke (the metrics database down, say) is retried with capped backoff, like any invoke,
  while the shard waits; when attempts or the records' maximum age run out, the window's coordinates —
  shard, first and last sequence number, window start and end — go to ``on_failure`` and it is counted in
  ``stats.final_failures``: ``letgo recover`` recomputes the whole window from the stream or the archive.
  What a final invoke returns is ignored, since the window's state is dropped anyway.

``stats.invocations`` counts every invoke of the function, final ones included.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson

from letgo.driver import EventSourceMapping, MappingStats

WindowInvoke = Callable[[dict[str, Any]], Any]  # returns {"state": {...}, "batchItemFailures": [...]}

MAX_WINDOW_SECONDS = 900
MAX_STATE_BYTES = 1024 * 1024


@dataclass
class WindowStats(MappingStats):
    final_invocations: int = 0
    windows_opened: int = 0
    windows_closed: int = 0
    windows_terminated_early: int = 0
    final_failures: int = 0
    invalid_responses: int = 0


@dataclass
class OpenWindow:
    start: int
    end: int
    state: dict[str, Any] = field(default_factory=dict)
    first: dict[str, Any] | None = None  # the window's first and last record (coordinates for recovery)
    last: dict[str, Any] | None = None


class InvalidWindowResponse(Exception):
    """The function answered without a ``state`` object: Lambda counts that as a failed invoke."""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TumblingWindowMapping(EventSourceMapping):
    def __init__(self, kinesis: Any, stream_name: str, invoke: WindowInvoke, *, window_seconds: int,
                 batch_size: int = 100, maximum_retry_attempts: int = -1,
                 clock: Callable[[], float] | None = None, max_state_bytes: int = MAX_STATE_BYTES,
                 **options: Any) -> None:
        if not 0 < window_seconds <= MAX_WINDOW_SECONDS or int(window_seconds) != window_seconds:
            raise ValueError(f"window_seconds must be a whole number of seconds in 1..{MAX_WINDOW_SECONDS}")
        options.pop("bisect_on_error", None)  # a window's batch is retried whole
        super().__init__(kinesis, stream_name, invoke, batch_size=batch_size,
                         maximum_retry_attempts=maximum_retry_attempts, bisect_on_error=False, **options)
        self.window_seconds, self.clock, self.max_state_bytes = int(window_seconds), clock, max_state_bytes
        self.windows: dict[str, OpenWindow] = {}  # shard → its one open window
        self.stats: WindowStats = WindowStats()
        self._read: dict[str, int] = {}

    # -- polling ----------------------------------------------------------------------------------------
    def poll(self) -> int:
        now = self.clock() if self.clock is not None else None
        self._read = {}
        handled = super().poll()
        if now is not None:
            for shard, window in list(self.windows.items()):
                caught_up = self._read.get(shard, 0) < self.batch_size
                if caught_up and window.end <= now:
                    self._close(shard)
        return handled

    def drain(self, idle_polls: int = 2, progress: Callable[[int], None] | None = None) -> int:
        total = super().drain(idle_polls, progress)
        self.flush()
        return total

    def flush(self) -> int:
        """Close every open window (final invoke); returns how many were closed."""
        shards = list(self.windows)
        for shard in shards:
            self._close(shard)
        return len(shards)

    def __enter__(self) -> "TumblingWindowMapping":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()

    def feed(self, shard: str, records: list[dict[str, Any]]) -> None:
        """Deliver records that come from elsewhere than GetRecords (the raw archive, in a replay)."""
        self._deliver(shard, records)

    # -- windows ----------------------------------------------------------------------------------------
    def window_start(self, record: dict[str, Any]) -> int:
        arrival = record["ApproximateArrivalTimestamp"].timestamp()
        return math.floor(arrival / self.window_seconds) * self.window_seconds

    def window_event(self, shard: str, records: list[dict[str, Any]], window: OpenWindow, *,
                     final: bool = False, terminated_early: bool = False) -> dict[str, Any]:
        return {**self.event_for(shard, records), "window": {"start": iso(window.start), "end": iso(window.end)},
                "state": copy.deepcopy(window.state), "shardId": shard, "eventSourceARN": self.stream_arn,
                "isFinalInvokeForWindow": final, "isWindowTerminatedEarly": terminated_early}

    def _deliver(self, shard: str, records: list[dict[str, Any]], attempts_left: int | None = None) -> None:
        self._read[shard] = len(records)
        batch: list[dict[str, Any]] = []
        for record in records:  # split at window boundaries: one invoke never mixes two windows
            start = self.window_start(record)
            if batch and self.window_start(batch[0]) != start:
                self._deliver_window(shard, batch)
                batch = []
            batch.append(record)
        if batch:
            self._deliver_window(shard, batch)

    def _deliver_window(self, shard: str, records: list[dict[str, Any]]) -> None:
        start = self.window_start(records[0])
        window = self.windows.get(shard)
        if window is not None and window.start != start:
            self._close(shard)  # a record of another window closes the open one
            window = None
        if window is None:
            window = self.windows[shard] = OpenWindow(start, start + self.window_seconds)
            self.stats.windows_opened += 1
        window.first = window.first or records[0]
        window.last = records[-1]
        for i in range(0, len(records), self.batch_size):
            self._invoke_batch(shard, window, records[i:i + self.batch_size])

    def _invoke_batch(self, shard: str, window: OpenWindow, records: list[dict[str, Any]]) -> None:
        retries = 0
        while records:
            try:
                state, failed = self._call(self.window_event(shard, records, window))
            except Exception as exc:  # noqa: BLE001 - a function error: same records, same state
                self.stats.function_errors += 1
                retries += 1
                condition = self._expired(records, retries)
                if condition:
                    return self._give_up(shard, records, condition, f"{type(exc).__name__}: {exc}")
                self._wait(shard, exc, retries)
                continue
            if not failed:
                self.stats.records_delivered += len(records)
                window.state = state
                if len(orjson.dumps(state)) > self.max_state_bytes:
                    self._close(shard, terminated_early=True)
                    self.stats.windows_terminated_early += 1
                    # the rest of this window goes on with a fresh state
                    window.state = {}
                    self.windows[shard] = window
                    self.stats.windows_opened += 1
                return None
            # partial failure: the invoke's state is discarded; resume at the lowest failed record
            self.stats.partial_failures += 1
            sequence = {r["SequenceNumber"]: i for i, r in enumerate(records)}
            positions = [sequence.get(item) for item in failed]
            position = 0 if None in positions else min(positions)  # type: ignore[type-var]
            self.stats.records_delivered += position
            records = records[position:]
            retries += 1
            condition = self._expired(records, retries)
            if condition:
                return self._give_up(shard, records, condition, "partial batch failure")
            self.sleep(self._backoff(retries))
        return None

    def _wait(self, shard: str, problem: BaseException, retries: int) -> None:
        delay = self._backoff(retries)
        self.stats.waits += 1
        self.stats.waited_seconds += delay
        self.say(f"{self.function_name} on {shard}: {type(problem).__name__}: {problem}"[:300]
                 + f" — window held, retry {retries} in {delay:.1f} s")
        self.sleep(delay)

    def _call(self, event: dict[str, Any]) -> tuple[dict[str, Any], list[str | None]]:
        self.stats.invocations += 1
        response = self.invoke(event)
        self.stats.outcomes.append(response)
        if event["isFinalInvokeForWindow"]:
            return {}, []  # the window is over: its state is dropped whatever the function answers
        if not isinstance(response, dict) or not isinstance(response.get("state"), dict):
            self.stats.invalid_responses += 1
            raise InvalidWindowResponse(f"response without a state object: {response!r:.200}")
        failures = response.get("batchItemFailures") or []
        return response["state"], [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]

    def _close(self, shard: str, *, terminated_early: bool = False) -> None:
        window = self.windows.pop(shard)
        event = self.window_event(shard, [], window, final=True, terminated_early=terminated_early)
        span = [r for r in (window.first, window.last) if r is not None]
        retries = 0
        while True:
            self.stats.final_invocations += 1
            try:
                self._call(copy.deepcopy(event))
                break
            except Exception as exc:  # noqa: BLE001 - the window's rows were not written
                self.stats.function_errors += 1
                retries += 1
                condition = self._expired(span, retries) if span else "RetryAttemptsExhausted"
                if condition:
                    self.stats.final_failures += 1
                    if span:  # the whole window's records: recovery recomputes the window from them
                        self._give_up(shard, span, condition, f"final invoke of window {iso(window.start)}: "
                                                              f"{type(exc).__name__}: {exc}",
                                      window={"start": iso(window.start), "end": iso(window.end)})
                    break
                self._wait(shard, exc, retries)
        self.stats.windows_closed += 1
