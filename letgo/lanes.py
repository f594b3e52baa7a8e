"""Stream functions side by side, as AWS runs them: one thread per event source mapping.

On AWS the consumer, the statistics and the search indexer each have their own mapping on the stream, read it
independently and wait on their own sinks; one slow function never holds the others back. Locally, running
their mappings one after the other made every GetRecords and every sink wait add up. A :class:`Lane` is one
mapping's loop in its own thread: it polls, sleeps when its shard is caught up, and runs the jobs handed to it
between two polls — so a pause, a resume or a recovery only ever touches its own lane's state, never while
that lane is in the middle of a batch.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from queue import Empty, SimpleQueue
from typing import Any, Callable, Iterable


class Lane(threading.Thread):
    def __init__(self, name: str, poll: Callable[[], int], *, idle_seconds: float = 0.5) -> None:
        super().__init__(name=f"lane-{name}", daemon=True)
        self.poll, self.idle_seconds = poll, idle_seconds
        self.jobs: SimpleQueue[tuple[Callable[[], Any], Future]] = SimpleQueue()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def submit(self, job: Callable[[], Any]) -> Future:
        """Run ``job`` in this lane between two polls; the future has its result (or its exception)."""
        future: Future = Future()
        self.jobs.put((job, future))
        return future

    def _run_jobs(self) -> None:
        while True:
            try:
                job, future = self.jobs.get_nowait()
            except Empty:
                return
            try:
                future.set_result(job())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self._run_jobs()
                if self.poll() == 0:
                    self.stopping.wait(self.idle_seconds)
            self._run_jobs()
        except BaseException as exc:  # noqa: BLE001 - reported by stop(); the other lanes go on
            self.error = exc

    def stop(self, timeout: float | None = None) -> None:
        self.stopping.set()
        self.join(timeout)
        if self.error is not None:
            raise self.error


def drain_side_by_side(drains: Iterable[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """Run each ``drain`` (a mapping's ``drain`` bound with its arguments) in its own thread; wait for all.

    Returns each one's result by name; the first error is raised once every drain has ended.
    """
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, drain: Callable[[], Any]) -> None:
        try:
            results[name] = drain()
        except BaseException as exc:  # noqa: BLE001 - raised below, after the others finished
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name, drain), name=f"drain-{name}", daemon=True)
               for name, drain in drains]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results["_seconds"] = round(time.monotonic() - started, 1)
    if errors:
        raise errors[0]
    return results
