"""``letgo demo``: the main job (``make run``) — the local stage, synthetic traffic, the report."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the main job: local stage, synthetic traffic, report")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from letgo.demo import run_demo
    from letgo.stage import StageAlreadyRunning

    try:
        report = run_demo(args.events, seed=args.seed)
    except StageAlreadyRunning as exc:  # `letgo stage up` in another shell: never wipe its folder
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if report["ok"] else 1
