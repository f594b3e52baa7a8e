"""``letgo`` — one CLI for the platform's everyday jobs.

    letgo demo [--events N]            the main job (make run): local stage, traffic, report
    letgo stage up | down              run the local stage (collector + consumer) until Ctrl-C / `down`
    letgo events validate FILE         say, for each invalid event in FILE, which field is wrong and why
    letgo events send FILE             put the events of FILE on a stream (the running local stage by default)
    letgo quarantine redrive           re-drive quarantined events after an event type was fixed
    letgo recover [--stage S] [--dry-run]   re-deliver batches a stream function gave up on (its on-failure queue)
    letgo alerts [--path P]            list locally stored Sentry issues, grouped for triage
    letgo types lock | check           record / check event-type versions (additive vs breaking changes)
    letgo db migrate --dsn DSN         apply PostgreSQL migrations
    letgo metrics show NAME [--last N] a metric's last windows as a table (the running local stage by default)
    letgo metrics chart NAME [--out P] the same windows as a PNG chart (default under reports/)
    letgo metrics replay --since T     stop statistics, delete windows from T, recompute from T, restart
    letgo metrics upstream             upstream data alerts now: absent types, unusual volumes (-> Sentry)
    letgo warehouse sync               copy the local stage's Firehose output into the AWS layout (.local/warehouse)
    letgo warehouse query SQL | --file F   run SQL on it (DuckDB; views events.<type>, events.all_events)
    letgo warehouse prompt             the same, interactively (`sql> `, `;` ends a statement, \\q quits)
    letgo search reindex [--path D | --opensearch-url U]   rebuild a search index from the processed events
    letgo search setup --stage S       a stage's search templates, aliases and access roles (as the domain admin)
    letgo ml train | serve             train/publish the price model on the local stage; serve it (+ validator)
    letgo warehouse migrate --stage S  apply migrations/redshift/ to a deployed stage's cluster, publish load specs
    letgo warehouse load --stage S --day D [--type T]   (re)load a day's delivered objects (idempotent re-drive)
"""
from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import time
from contextlib import ExitStack
from datetime import timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

from letgo import REPO_ROOT

STAGE_FILE = REPO_ROOT / ".local" / "stage.json"
CONTROL_FILE = REPO_ROOT / ".local" / "statistics-control.json"  # `stage up` <-> `metrics replay`


def _events_from_file(path: Path) -> Iterator[tuple[int, bytes]]:
    """A JSON array, or JSON lines (one event per line). Yields (line or position, raw bytes).

    Each line is handed over as is (the processing core explains what is wrong with it). An array must parse
    as a whole first: if it does not, SystemExit says why in one line (exit status 1, no traceback).
    """
    from handlers.tracking.core import dumps_json

    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        data = data[3:]
    if data.lstrip().startswith(b"["):
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not a JSON array of events (nor JSON lines): {exc}") from None
        if type(items) is not list:
            raise SystemExit(f"{path}: starts with '[' but is not a JSON array")
        for index, item in enumerate(items, 1):
            yield index, dumps_json(item)  # orjson writes 254 levels at most; dumps_json any depth
        return
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield number, line


def cmd_validate(args: argparse.Namespace) -> int:
    from handlers.core.config import Env
    from handlers.core.kinesis import RawRecord
    from handlers.tracking.core import Processor
    from handlers.tracking.event_types import load_catalog
    from handlers.tracking.settings import DEFAULT_SETTINGS, load_settings

    settings = load_settings(Env().path("TRACKING_CONFIG", DEFAULT_SETTINGS))  # the stage's file, as deployed
    processor = Processor(load_catalog(Path(args.event_types), max_depth=settings.max_depth), settings)
    now = time.time()
    bad = total = 0
    try:
        events = list(_events_from_file(Path(args.file)))
    except SystemExit as exc:  # the file is not JSON lines and not a JSON array: one line says why
        print(exc.code)
        return 1
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror or exc}")
        return 1
    for where, raw in events:
        result = processor.process([RawRecord(str(where), "file", base64.b64encode(raw).decode(), now)])
        total += result.units
        for rejection in result.rejections:
            bad += 1
            event = f" ({rejection.event_type})" if rejection.event_type else ""
            field = f"field '{rejection.field}'" if rejection.field else "record"
            item = f" event #{rejection.index}" if rejection.index else ""
            print(f"{args.file}:{where}{item}{event}: {field}: [{rejection.reason.value}] {rejection.message}")
        for duplicate in result.duplicates:
            print(f"{args.file}:{where}: duplicate messageId {duplicate.message_id}")
    print(f"{total - bad} valid, {bad} invalid of {total} events")
    return 1 if bad else 0


def _stage_info() -> dict[str, Any]:
    if not STAGE_FILE.exists():
        raise SystemExit("no local stage is running: start one with `letgo stage up` (or pass --stream)")
    info = orjson.loads(STAGE_FILE.read_bytes())
    os.environ.update(info["env"])
    return info


def cmd_send(args: argparse.Namespace) -> int:
    from handlers.core.aws import client
    from letgo.producer import put_records

    stream = args.stream or _stage_info()["stream"]
    sent = put_records(client("kinesis"), stream, ((f"file-{where}", raw) for where, raw in
                                                   _events_from_file(Path(args.file))))
    print(f"sent {sent} events to {stream}")
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from handlers.core.aws import client
    from handlers.tracking.consumer import ConsumerConfig
    from handlers.tracking.core import Processor
    from handlers.tracking.event_types import load_catalog
    from handlers.tracking.sinks.s3objects import Quarantine
    from letgo.progress import Progress
    from letgo.redrive import redrive

    stream = args.stream or _stage_info()["stream"]
    config = ConsumerConfig.from_env()
    processor = Processor(load_catalog(config.event_types_dir, max_depth=config.settings.max_depth), config.settings)
    progress = Progress("quarantine objects")
    report = redrive(Quarantine(client("s3"), config.quarantine_bucket, "quarantine"), processor,
                     client("kinesis"), stream, progress=progress)
    progress.finish()
    print(f"re-driven: {report.redriven} events back on {stream}; still invalid: {report.still_invalid} "
          f"{report.still_invalid_by_reason or ''}")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from handlers.core.alerts import read_local_alerts

    path = Path(args.path) if args.path else Path(_stage_info()["env"]["SENTRY_LOCAL_PATH"])
    issues = read_local_alerts(path)
    if not issues:
        print(f"no alerts in {path}")
    for issue in issues:
        versions = ", ".join(f"{v} ({n})" for v, n in issue["app_versions"].most_common(3))
        print(f"{issue['count']:>7,} events  {issue['events']:>4} reports  {issue['title']}")
        print(f"{'':>23}{issue['first_message']}  [app {versions}]")
    return 0


def cmd_types(args: argparse.Namespace) -> int:
    from handlers.tracking.compatibility import write_lock
    from handlers.tracking.event_types import LOCK_FILE, load_catalog

    directory = Path(args.event_types)
    catalog = load_catalog(directory)  # refuses breaking changes against the current lock
    if args.action == "lock":
        write_lock(catalog.types, directory / LOCK_FILE, catalog.context_properties)
        print(f"locked {len(catalog.types)} event types in {directory / LOCK_FILE}")
    else:
        print(f"{len(catalog.types)} event types valid and compatible with {LOCK_FILE}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from letgo.migrate import migrate

    applied = migrate(args.dsn)
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0


def _metrics_dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return args.dsn
    if not STAGE_FILE.exists():
        raise SystemExit("no local stage is running: start one with `letgo stage up` (or pass --dsn)")
    return _stage_info()["env"]["DATABASE_URL"]


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def cmd_metrics(args: argparse.Namespace) -> int:
    from handlers.statistics.definitions import load_metrics
    from handlers.statistics.sink import MetricSink
    from handlers.tracking.event_types import load_catalog
    from letgo.metrics_view import dims_label, render_chart, window_rows

    if args.action == "upstream":
        from handlers.core.alerts import init_sentry
        from handlers.core.config import Env
        from handlers.statistics import lambda_upstream

        alerts = Path(args.alerts or _stage_info()["env"]["SENTRY_LOCAL_PATH"])
        init_sentry("local", local_path=alerts)  # findings land where `letgo alerts` reads them
        env = Env({"DATABASE_URL": _metrics_dsn(args), "STAGE": "local"})
        result = lambda_upstream.run(env, lambda_upstream.load(env))
        for finding in result["findings"]:
            print(f"{finding['check']:<12} {finding['message']}")
        print(f"{len(result['findings'])} finding(s), reported to Sentry ({alerts})")
        return 1 if result["findings"] else 0
    if args.action == "replay":
        if not args.since:
            print("error: replay needs --since", file=sys.stderr)
            return 2
        if args.stage and not args.dsn:
            print("error: replay on AWS needs --dsn (the metrics database)", file=sys.stderr)
            return 2
        return cmd_metrics_replay(args)
    metrics = load_metrics(Path(args.metrics_dir), load_catalog(Path(args.event_types)))
    metric = metrics.get(args.name)
    if metric is None:
        print(f"error: no metric named {args.name!r}; known: {', '.join(m.name for m in metrics.metrics)}",
              file=sys.stderr)
        return 2
    rows = window_rows(metric, MetricSink(_metrics_dsn(args)).last_windows(metric.name, args.last))
    if args.action == "chart":
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = Path(args.out) if args.out else REPO_ROOT / "reports" / f"metric-{metric.name}-{stamp}.png"
        print(render_chart(metric, rows, out))
        return 0
    if not rows:
        print(f"{metric.name}: no windows yet")
        return 0
    value_column = metric.aggregation  # the metric_values view names its columns after the aggregations
    table = [(row["window_start"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"), dims_label(row["dims"]),
              _format_value(row[value_column])) for row in rows]
    header = ("window start (UTC)", "dims", metric.aggregation)
    widths = [max(len(cells[i]) for cells in (header, *table)) for i in range(3)]
    print(f"{metric.name} v{metric.version}: {metric.description}")
    for cells in (header, tuple("-" * w for w in widths), *table):
        print(f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:>{widths[2]}}")
    return 0


def _last_windows(raw: str) -> int:
    from letgo.metrics_view import parse_last

    try:
        return parse_last(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from letgo.demo import run_demo

    report = run_demo(args.events, seed=args.seed)
    return 0 if report["ok"] else 1


def _control(**update: Any) -> dict[str, Any]:
    current = orjson.loads(CONTROL_FILE.read_bytes()) if CONTROL_FILE.exists() else {}
    if update:
        current.update(update)
        CONTROL_FILE.write_bytes(orjson.dumps(current))
    return current


def cmd_stage_up(args: argparse.Namespace) -> int:
    from handlers.core.aws import client
    from handlers.statistics.lambda_statistics import build_handler
    from letgo.collector import Collector
    from letgo.metrics_view import create_app
    from letgo.services import BackgroundServer
    from letgo.stage import LocalStage
    from letgo.windows import TumblingWindowMapping

    stop = False
    requests: list[str] = []

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, lambda *_: requests.append("pause"))   # `letgo metrics replay`, step 1
    signal.signal(signal.SIGUSR2, lambda *_: requests.append("resume"))  # ... and step 4
    signal.signal(signal.SIGHUP, lambda *_: requests.append("recover"))  # `letgo recover`: the indexer's queue
    with ExitStack() as stack:
        stage = stack.enter_context(LocalStage(REPO_ROOT / ".local" / "stage", say=print))
        collector = stack.enter_context(Collector(client("kinesis"), stage.names.stream, {args.write_key}))
        statistics = build_handler({"DATABASE_URL": stage.postgres.dsn})
        stack.callback(statistics.sink.close)
        metrics_api = stack.enter_context(BackgroundServer(create_app(stage.postgres.dsn, statistics.metrics)))

        def windows(position: str, at: float | None = None) -> TumblingWindowMapping:
            mapping = stage.new_window_mapping(statistics.handle, window_seconds=statistics.metrics.stream_window_seconds,
                                               clock=time.time)
            mapping.start(position, at)
            return mapping

        stats: TumblingWindowMapping | None = windows("TRIM_HORIZON")
        search_backend, indexing, search_api = _local_search(stack, stage)
        keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                "AWS_DEFAULT_REGION", "RAW_BUCKET", "QUARANTINE_BUCKET", "FIREHOSE_STREAM", "DATABASE_URL",
                "SENTRY_LOCAL_PATH", "STAGE")
        STAGE_FILE.write_bytes(orjson.dumps({"pid": os.getpid(), "stream": stage.names.stream,
                                             "collector": collector.url, "queues": stage.queue_urls,
                                             "env": {k: os.environ[k] for k in keys}}))
        _control(statistics="running", resume_at=None)
        print(f"collector (Segment-compatible): {collector.url}/v1/batch  write key: {args.write_key}")
        print(f"PostgreSQL: {stage.postgres.dsn}")
        print(f"metrics API: {metrics_api.url}/metrics  (…/metrics/<name>?last=60, …/metrics/<name>/chart.png)")
        print(f"search API: {search_api.url}/  (the page; …/search?q=…&lat=…&lon=…, …/autocomplete?q=…, "
              f"…/openapi.json)")
        print("consuming events, statistics and listings; Ctrl-C (or `letgo stage down`) stops the stage")
        try:
            assert stage.mapping is not None
            while not stop:
                while requests:
                    request = requests.pop(0)
                    if request == "recover":
                        _recover_indexer_here(stage, indexing)
                    elif request == "pause" and stats is not None:
                        stats.flush()
                        stats = None
                        _control(statistics="paused")
                    elif request == "resume" and stats is None:
                        stats = windows("AT_TIMESTAMP", _control()["resume_at"])
                        _control(statistics="running")
                handled = stage.mapping.poll() + (stats.poll() if stats is not None else 0)
                indexed = indexing.poll()
                if indexed:
                    search_backend.refresh()  # what was indexed becomes searchable (as OpenSearch's 1 s refresh)
                if handled + indexed == 0:
                    time.sleep(0.5)
            if stats is not None:
                stats.flush()
        finally:
            STAGE_FILE.unlink(missing_ok=True)
            CONTROL_FILE.unlink(missing_ok=True)
    return 0


def _recover_indexer_here(stage: Any, indexing: Any) -> None:
    """In the `stage up` process, which holds the local index writer: recover the search indexer's queue."""
    from letgo.recover import local_recoveries

    info = {"stream": stage.names.stream, "queues": stage.queue_urls, "env": dict(os.environ)}
    [(_name, recovery)] = local_recoveries(info, ["search-indexer"], indexer_invoke=indexing.invoke, say=print)
    recovery.progress = lambda done: _control(recovery_progress=done)
    report = recovery.run()
    _control(recovery={"describe": report.describe(), "problems": report.problems, "left": report.left})


def _local_search(stack: ExitStack, stage: Any) -> tuple[Any, Any, Any]:
    """The search indexer (its own mapping on the stream) into the embedded engine, and the search API."""
    import shutil

    from handlers.search.api import ApiConfig, create_app
    from handlers.search.indexer import Indexer
    from handlers.search.tantivy_backend import TantivyBackend
    from letgo.search_local import IndexerInvoke
    from letgo.services import BackgroundServer

    index_dir = stage.workdir / "search"
    shutil.rmtree(index_dir, ignore_errors=True)  # the stream is read from its start: rebuilt from scratch
    backend = stack.enter_context(TantivyBackend(index_dir))
    indexing = stage.new_mapping(invoke=IndexerInvoke(Indexer(backend)), function="search-indexer", batch_size=500)
    indexing.start("TRIM_HORIZON")
    api = stack.enter_context(BackgroundServer(create_app(backend, ApiConfig())))
    return backend, indexing, api


def _wait_for(state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _control().get("statistics") != state:
        if time.monotonic() > deadline:
            raise SystemExit(f"the local stage did not report statistics {state} within {timeout:.0f} s")
        time.sleep(0.1)


def cmd_metrics_replay(args: argparse.Namespace) -> int:
    """Stop the statistics consumer, delete windows from T, replay from T, restart — with progress."""
    from datetime import datetime, timedelta, timezone

    from handlers.statistics.sink import MetricSink
    from letgo.progress import Progress
    from letgo.replay import align, replay_aws, replay_local

    since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    if since.tzinfo is None:
        raise SystemExit("--since needs a UTC offset, e.g. 2026-11-26T09:30:00Z")
    if args.stage:  # AWS: disable the mapping, delete rows, redeploy the statistics layer with replay_from
        import subprocess
        import tempfile

        import yaml

        from handlers.core.aws import client

        def deploy(at: datetime) -> None:
            parameters = yaml.safe_load((REPO_ROOT / "environments" / "parameters.yaml").read_text())
            parameters.setdefault(args.stage.upper(), {})["statistics_replay_from"] = int(at.timestamp())
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as changed:
                yaml.safe_dump(parameters, changed)
            subprocess.run([str(REPO_ROOT / ".venv-humilis" / "bin" / "python"),
                            str(REPO_ROOT / "deploy" / "humilis_run.py"), "update", "--stage", args.stage,
                            "--parameters", changed.name], check=True)

        report = replay_aws(client("lambda"), function_name=f"letgo-statistics-{args.stage.lower()}", since=since,
                            sink=MetricSink(args.dsn), window_seconds=args.window_seconds,
                            retention=timedelta(hours=args.retention_hours), deploy=deploy, metric=args.name)
        print(f"deleted {report.rows_deleted} rows from {report.since:%Y-%m-%dT%H:%M:%SZ}; " + "; ".join(report.notes))
        print(f"now set `statistics_replay_from: {int(report.since.timestamp())}` under {args.stage.upper()} in "
              f"environments/parameters.yaml and commit it (setting it back would move the mapping to LATEST)")
        return 0

    from handlers.core.aws import client
    from handlers.statistics.lambda_statistics import build_handler
    from letgo.windows import TumblingWindowMapping

    info = _stage_info()
    pid = info["pid"]
    os.kill(pid, signal.SIGUSR1)
    _wait_for("paused")
    print("1. statistics consumer stopped")
    handler = build_handler({"DATABASE_URL": info["env"]["DATABASE_URL"]})
    window = handler.metrics.stream_window_seconds
    progress = Progress("replayed records")
    try:
        report = replay_local(
            since=since, sink=handler.sink, metric=args.name, progress=progress,
            new_mapping=lambda: TumblingWindowMapping(client("kinesis"), info["stream"], handler.handle,
                                                      window_seconds=window),
            retention=timedelta(hours=args.retention_hours), s3=client("s3"), raw_bucket=info["env"]["RAW_BUCKET"])
        progress.finish()
        print(f"2-3. {report.describe()}")
    finally:
        # restart one window early: the last replayed window may be partial, and a rewrite replaces it whole
        resume = align(datetime.now(timezone.utc), window) - timedelta(seconds=window)
        _control(resume_at=resume.timestamp())
        os.kill(pid, signal.SIGUSR2)
        _wait_for("running")
        handler.sink.close()
    print(f"4. statistics consumer restarted at {resume:%H:%M:%S}Z")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Re-deliver what the mappings gave up on, from their on-failure queues (local stage, or --stage on AWS)."""
    from handlers.core.aws import client
    from letgo.progress import Progress
    from letgo.recover import local_recoveries, stage_recoveries

    functions = [args.function] if args.function != "all" else ["consumer", "statistics", "search-indexer"]
    if args.stage:
        recoveries = stage_recoveries(client("cloudformation"), args.stage, functions, say=print)
    else:
        info = _stage_info()
        recoveries = local_recoveries(info, [f for f in functions if f != "search-indexer"], say=print)
    failed = False
    for name, recovery in recoveries:
        progress = Progress(f"{name}: records re-read")
        recovery.progress = progress
        report = recovery.run(dry_run=args.dry_run)
        progress.finish()
        for line in report.plan:
            print(f"  would recover {line}")
        for problem in report.problems:
            print(f"  ! {problem}")
        print(("dry run — " if args.dry_run else "") + report.describe())
        failed |= bool(report.problems) or (report.left > 0 and not args.dry_run)
    if not args.stage and "search-indexer" in functions:
        failed |= _recover_indexer_in_stage(info, dry_run=args.dry_run)
    return 1 if failed else 0


def _recover_indexer_in_stage(info: dict[str, Any], *, dry_run: bool, timeout: float = 900) -> bool:
    """The local indexer's index writer lives in the `stage up` process: ask it to recover (SIGHUP), show its
    progress, print its report. Returns True when something is left or failed."""
    from handlers.core.aws import client
    from letgo.progress import Progress

    if dry_run:
        count = client("sqs").get_queue_attributes(QueueUrl=info["queues"]["search-indexer"], AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        print(f"dry run — search-indexer: {count} on-failure messages (recovered by the running stage)")
        return False
    _control(recovery=None, recovery_progress=0)
    os.kill(info["pid"], signal.SIGHUP)
    progress = Progress("search-indexer: records re-read")
    deadline = time.monotonic() + timeout
    while (state := _control()).get("recovery") is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the local stage did not finish the search indexer's recovery within {timeout:.0f} s")
        progress(state.get("recovery_progress") or 0)
        time.sleep(0.2)
    progress.finish()
    report = state["recovery"]
    for problem in report["problems"]:
        print(f"  ! {problem}")
    print(report["describe"])
    return bool(report["problems"]) or report["left"] > 0


def cmd_stage_down(args: argparse.Namespace) -> int:
    if not STAGE_FILE.exists():
        print("no local stage is running")
        return 0
    pid = orjson.loads(STAGE_FILE.read_bytes())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)  # `stage up` stops moto and PostgreSQL on the way out
    except ProcessLookupError:
        STAGE_FILE.unlink(missing_ok=True)
        print(f"the stage process {pid} was already gone; cleaned up")
        return 0
    for _ in range(300):
        if not STAGE_FILE.exists():
            print("local stage stopped")
            return 0
        time.sleep(0.1)
    print(f"the stage process {pid} did not stop within 30 s", file=sys.stderr)
    return 1


WAREHOUSE_DIR = REPO_ROOT / ".local" / "warehouse"


def cmd_warehouse_aws(args: argparse.Namespace) -> int:
    """migrate / load against a deployed stage (its stacks' outputs say where everything is)."""
    from datetime import date

    from botocore.exceptions import BotoCoreError, ClientError

    from handlers.core.aws import client
    from handlers.warehouse.loader import Loader, parse_key
    from handlers.warehouse.redshift_data import RedshiftData, StatementFailed, Target
    from letgo.progress import Progress
    from letgo.warehouse.ddl import CLUSTER_DAYS
    from letgo.warehouse.migrate import MigrationError, Migrator, StageWarehouse

    if not args.stage:
        raise SystemExit(f"warehouse {args.action} works on a deployed stage: pass --stage DEV (or PROD)")
    try:
        stage = StageWarehouse.from_stacks(client("cloudformation"), args.stage)
        redshift = RedshiftData(Target(stage.cluster_id, stage.database, stage.secret_arn))
        if args.action == "migrate":
            report = Migrator(redshift, s3=client("s3"), bucket=stage.processed_bucket,
                              glue_database=stage.glue_database, spectrum_role_arn=stage.spectrum_role_arn,
                              directory=REPO_ROOT / "migrations" / "redshift").apply()
            print(f"applied {len(report.applied)} migration(s), {report.statements} statement(s); "
                  f"load specs for {len(report.specs)} event types")
            return 0
        if not args.day:
            raise SystemExit("warehouse load needs --day YYYY-MM-DD")
        day = date.fromisoformat(args.day)
        loader = Loader(redshift, bucket=stage.processed_bucket, role_arn=stage.spectrum_role_arn,
                        cluster_days=CLUSTER_DAYS)
        s3 = client("s3")
        types = [args.type] if args.type else [spec.event_type for spec in loader.specs()]
        keys = [o["Key"] for t in types
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=stage.processed_bucket, Prefix=f"events/type={t}/dt={day.isoformat()}/")
                for o in page.get("Contents", [])]
        progress = Progress("objects", total=len(keys))
        for done, key in enumerate(keys, 1):
            loader.load(parse_key(stage.processed_bucket, key))
            progress(done)
        progress.finish()
        print(f"loaded {len(keys)} object(s) of {day} for {len(types)} event type(s)")
        return 0
    except (MigrationError, StatementFailed, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_warehouse(args: argparse.Namespace) -> int:
    if args.action in ("migrate", "load"):
        return cmd_warehouse_aws(args)
    import duckdb

    from letgo.warehouse.local import LocalWarehouse, format_table, materialise, repl

    target = Path(args.dir)
    if args.action == "sync":
        from handlers.core.aws import client
        from letgo.progress import Progress
        from letgo.stage import StageNames

        if not STAGE_FILE.exists():
            raise SystemExit("no local stage is running: start one with `letgo stage up` (sync reads its Firehose "
                             "output)")
        _stage_info()  # the running local stage's endpoint and credentials
        bucket = args.bucket or StageNames().processed_bucket
        events = materialise(client("s3"), bucket, target, progress=Progress("firehose objects"))
        print(f"materialised {events:,} distinct events from s3://{bucket}/events/ into {target / 'events'}")
        return 0
    if args.action == "query":
        if bool(args.sql) == bool(args.file):
            print("error: query needs SQL or --file (one of them)", file=sys.stderr)
            return 2
        sql = Path(args.file).read_text() if args.file else args.sql
        with LocalWarehouse(target, event_types=Path(args.event_types)) as warehouse:
            try:
                print(format_table(*warehouse.query(sql), limit=args.limit))
            except duckdb.Error as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        return 0
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: a prompt without history
        readline = None  # type: ignore[assignment]
    history = target / ".sql_history"
    if readline is not None:
        target.mkdir(parents=True, exist_ok=True)
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    with LocalWarehouse(target, event_types=Path(args.event_types)) as warehouse:
        try:
            repl(warehouse, limit=args.limit)
        finally:
            if readline is not None:
                readline.write_history_file(history)
    return 0


def cmd_search_setup(args: argparse.Namespace) -> int:
    """Templates, aliases and the security roles + mappings of a deployed stage's domain, as its admin role."""
    from handlers.core.aws import client
    from handlers.search import access, open_backend
    from letgo.warehouse.migrate import MigrationError, stack_outputs

    try:
        search = stack_outputs(client("cloudformation"), "elasticsearch", args.stage)
        writer = stack_outputs(client("cloudformation"), "search-indexer", args.stage)["IndexerRoleArn"]
        reader = stack_outputs(client("cloudformation"), "search-api", args.stage)["InstanceRoleArn"]
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    credentials = client("sts").assume_role(RoleArn=search["AdminRoleArn"],
                                            RoleSessionName="letgo-search-setup")["Credentials"]
    os.environ.update({"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                       "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                       "AWS_SESSION_TOKEN": credentials["SessionToken"]})  # this process acts as the master user
    replicas = "1" if args.replicas is None and args.stage.upper() == "PROD" else str(args.replicas or 0)
    env = {**os.environ, "LETGO_SEARCH_BACKEND": "opensearch",
           "LETGO_OPENSEARCH_URL": f"https://{search['DomainEndpoint']}",
           "LETGO_OPENSEARCH_AWS_REGION": os.environ.get("AWS_REGION", "eu-west-1"),
           "LETGO_OPENSEARCH_REPLICAS": replicas}
    with open_backend(env) as backend:  # setup(): templates per language, versioned indices, aliases
        for line in access.apply(backend.client, [writer], [reader]):
            print(line)
    print(f"search domain of {args.stage.upper()}: templates, aliases and access are in place")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """reindex: rebuild an index from the processed events (the local stage's bucket by default)."""
    if args.action == "setup":
        if not args.stage:
            raise SystemExit("search setup works on a deployed stage: pass --stage DEV (or PROD)")
        return cmd_search_setup(args)
    from handlers.core.aws import client
    from handlers.search import open_backend
    from letgo.progress import Progress
    from letgo.search_local import processed_listing_events, reindex
    from letgo.stage import StageNames

    if args.bucket is None:
        _stage_info()  # the running local stage's moto endpoint
    bucket = args.bucket or StageNames().processed_bucket
    env = {"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": args.opensearch_url} if args.opensearch_url \
        else {"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": args.path}
    events = processed_listing_events(client("s3"), bucket)
    print(f"{len(events):,} listing events in s3://{bucket}/events/")
    if not args.opensearch_url:
        import shutil

        shutil.rmtree(args.path, ignore_errors=True)  # a rebuild: nothing of a previous index survives
    with open_backend({**os.environ, **env}) as backend:
        written = reindex(backend, events, progress=Progress("ads written"))
    print(f"reindexed {written:,} listings into {backend.name}")
    return 0


def cmd_ml(args: argparse.Namespace) -> int:
    """train: the Batch job's training on the running local stage; serve: the serving API + the validator."""
    from letgo.ml_local import PointerEvents, serve_forever, train
    from letgo.stage import StageNames

    _stage_info()
    names = StageNames()
    definition = Path(args.definition)
    if args.action == "train":
        code, report = train(processed_bucket=names.processed_bucket, partitioned_bucket=names.partitioned_bucket,
                             models_bucket=names.models_bucket, definition=definition)
        print(report.summary() if report is not None else "training failed before a report (see the log)")
        return code
    events = PointerEvents.subscribe(names.models_bucket, "letgo-model-pointers-stage")
    return serve_forever(models_bucket=names.models_bucket, pointer_events=events, definition=definition)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="letgo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main job: local stage, synthetic traffic, report")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    stage = sub.add_parser("stage", help="the local stage")
    stage.add_argument("action", choices=["up", "down"])
    stage.add_argument("--write-key", default="local-write-key")
    stage.set_defaults(func=lambda a: cmd_stage_up(a) if a.action == "up" else cmd_stage_down(a))

    events = sub.add_parser("events", help="validate or send a file of events (JSON lines or a JSON array)")
    events.add_argument("action", choices=["validate", "send"])
    events.add_argument("file")
    events.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    events.add_argument("--stream", help="stream name (default: the running local stage's)")
    events.set_defaults(func=lambda a: cmd_validate(a) if a.action == "validate" else cmd_send(a))

    quarantine = sub.add_parser("quarantine", help="re-drive quarantined events")
    quarantine.add_argument("action", choices=["redrive"])
    quarantine.add_argument("--stream", help="stream name (default: the running local stage's)")
    quarantine.set_defaults(func=cmd_redrive)

    recover = sub.add_parser("recover", help="re-deliver batches the stream functions gave up on (on-failure queues)")
    recover.add_argument("--function", choices=["all", "consumer", "statistics", "search-indexer"], default="all")
    recover.add_argument("--stage", help="a deployed stage (DEV, PROD…): invoke its functions (default: the local stage)")
    recover.add_argument("--dry-run", action="store_true", help="list what would be re-delivered; change nothing")
    recover.set_defaults(func=cmd_recover)

    alerts = sub.add_parser("alerts", help="list locally stored Sentry issues")
    alerts.add_argument("--path", help="the local Sentry store (default: the running local stage's)")
    alerts.set_defaults(func=cmd_alerts)

    types = sub.add_parser("types", help="event-type versions")
    types.add_argument("action", choices=["lock", "check"])
    types.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    types.set_defaults(func=cmd_types)

    db = sub.add_parser("db", help="PostgreSQL schema")
    db.add_argument("action", choices=["migrate"])
    db.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), required=not os.environ.get("DATABASE_URL"))
    db.set_defaults(func=cmd_migrate)

    metrics = sub.add_parser("metrics", help="read real-time statistics back: a table or a PNG chart")
    metrics.add_argument("action", choices=["show", "chart", "replay", "upstream"])
    metrics.add_argument("name", nargs="?", help="metric name (metrics/<name>.yaml); replay: only this metric")
    metrics.add_argument("--since", help="replay: the point in time the bug began (ISO-8601 with offset)")
    metrics.add_argument("--retention-hours", type=float, default=168,
                         help="replay: the stream's retention; older starts read the raw archive")
    metrics.add_argument("--stage", help="replay on AWS: the deployed stage (DEV, PROD…) instead of the local stage")
    metrics.add_argument("--window-seconds", type=int, default=60, help="replay on AWS: the stream window")
    metrics.add_argument("--last", type=_last_windows, default=60, help="how many windows, 1..1440 (default 60)")
    metrics.add_argument("--out", help="chart: PNG path (default reports/metric-<name>-<time>.png)")
    metrics.add_argument("--dsn", help="PostgreSQL DSN (default: the running local stage's DATABASE_URL)")
    metrics.add_argument("--metrics-dir", default=str(REPO_ROOT / "metrics"))
    metrics.add_argument("--alerts", help="upstream: the local Sentry store (default: the running local stage's)")
    metrics.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    metrics.set_defaults(func=cmd_metrics)

    warehouse = sub.add_parser("warehouse", help="the local warehouse: events by type and day, queried with SQL")
    warehouse.add_argument("action", choices=["sync", "query", "prompt", "migrate", "load"])
    warehouse.add_argument("sql", nargs="?", help="query: the SQL to run")
    warehouse.add_argument("--file", help="query: read the SQL from this file")
    warehouse.add_argument("--dir", default=str(WAREHOUSE_DIR), help="the warehouse folder (default .local/warehouse)")
    warehouse.add_argument("--bucket", help="sync: the processed-events bucket (default: the local stage's)")
    warehouse.add_argument("--limit", type=int, default=200, help="print at most this many rows (default 200)")
    warehouse.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    warehouse.add_argument("--stage", help="migrate/load: the deployed stage (DEV, PROD)")
    warehouse.add_argument("--day", help="load: the UTC day of the objects to (re)load, YYYY-MM-DD")
    warehouse.add_argument("--type", help="load: only this event type (default: every type with a load spec)")
    warehouse.set_defaults(func=cmd_warehouse)
    search = sub.add_parser("search", help="search tooling: rebuild an index from the processed events")
    search.add_argument("action", choices=["reindex", "setup"])
    search.add_argument("--stage", help="setup: the deployed stage (run from inside its VPC: the domain is private)")
    search.add_argument("--replicas", type=int, help="setup: replica shards (default 1 on PROD, else 0)")
    search.add_argument("--bucket", help="the processed-events bucket (default: the running local stage's)")
    search.add_argument("--path", default=str(REPO_ROOT / ".local" / "search-reindex"),
                        help="tantivy: the index directory to (re)build (default .local/search-reindex)")
    search.add_argument("--opensearch-url", help="rebuild an OpenSearch cluster's indices instead (alias swap)")
    search.set_defaults(func=cmd_search)

    ml = sub.add_parser("ml", help="the price model on the running local stage: train it, serve it")
    ml.add_argument("action", choices=["train", "serve"])
    ml.add_argument("--definition", default=str(REPO_ROOT / "models" / "price_suggestion.yaml"))
    ml.set_defaults(func=cmd_ml)
    return parser


def main(argv: list[str] | None = None) -> int:
    from handlers.tracking.errors import DefinitionError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DefinitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
