"""``letgo quarantine redrive`` and ``letgo recover``: what the platform set aside, back on its way.

Re-drive: quarantined events the current event types accept go back on the stream (:mod:`letgo.redrive`).
Recover: the batches a mapping gave up on, re-read and re-delivered from its on-failure queue
(:mod:`letgo.recover`; a deployed stage's wiring in :mod:`letgo.ops.recoveries`).
"""
from __future__ import annotations

import argparse
from typing import Any

FUNCTIONS = ["consumer", "statistics", "search-indexer"]


def register(sub: Any) -> None:
    quarantine = sub.add_parser("quarantine", help="re-drive quarantined events")
    quarantine.add_argument("action", choices=["redrive"])
    quarantine.add_argument("--stream", help="stream name (default: the running local stage's)")
    quarantine.set_defaults(func=cmd_redrive)

    recover = sub.add_parser("recover", help="re-deliver batches the stream functions gave up on (on-failure queues)")
    recover.add_argument("--function", choices=["all", *FUNCTIONS], default="all")
    recover.add_argument("--stage",
                         help="a deployed stage (DEV, PROD…): invoke its functions (default: the local stage)")
    recover.add_argument("--dry-run", action="store_true", help="list what would be re-delivered; change nothing")
    recover.set_defaults(func=cmd_recover)


def cmd_redrive(args: argparse.Namespace) -> int:
    from handlers.core.aws import client
    from handlers.schema.event_types import load_catalog
    from handlers.tracking.consumer import ConsumerConfig
    from handlers.tracking.processor import Processor
    from handlers.tracking.sinks.s3objects import Quarantine
    from letgo.progress import Progress
    from letgo.redrive import redrive
    from letgo.stage_control import stage_info

    stream = args.stream or stage_info("(or pass --stream)")["stream"]
    config = ConsumerConfig.from_env()
    processor = Processor(load_catalog(config.event_types_dir, max_depth=config.settings.max_depth), config.settings)
    progress = Progress("quarantine objects")
    report = redrive(Quarantine(client("s3"), config.quarantine_bucket, "quarantine"), processor,
                     client("kinesis"), stream, progress=progress)
    progress.finish()
    print(f"re-driven: {report.redriven} events back on {stream}; still invalid: {report.still_invalid} "
          f"{report.still_invalid_by_reason or ''}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Re-deliver what the mappings gave up on, from their on-failure queues (local stage, or --stage on AWS)."""
    from handlers.core.aws import client
    from letgo.progress import Progress

    functions = [args.function] if args.function != "all" else FUNCTIONS
    if args.stage:
        from letgo.ops.recoveries import stage_recoveries

        recoveries = stage_recoveries(client("cloudformation"), args.stage, functions, say=print)
    else:
        from letgo.recover import local_recoveries
        from letgo.stage_control import stage_info

        info = stage_info()
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
        from letgo.stage_control import recover_indexer_in_stage

        failed |= recover_indexer_in_stage(info, dry_run=args.dry_run)
    return 1 if failed else 0
