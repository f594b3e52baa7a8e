"""The ``letgo`` command: one CLI for the platform's everyday jobs (``letgo --help`` lists them).

A thin layer on purpose: each module of this package registers one command group's arguments and, when it
runs, calls the module that does the work — the local stage (:mod:`letgo.stage`, :mod:`letgo.stage_control`),
the tools beside it (:mod:`letgo.replay`, :mod:`letgo.recover`, :mod:`letgo.redrive`, :mod:`letgo.warehouse`,
:mod:`letgo.search_local`, :mod:`letgo.ml_local`) or the AWS operations on a deployed stage (:mod:`letgo.ops`) —
then prints what came back. Expected failures are types, turned into one ``error:`` line and an exit status
here, in :func:`main`: a bad definition or configuration 2, no running stage or a missing stack 1 (a stage
already running: the commands that start one, as they import the stage).

Heavy imports happen inside the commands, so ``letgo events validate`` does not load the search engine.
"""
from __future__ import annotations

import argparse
import sys

from letgo.cli import alerts, demo, events, metrics, ml, quarantine, schema, search, stage, warehouse

USAGE = """\
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

# in the order `letgo --help` lists them
GROUPS = (demo, stage, events, quarantine, alerts, schema, metrics, warehouse, search, ml)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="letgo", description="``letgo`` — one CLI for the platform's everyday "
                                     "jobs.\n\n" + USAGE, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from handlers.core.config import ConfigError
    from handlers.schema.errors import DefinitionError
    from letgo.ops.stacks import StackError
    from letgo.stage_control import StageNotRunning, StageUnresponsive

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DefinitionError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StageNotRunning, StageUnresponsive) as exc:
        print(exc, file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
