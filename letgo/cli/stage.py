"""``letgo stage up | down``: run the local stage until Ctrl-C or ``down`` (:mod:`letgo.stage_control`)."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    stage = sub.add_parser("stage", help="the local stage")
    stage.add_argument("action", choices=["up", "down"])
    stage.add_argument("--write-key", default="local-write-key")
    stage.set_defaults(func=cmd_stage)


def cmd_stage(args: argparse.Namespace) -> int:
    from letgo.stage_control import run_stage, stop_stage

    if args.action == "down":
        stop_stage()
        return 0
    from letgo.stage import StageAlreadyRunning

    try:
        return run_stage(args.write_key)
    except StageAlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
