"""``make run``: the local stage end to end, with a report that proves where every event went.

Sets up the stage, pushes synthetic marketplace traffic (and a few events from the unmodified Segment
SDK through the local collector) onto the stream, drains it through the Lambda handler via the
event-source-mapping driver, runs the statistics over the same stream, indexes the listings and asks the
search API a few questions, trains / publishes / validates / serves the price model on the run's listings,
takes an inventory of every sink, writes the report as JSON and ends with::

    conservation: OK sent=… delivered=… quarantined=… duplicates=…
"""
from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

from handlers.core.alerts import read_local_alerts
from handlers.core.aws import client
from letgo import REPO_ROOT
from letgo.inventory import take_inventory
from letgo.producer import put_records
from letgo.progress import Progress
from letgo.stage import LocalStage
from letgo.traffic import generate


def run_demo(events: int = 20_000, *, workdir: Path | None = None, report_dir: Path | None = None,
             warehouse_dir: Path | None = None, seed: int = 7, shards: int = 2, batch_size: int = 500,
             say=print) -> dict[str, Any]:
    from letgo.lanes import drain_side_by_side
    from letgo.warehouse.demo import demo_summary

    workdir = workdir or REPO_ROOT / ".local" / "demo"  # not `stage up`'s folder: both may run at once
    report_dir = report_dir or REPO_ROOT / "reports"
    started = time.monotonic()
    timings: dict[str, float] = {}
    with LocalStage(workdir, shards=shards, batch_size=batch_size, say=say) as stage, ExitStack() as stack:
        timings["stage up"] = round(time.monotonic() - started, 1)
        now = datetime.now(timezone.utc)
        plan = generate(events, seed=seed, now=now)
        say(f"generated {plan.sent:,} events in {len(plan.records):,} records "
            f"(expected: {plan.expected_valid:,} valid, {plan.expected_duplicates:,} duplicates, "
            f"{sum(plan.expected_rejected_by_reason.values()):,} malformed)")
        with _timed(timings, "traffic to Kinesis"):
            progress = Progress("sent to Kinesis (records)", len(plan.records))
            put_records(client("kinesis"), stage.names.stream, ((r.partition_key, r.data) for r in plan.records),
                        progress=progress)
            progress.finish()

        # the three stream functions side by side, each on its own mapping, as on AWS
        assert stage.mapping is not None
        statistics = stack.enter_context(StatisticsRun(stage))
        search_run = stack.enter_context(SearchRun(stage))
        with _timed(timings, "consumer + statistics + search indexer, side by side"):
            progress = Progress("consumed by the handler (records)", len(plan.records))
            drain_side_by_side([("consumer", lambda: stage.mapping.drain(progress=progress)),
                                ("statistics", statistics.mapping.drain),
                                ("search-indexer", search_run.mapping.drain)])
            progress.finish()
        say(f"the consumer, the statistics and the search indexer read the stream side by side "
            f"({timings['consumer + statistics + search indexer, side by side']} s)")
        outcomes = stage.mapping.stats.outcomes
        duplicates = sum(o.duplicates for o in outcomes)
        with _timed(timings, "metrics read back + chart"):
            metrics = statistics.summary(report_dir)
        with _timed(timings, "search examples through the API"):
            search = search_run.examples()
        with _timed(timings, "model training, validation, serving"):
            ml = run_ml(stage, say)
        say("taking inventory of the sinks …")
        with _timed(timings, "inventory"):
            inventory = take_inventory(client("s3"), raw_bucket=stage.names.raw_bucket,
                                       quarantine_bucket=stage.names.quarantine_bucket,
                                       processed_bucket=stage.names.processed_bucket, database_url=stage.postgres.dsn)
        alerts = read_local_alerts(stage.sentry_path)
        with _timed(timings, "warehouse sync + analyst query"):
            warehouse = demo_summary(stage, say, target=warehouse_dir)

    report = build_report(plan, inventory, duplicates, stage, alerts, time.monotonic() - started)
    report["metrics"] = metrics
    report["search"] = search
    report["ml"] = ml
    report["warehouse"] = warehouse
    report["timings_seconds"] = timings
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"run-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))
    report["path"] = str(path)
    print_report(report, say)
    return report


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[step] = round(time.monotonic() - started, 1)


class StatisticsRun:
    """The statistics consumer on the stage's stream (tumbling windows), then each metric read back + a chart."""

    def __init__(self, stage: LocalStage) -> None:
        from handlers.statistics.lambda_statistics import build_handler

        self.handler = build_handler({"DATABASE_URL": stage.postgres.dsn})
        self.mapping = stage.new_window_mapping(self.handler.handle,
                                                window_seconds=self.handler.metrics.stream_window_seconds)

    def __enter__(self) -> "StatisticsRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handler.sink.close()

    def summary(self, report_dir: Path) -> dict[str, Any]:
        from letgo.metrics_view import dims_label, render_chart, window_rows

        handler = self.handler
        summary: dict[str, Any] = {}
        for metric in handler.metrics.metrics:
            rows = window_rows(metric, handler.sink.last_windows(metric.name, 60))
            column = {"distinct_users": "distinct_users"}.get(metric.aggregation, metric.aggregation)
            latest = [r for r in rows if rows and r["window_start"] == rows[-1]["window_start"]]
            top = sorted(latest, key=lambda r: -(r.get(column) or 0))[:3]
            summary[metric.name] = {"windows": len({r["window_start"] for r in rows}),
                                    "aggregation": metric.aggregation,
                                    "latest_window": str(rows[-1]["window_start"]) if rows else None,
                                    "top": [{"group": dims_label(r["dims"]), "value": r.get(column)} for r in top]}
        chart_metric = handler.metrics.get("leads_per_category")
        chart = render_chart(chart_metric, window_rows(chart_metric, handler.sink.last_windows(chart_metric.name, 60)),
                             report_dir / f"metric-leads_per_category-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.png")
        return {"final_invocations": self.mapping.stats.final_invocations, "metrics": summary, "chart": str(chart)}


class SearchRun:
    """The search indexer on the stage's stream into the embedded engine; then the API on a free port, examples."""

    def __init__(self, stage: LocalStage) -> None:
        import shutil

        from handlers.search.indexer import Indexer
        from handlers.search.tantivy_backend import TantivyBackend
        from letgo.search_local import IndexerInvoke

        self.index_dir = stage.workdir / "search"
        shutil.rmtree(self.index_dir, ignore_errors=True)  # this run's listings only
        self.backend = TantivyBackend(self.index_dir)
        self.invoke = IndexerInvoke(Indexer(self.backend))
        self.mapping = stage.new_mapping(invoke=self.invoke, function="search-indexer", batch_size=500)
        self.mapping.start("TRIM_HORIZON")

    def __enter__(self) -> "SearchRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.backend.close()

    def examples(self) -> dict[str, Any]:
        from handlers.search.api import ApiConfig, create_app
        from letgo.search_local import run_examples
        from letgo.services import BackgroundServer

        self.backend.refresh()
        with BackgroundServer(create_app(self.backend, ApiConfig(max_request_seconds=None))) as api:
            examples = list(run_examples(api.url))
        outcome = self.invoke.outcome
        return {"listing_events": outcome.events, "indexed": outcome.indexed, "removed": outcome.removed,
                "skipped": len(outcome.skipped), "index": str(self.index_dir), "examples": examples}


def run_ml(stage: LocalStage, say=print) -> dict[str, Any]:
    """Train every model on this run's listings (publishing candidates), serve them all, let the validator make
    the candidates live, and ask each model its golden inputs as a user would."""
    from letgo.ml_local import PointerEvents, serve_and_validate, train

    names = stage.names
    say("training the models (models/*.yaml) on this run's listings …")
    events = PointerEvents.subscribe(names.models_bucket, "letgo-model-pointers-demo")
    try:
        trained = train(processed_bucket=names.processed_bucket, partitioned_bucket=names.partitioned_bucket,
                        models_bucket=names.models_bucket, say=say)
        result: dict[str, Any] = {
            "training": {name: report.to_dict() if report is not None else None
                         for name, (_, report) in trained.items()},
            "exit_codes": {name: code for name, (code, _) in trained.items()}}
        if any(report is not None and report.version for _, report in trained.values()):
            result.update(serve_and_validate(models_bucket=names.models_bucket, pointer_events=events,
                                             change_memory=stage.postgres.dsn))
    finally:
        events.close()
    return result


def build_report(plan: Any, inventory: Any, duplicates: int, stage: LocalStage, alerts: list[dict[str, Any]],
                 seconds: float) -> dict[str, Any]:
    sent, delivered, quarantined = plan.sent, inventory.postgres_rows, inventory.quarantined
    checks = {
        "sent == delivered + quarantined + duplicates": sent == delivered + quarantined + duplicates,
        "every record archived": inventory.archived == len(plan.records),
        "firehose delivered each event once": inventory.firehose_distinct == delivered == inventory.firehose_records,
        "quarantine reasons as generated": inventory.quarantined_by_reason == plan.expected_rejected_by_reason,
        "duplicates as generated": duplicates == plan.expected_duplicates,
    }
    assert stage.mapping is not None
    return {
        "sent": sent, "records": len(plan.records), "archived": inventory.archived,
        "archive_objects": inventory.archive_objects,
        "delivered": {"postgres": delivered, "firehose": inventory.firehose_distinct,
                      "firehose_objects": inventory.firehose_objects},
        "delivered_by_type": inventory.postgres_by_type,
        "quarantined": quarantined, "quarantined_by_reason": inventory.quarantined_by_reason,
        "duplicates": duplicates,
        "expected": {"valid": plan.expected_valid, "duplicates": plan.expected_duplicates,
                     "rejected_by_reason": plan.expected_rejected_by_reason},
        "mapping": {k: v for k, v in asdict(stage.mapping.stats).items() if k != "outcomes"},
        "alerts": [{"title": a["title"], "count": a["count"], "sentry_events": a["events"],
                    "app_versions": dict(a["app_versions"])} for a in alerts],
        "checks": checks, "ok": all(checks.values()), "seconds": round(seconds, 1),
    }


def print_model(name: str, training: dict[str, Any], served: dict[str, Any], say=print) -> None:
    """A model's lines: its training decision and metrics, what the validator did, a user's answers."""
    metrics = ", ".join(f"{k} {v:.3g}" for k, v in (training.get("metrics") or {}).items())
    rows = training.get("rows") or {}
    say(f"  ml             {name}: {training.get('decision', 'failed')} {training.get('version') or ''} "
        f"(train {rows.get('train', 0):,} rows, holdout {rows.get('holdout', 0):,}; {metrics})")
    for failure in training.get("failures") or []:
        say(f"      - {failure}")
    for validation in served.get("validations", []):
        detail = f" ({validation['detail']})" if validation.get("detail") else ""
        say(f"      validator: {validation['headline']}{detail}")
    for prediction in served.get("predictions", []):
        body = prediction["output"] or {}
        shown = body.get("prediction", body)
        if isinstance(shown, dict):
            shown = {k: v for k, v in shown.items() if k != "alternatives"}
        say(f"      POST {prediction['endpoint']} {prediction['input'].get('title')!r} -> {prediction['status']} "
            f"{shown}")


def print_report(report: dict[str, Any], say=print) -> None:
    say("")
    say("== where every event went ==")
    say(f"  sent           {report['sent']:>8,}  events in {report['records']:,} Kinesis records")
    say(f"  archived       {report['archived']:>8,}  raw records in {report['archive_objects']:,} S3 objects")
    say(f"  delivered      {report['delivered']['postgres']:>8,}  PostgreSQL rows"
        f" | {report['delivered']['firehose']:,} via Firehose to S3")
    for name, count in report["delivered_by_type"].items():
        say(f"      {name:<16}{count:>8,}")
    say(f"  quarantined    {report['quarantined']:>8,}")
    for reason, count in report["quarantined_by_reason"].items():
        say(f"      {reason:<22}{count:>6,}")
    say(f"  duplicates     {report['duplicates']:>8,}  (same messageId, dropped)")
    m = report["mapping"]
    say(f"  mapping        {m['invocations']:,} invocations, {m['function_errors']} errors, "
        f"{m['partial_failures']} partial failures, {m['sent_to_on_failure']} to the on-failure queue")
    say(f"  sentry issues  {len(report['alerts'])} (one per event type and problem; `letgo alerts` lists them)")
    stats = report.get("metrics") or {}
    if stats:
        say(f"  statistics     {stats['final_invocations']} windows written (Lambda tumbling windows, 1 min)")
        for name, metric in stats["metrics"].items():
            top = ", ".join(f"{t['group']}: {t['value']:,.6g}" for t in metric["top"] if t["value"] is not None)
            say(f"      {name:<26} {metric['aggregation']:<15} latest window: {top}")
        say(f"  chart          {stats['chart']}")
    ml = report.get("ml")
    if ml:
        for name, training in (ml.get("training") or {}).items():
            print_model(name, training or {}, (ml.get("models") or {}).get(name) or {}, say)
        for filename, problem in (ml.get("disabled") or {}).items():
            say(f"  ml             {filename}: NOT served: {problem}")
    search = report.get("search")
    if search:
        say(f"  search         {search['listing_events']:,} listing events -> {search['indexed']:,} ads indexed, "
            f"{search['removed']:,} removed (sold/deleted), {search['skipped']} skipped; example queries:")
        from letgo.search_local import say_examples

        say_examples(search["examples"], lambda line: say("    " + line))
    for name, ok in report["checks"].items():
        say(f"  [{'ok' if ok else 'FAILED'}] {name}")
    timings = report.get("timings_seconds") or {}
    if timings:
        say("  time           " + ", ".join(f"{step} {seconds:g} s" for step, seconds in timings.items()))
    say(f"report: {report['path']}  ({report['seconds']} s)")
    status = "OK" if report["ok"] else "FAILED"
    say(f"conservation: {status} sent={report['sent']} delivered={report['delivered']['postgres']} "
        f"quarantined={report['quarantined']} duplicates={report['duplicates']}")
