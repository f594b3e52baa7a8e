"""``letgo metrics show | chart | replay | upstream``: real-time statistics read back, replayed, checked."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from letgo import REPO_ROOT


def register(sub: Any) -> None:
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


def _last_windows(raw: str) -> int:
    from letgo.metrics_view import parse_last

    try:
        return parse_last(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metrics_dsn(args: argparse.Namespace) -> str:
    from letgo.stage_control import stage_info

    return args.dsn or stage_info("(or pass --dsn)")["env"]["DATABASE_URL"]


def cmd_metrics(args: argparse.Namespace) -> int:
    if args.action == "upstream":
        return cmd_upstream(args)
    if args.action == "replay":
        return cmd_replay(args)
    from handlers.schema.event_types import load_catalog
    from handlers.statistics.definitions import load_metrics
    from handlers.statistics.sink import MetricSink
    from letgo.metrics_view import format_table, render_chart, window_rows

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
    print(format_table(metric, rows))
    return 0


def cmd_upstream(args: argparse.Namespace) -> int:
    """Upstream data alerts now: absent event types, unusual volumes — reported to the local Sentry store."""
    from handlers.core.alerts import init_sentry
    from handlers.core.config import Env
    from handlers.statistics import lambda_upstream
    from letgo.stage_control import stage_info

    alerts = Path(args.alerts or stage_info("(or pass --alerts)")["env"]["SENTRY_LOCAL_PATH"])
    init_sentry("local", local_path=alerts)  # findings land where `letgo alerts` reads them
    env = Env({"DATABASE_URL": _metrics_dsn(args), "STAGE": "local"})
    result = lambda_upstream.run(env, lambda_upstream.load(env))
    for finding in result["findings"]:
        print(f"{finding['check']:<12} {finding['message']}")
    print(f"{len(result['findings'])} finding(s), reported to Sentry ({alerts})")
    return 1 if result["findings"] else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Stop the statistics consumer, delete windows from T, replay from T, restart — with progress."""
    if not args.since:
        print("error: replay needs --since", file=sys.stderr)
        return 2
    if args.stage and not args.dsn:
        print("error: replay on AWS needs --dsn (the metrics database)", file=sys.stderr)
        return 2
    since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    if since.tzinfo is None:
        raise SystemExit("--since needs a UTC offset, e.g. 2026-11-26T09:30:00Z")
    retention = timedelta(hours=args.retention_hours)
    if args.stage:  # AWS: stop, remove the mapping, delete rows, add it back at T (letgo/ops/replay.py)
        from handlers.core.aws import client
        from letgo.ops.replay import PARAMETERS, replay_stage

        report = replay_stage(args.stage, since=since, dsn=args.dsn, lambda_client=client("lambda"),
                              cloudformation=client("cloudformation"), window_seconds=args.window_seconds,
                              retention=retention, metric=args.name)
        print(f"deleted {report.rows_deleted} rows from {report.since:%Y-%m-%dT%H:%M:%SZ}; " + "; ".join(report.notes))
        print(f"{PARAMETERS.relative_to(PARAMETERS.parents[1])} now says statistics_replay_from: "
              f"{int(report.since.timestamp())} under {args.stage.upper()}: commit it (make deploy keeps the mapping "
              f"there; a failed replay resumes when run again)")
        return 0
    from letgo.progress import Progress
    from letgo.replay import replay_running_stage
    from letgo.stage_control import stage_info

    replay_running_stage(stage_info(), since=since, retention=retention, metric=args.name,
                         progress=Progress("replayed records"))
    return 0



