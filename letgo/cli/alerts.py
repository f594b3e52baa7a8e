"""``letgo alerts``: the locally stored Sentry issues, grouped as Sentry's issue list groups them."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="list locally stored Sentry issues")
    alerts.add_argument("--path", help="the local Sentry store (default: the running local stage's)")
    alerts.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    from handlers.core.alerts import read_local_alerts
    from letgo.stage_control import stage_info

    path = Path(args.path) if args.path else Path(stage_info("(or pass --path)")["env"]["SENTRY_LOCAL_PATH"])
    issues = read_local_alerts(path)
    if not issues:
        print(f"no alerts in {path}")
    for issue in issues:
        versions = ", ".join(f"{v} ({n})" for v, n in issue["app_versions"].most_common(3))
        print(f"{issue['count']:>7,} events  {issue['events']:>4} reports  {issue['title']}")
        print(f"{'':>23}{issue['first_message']}  [app {versions}]")
    return 0
