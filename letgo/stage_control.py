"""``letgo stage up``'s run loop, and the protocol the other ``letgo`` commands use to talk to it.

The stage process (:func:`run_stage`) runs the local stage with everything ``stage up`` promises — the event
consumer, the statistics' tumbling windows, the search indexer, the Segment-compatible collector, the metrics
and search APIs — polling the mappings until it is told to stop. Other ``letgo`` processes reach it through
two files under ``.local/`` and a few signals:

``stage.json`` (:data:`STAGE_FILE`)
    written once everything is up, removed on exit: the pid, the stream, the collector's URL, the
    on-failure queues and the environment a client needs (moto's endpoint and credentials, buckets, DSN, the
    Sentry store). :func:`stage_info` reads it — and points this process's AWS clients at the stage.
``statistics-control.json`` (:data:`CONTROL_FILE`)
    what the stage reports back, and the one argument a request carries (``resume_at``).

==============  ==================================================================================================
SIGUSR1         pause the statistics consumer (its windows flushed) -> ``{"statistics": "paused"}``
SIGUSR2         resume it from ``resume_at`` -> ``{"statistics": "running"}`` (``letgo metrics replay``, steps 1 and 4)
SIGHUP          recover the search indexer's on-failure queue *here*, where the index writer is ->
                ``{"recovery_progress": n}`` while it runs, then ``{"recovery": {describe, problems, left}}``
SIGINT/SIGTERM  stop: everything is shut down and both files are removed (``letgo stage down``)
==============  ==================================================================================================
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import time
from contextlib import ExitStack
from typing import Any, Callable

import orjson

from letgo import REPO_ROOT
from letgo.progress import Progress

# Where `stage up` keeps its stage and the two files other commands find it by: .local/ of the checkout, or
# LETGO_STAGE_DIR (tests run a stage of their own there, next to a developer's running one).
STAGE_DIR = Path(os.environ.get("LETGO_STAGE_DIR") or REPO_ROOT / ".local")
STAGE_FILE = STAGE_DIR / "stage.json"
CONTROL_FILE = STAGE_DIR / "statistics-control.json"  # `stage up` <-> `metrics replay`, `recover`
STAGE_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "AWS_DEFAULT_REGION", "RAW_BUCKET", "QUARANTINE_BUCKET", "FIREHOSE_STREAM", "DATABASE_URL",
             "SENTRY_LOCAL_PATH", "STAGE")
Say = Callable[[str], None]


class StageNotRunning(Exception):
    """No ``letgo stage up`` is running here (its stage file is missing)."""


class StageUnresponsive(Exception):
    """The running stage did not answer a request in time."""


# -- the client side: any other `letgo` process ------------------------------------------------------------------
def stage_info(hint: str = "") -> dict[str, Any]:
    """The running stage's description; this process's AWS clients (and handlers) now point at it."""
    if not STAGE_FILE.exists():
        raise StageNotRunning("no local stage is running: start one with `letgo stage up`"
                              + (f" {hint}" if hint else ""))
    info = orjson.loads(STAGE_FILE.read_bytes())
    os.environ.update(info["env"])
    return info


def control(**update: Any) -> dict[str, Any]:
    """The control file's state, after writing ``update`` into it (if any)."""
    current = orjson.loads(CONTROL_FILE.read_bytes()) if CONTROL_FILE.exists() else {}
    if update:
        current.update(update)
        CONTROL_FILE.write_bytes(orjson.dumps(current))
    return current


def wait_for(state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while control().get("statistics") != state:
        if time.monotonic() > deadline:
            raise StageUnresponsive(f"the local stage did not report statistics {state} within {timeout:.0f} s")
        time.sleep(0.1)


def pause_statistics(info: dict[str, Any]) -> None:
    os.kill(info["pid"], signal.SIGUSR1)
    wait_for("paused")


def resume_statistics(info: dict[str, Any], at: float) -> None:
    control(resume_at=at)
    os.kill(info["pid"], signal.SIGUSR2)
    wait_for("running")


def recover_indexer_in_stage(info: dict[str, Any], *, dry_run: bool, timeout: float = 900, say: Say = print) -> bool:
    """The local indexer's index writer lives in the `stage up` process: ask it to recover (SIGHUP), show its
    progress, print its report. Returns True when something is left or failed."""
    from handlers.core.aws import client

    if dry_run:
        count = client("sqs").get_queue_attributes(QueueUrl=info["queues"]["search-indexer"], AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        say(f"dry run — search-indexer: {count} on-failure messages (recovered by the running stage)")
        return False
    control(recovery=None, recovery_progress=0)
    os.kill(info["pid"], signal.SIGHUP)
    progress = Progress("search-indexer: records re-read")
    deadline = time.monotonic() + timeout
    while (state := control()).get("recovery") is None:
        if time.monotonic() > deadline:
            raise StageUnresponsive(f"the local stage did not finish the search indexer's recovery within "
                                    f"{timeout:.0f} s")
        progress(state.get("recovery_progress") or 0)
        time.sleep(0.2)
    progress.finish()
    report = state["recovery"]
    for problem in report["problems"]:
        say(f"  ! {problem}")
    say(report["describe"])
    return bool(report["problems"]) or report["left"] > 0


def stop_stage(say: Say = print, timeout: float = 30) -> None:
    """SIGTERM to the running stage, then wait for it to clean up (:class:`StageUnresponsive` if it does not)."""
    if not STAGE_FILE.exists():
        say("no local stage is running")
        return
    pid = orjson.loads(STAGE_FILE.read_bytes())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)  # `stage up` stops moto and PostgreSQL on the way out
    except ProcessLookupError:
        STAGE_FILE.unlink(missing_ok=True)
        say(f"the stage process {pid} was already gone; cleaned up")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not STAGE_FILE.exists():
            say("local stage stopped")
            return
        time.sleep(0.1)
    raise StageUnresponsive(f"the stage process {pid} did not stop within {timeout:.0f} s")


# -- the stage side: the `stage up` process -------------------------------------------------------------------
def run_stage(write_key: str, say: Say = print) -> int:
    """Start the local stage and everything around it, serve until SIGINT/SIGTERM, stop everything."""
    requests: list[str] = []
    stopping: list[bool] = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGUSR1, lambda *_: requests.append("pause"))   # `letgo metrics replay`, step 1
    signal.signal(signal.SIGUSR2, lambda *_: requests.append("resume"))  # ... and step 4
    signal.signal(signal.SIGHUP, lambda *_: requests.append("recover"))  # `letgo recover`: the indexer's queue
    with ExitStack() as stack:
        process = StageProcess(stack, write_key, say)
        STAGE_FILE.write_bytes(orjson.dumps({"pid": os.getpid(), **process.description(),
                                             "env": {k: os.environ[k] for k in STAGE_ENV}}))
        control(statistics="running", resume_at=None)
        process.announce()
        try:
            process.start_lanes()  # the three consumers side by side, each on its own mapping, as on AWS
            while not stopping:
                while requests:
                    _serve(process, requests.pop(0))
                time.sleep(0.2)
            process.stop_lanes()
        finally:
            STAGE_FILE.unlink(missing_ok=True)
            CONTROL_FILE.unlink(missing_ok=True)
    return 0


def _serve(process: Any, request: str) -> None:
    """A request from another command, run in the lane it concerns (never in the middle of that lane's batch)."""
    if request == "recover":
        report = process.in_lane("search-indexer", lambda: process.recover_indexer(
            progress=lambda done: control(recovery_progress=done)))
        control(recovery={"describe": report.describe(), "problems": report.problems, "left": report.left})
    elif request == "pause" and process.in_lane("statistics", process.pause_statistics):
        control(statistics="paused")
    elif request == "resume" and process.in_lane("statistics",
                                                  lambda: process.resume_statistics(control()["resume_at"])):
        control(statistics="running")


class StageProcess:
    """What ``stage up`` runs: the stage, its three consumers, the collector, the metrics and search APIs."""

    def __init__(self, stack: ExitStack, write_key: str, say: Say = print) -> None:
        from handlers.core.aws import client
        from handlers.statistics.lambda_statistics import build_handler
        from letgo.collector import Collector
        from letgo.metrics_view import create_app
        from letgo.services import BackgroundServer
        from letgo.stage import LocalStage

        self.say, self.write_key = say, write_key
        self.stage = stack.enter_context(LocalStage(STAGE_DIR / "stage", say=say))
        self.collector = stack.enter_context(Collector(client("kinesis"), self.stage.names.stream, {write_key}))
        self.statistics = build_handler({"DATABASE_URL": self.stage.postgres.dsn})
        stack.callback(self.statistics.sink.close)
        self.metrics_api = stack.enter_context(BackgroundServer(create_app(self.stage.postgres.dsn,
                                                                           self.statistics.metrics)))
        self.stats: Any = self._windows("TRIM_HORIZON")  # None while paused
        self.search_backend, self.indexing, self.search_api = self._local_search(stack)

    def _windows(self, position: str, at: float | None = None) -> Any:
        mapping = self.stage.new_window_mapping(self.statistics.handle, clock=time.time,
                                                window_seconds=self.statistics.metrics.stream_window_seconds)
        mapping.start(position, at)
        return mapping

    def _local_search(self, stack: ExitStack) -> tuple[Any, Any, Any]:
        """The search indexer (its own mapping on the stream) into the embedded engine, and the search API."""
        import shutil

        from handlers.search.api import ApiConfig, create_app
        from handlers.search.indexer import Indexer
        from handlers.search.tantivy_backend import TantivyBackend
        from letgo.search_local import IndexerInvoke
        from letgo.services import BackgroundServer

        index_dir = self.stage.workdir / "search"
        shutil.rmtree(index_dir, ignore_errors=True)  # the stream is read from its start: rebuilt from scratch
        backend = stack.enter_context(TantivyBackend(index_dir))
        indexing = self.stage.new_mapping(invoke=IndexerInvoke(Indexer(backend)), function="search-indexer",
                                          batch_size=500)
        indexing.start("TRIM_HORIZON")
        api = stack.enter_context(BackgroundServer(create_app(backend, ApiConfig())))
        return backend, indexing, api

    def description(self) -> dict[str, Any]:
        return {"stream": self.stage.names.stream, "collector": self.collector.url, "queues": self.stage.queue_urls,
                "search_api": self.search_api.url, "metrics_api": self.metrics_api.url}

    def announce(self) -> None:
        say = self.say
        say(f"collector (Segment-compatible): {self.collector.url}/v1/batch  write key: {self.write_key}")
        say(f"PostgreSQL: {self.stage.postgres.dsn}")
        say(f"metrics API: {self.metrics_api.url}/metrics  (…/metrics/<name>?last=60, …/metrics/<name>/chart.png)")
        say(f"search API: {self.search_api.url}/  (the page; …/search?q=…&lat=…&lon=…, …/autocomplete?q=…, "
            f"…/openapi.json)")
        say("consuming events, statistics and listings; Ctrl-C (or `letgo stage down`) stops the stage")

    def poll_events(self) -> int:
        assert self.stage.mapping is not None
        return self.stage.mapping.poll()

    def poll_statistics(self) -> int:
        return self.stats.poll() if self.stats is not None else 0

    def poll_listings(self) -> int:
        """What was indexed becomes searchable at once (as OpenSearch's 1 s refresh)."""
        indexed = self.indexing.poll()
        if indexed:
            self.search_backend.refresh()
        return indexed

    def poll(self) -> int:
        """One round over the three mappings, one after the other (tests; `stage up` runs them in lanes)."""
        return self.poll_events() + self.poll_statistics() + self.poll_listings()

    def start_lanes(self) -> None:
        from letgo.lanes import Lane

        self.lanes = {"consumer": Lane("consumer", self.poll_events),
                      "statistics": Lane("statistics", self.poll_statistics),
                      "search-indexer": Lane("search-indexer", self.poll_listings)}
        for lane in self.lanes.values():
            lane.start()

    def in_lane(self, name: str, job: Callable[[], Any]) -> Any:
        """Run ``job`` in the named lane between two of its polls (directly when the lanes are not running)."""
        lanes = getattr(self, "lanes", None)
        if not lanes:
            return job()
        return lanes[name].submit(job).result()

    def stop_lanes(self) -> None:
        lanes, self.lanes = getattr(self, "lanes", {}), {}
        for lane in lanes.values():
            lane.stopping.set()
        for lane in lanes.values():
            lane.stop()
        self.flush()

    def flush(self) -> None:
        if self.stats is not None:
            self.stats.flush()

    def pause_statistics(self) -> bool:
        if self.stats is None:
            return False
        self.stats.flush()
        self.stats = None
        return True

    def resume_statistics(self, at: float | None) -> bool:
        if self.stats is not None:
            return False
        self.stats = self._windows("AT_TIMESTAMP", at)
        return True

    def recover_indexer(self, progress: Callable[[int], None]) -> Any:
        """The search indexer's on-failure queue, recovered in this process (which holds the index writer)."""
        from letgo.recover import local_recoveries

        info = {"stream": self.stage.names.stream, "queues": self.stage.queue_urls, "env": dict(os.environ)}
        [(_name, recovery)] = local_recoveries(info, ["search-indexer"], indexer_invoke=self.indexing.invoke,
                                               say=self.say)
        recovery.progress = progress
        return recovery.run()
