"""``letgo warehouse``: the local warehouse (sync, query, prompt) and a deployed stage's (migrate, load).

``query`` and ``prompt`` take Redshift SQL by default (translated to DuckDB, :mod:`letgo.warehouse.redshift_sql`),
so a query copied from the Redshift query editor or the README runs unchanged; ``--dialect duckdb`` skips the
translation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from letgo import REPO_ROOT
from letgo.warehouse import DEFAULT_DIR as WAREHOUSE_DIR


def register(sub: Any) -> None:
    warehouse = sub.add_parser("warehouse", help="the local warehouse: events by type and day, queried with SQL")
    warehouse.add_argument("action", choices=["sync", "query", "prompt", "migrate", "load"])
    warehouse.add_argument("sql", nargs="?", help="query: the SQL to run")
    warehouse.add_argument("--file", help="query: read the SQL from this file")
    warehouse.add_argument("--dir", default=str(WAREHOUSE_DIR), help="the warehouse folder (default .local/warehouse)")
    warehouse.add_argument("--bucket", help="sync: the processed-events bucket (default: the local stage's)")
    warehouse.add_argument("--limit", type=int, default=200, help="print at most this many rows (default 200)")
    warehouse.add_argument("--dialect", choices=["redshift", "duckdb"], default="redshift",
                           help="query/prompt: the SQL dialect (default redshift: translated to DuckDB)")
    warehouse.add_argument("--show-sql", action="store_true", help="query: print the DuckDB SQL that runs")
    warehouse.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    warehouse.add_argument("--stage", help="migrate/load: the deployed stage (DEV, PROD)")
    warehouse.add_argument("--day", help="load: the UTC day of the objects to (re)load, YYYY-MM-DD")
    warehouse.add_argument("--type", help="load: only this event type (default: every type with a load spec)")
    warehouse.set_defaults(func=cmd_warehouse)


def cmd_warehouse(args: argparse.Namespace) -> int:
    if args.action in ("migrate", "load"):
        return cmd_warehouse_aws(args)
    if args.action == "sync":
        return cmd_sync(args)
    from letgo.warehouse.local import LocalWarehouse, repl, sql_history

    if args.action == "query":
        return cmd_query(args)
    with sql_history(Path(args.dir)), LocalWarehouse(Path(args.dir), event_types=Path(args.event_types),
                                                     dialect=args.dialect) as warehouse:
        repl(warehouse, limit=args.limit)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """The running local stage's Firehose output, laid out as AWS's dynamic partitioning lays it out."""
    from handlers.core.aws import client
    from letgo.progress import Progress
    from letgo.stage import StageNames
    from letgo.stage_control import stage_info
    from letgo.warehouse.local import materialise

    stage_info("(sync reads its Firehose output)")  # the running local stage's endpoint and credentials
    target = Path(args.dir)
    bucket = args.bucket or StageNames().processed_bucket
    events = materialise(client("s3"), bucket, target, progress=Progress("firehose objects"))
    print(f"materialised {events:,} distinct events from s3://{bucket}/events/ into {target / 'events'}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from letgo.warehouse.local import LocalWarehouse, format_table
    from letgo.warehouse.redshift_sql import RedshiftSqlError

    if bool(args.sql) == bool(args.file):
        print("error: query needs SQL or --file (one of them)", file=sys.stderr)
        return 2
    sql = Path(args.file).read_text() if args.file else args.sql
    with LocalWarehouse(Path(args.dir), event_types=Path(args.event_types), dialect=args.dialect) as warehouse:
        try:
            if args.show_sql:
                print(f"-- DuckDB SQL:\n{warehouse.translate(sql)}", file=sys.stderr)
            print(format_table(*warehouse.query(sql), limit=args.limit))
        except (duckdb.Error, RedshiftSqlError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if not any((Path(args.dir) / "events").glob("type=*")):
        print(f"note: {Path(args.dir) / 'events'} holds no events yet: `make run` or `letgo warehouse sync` "
              "fills it", file=sys.stderr)
    return 0


def cmd_warehouse_aws(args: argparse.Namespace) -> int:
    """migrate / load against a deployed stage (its stacks' outputs say where everything is)."""
    from datetime import date

    from botocore.exceptions import BotoCoreError, ClientError

    from handlers.core.aws import client
    from handlers.warehouse.redshift_data import StatementFailed
    from letgo.ops import warehouse
    from letgo.ops.redshift_migrations import MigrationError
    from letgo.progress import Progress

    if not args.stage:
        raise SystemExit(f"warehouse {args.action} works on a deployed stage: pass --stage DEV (or PROD)")
    try:
        stage = warehouse.StageWarehouse.from_stacks(client("cloudformation"), args.stage)
        if args.action == "migrate":
            report = warehouse.migrate(stage, s3=client("s3"))
            print(f"applied {len(report.applied)} migration(s), {report.statements} statement(s); "
                  f"load specs for {len(report.specs)} event types")
            return 0
        if not args.day:
            raise SystemExit("warehouse load needs --day YYYY-MM-DD")
        load = warehouse.day_load(stage, date.fromisoformat(args.day), s3=client("s3"), event_type=args.type)
        progress = Progress("objects", total=len(load.keys))
        load.run(progress)
        progress.finish()
        print(f"loaded {len(load.keys)} object(s) of {load.day} for {len(load.event_types)} event type(s)")
        return 0
    except (MigrationError, StatementFailed, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
