"""``letgo types lock | check`` and ``letgo db migrate``: event-type versions and the PostgreSQL schema."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from letgo import REPO_ROOT


def register(sub: Any) -> None:
    types = sub.add_parser("types", help="event-type versions")
    types.add_argument("action", choices=["lock", "check"])
    types.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    types.set_defaults(func=cmd_types)

    db = sub.add_parser("db", help="PostgreSQL schema")
    db.add_argument("action", choices=["migrate"])
    db.add_argument("--dsn", help="the database (default: DATABASE_URL)")
    db.set_defaults(func=cmd_migrate)


def cmd_types(args: argparse.Namespace) -> int:
    from handlers.schema.compatibility import write_lock
    from handlers.schema.event_types import LOCK_FILE, load_catalog

    directory = Path(args.event_types)
    catalog = load_catalog(directory)  # refuses breaking changes against the current lock
    if args.action == "lock":
        write_lock(catalog.types, directory / LOCK_FILE, catalog.context_properties)
        print(f"locked {len(catalog.types)} event types in {directory / LOCK_FILE}")
    else:
        print(f"{len(catalog.types)} event types valid and compatible with {LOCK_FILE}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from handlers.core.config import Env
    from letgo.postgres_migrations import migrate

    applied = migrate(args.dsn or Env().required("DATABASE_URL", "or pass --dsn"))
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0
