"""PostgreSQL/Aurora schema migrations (``letgo db migrate``, and the local stage at start): ordered SQL files,
each applied once, never by hand.

``migrations/postgres/NNNN_name.sql`` run in order inside one transaction each, recorded in
``schema_migrations``; an advisory lock keeps two deployers from racing.
"""
from __future__ import annotations

from pathlib import Path

import psycopg

from letgo import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "migrations" / "postgres"
_LOCK_ID = 0x1E7_60


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    applied_now = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for path in sorted(Path(directory).glob("*.sql")):
                if path.stem in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.stem,))
                applied_now.append(path.stem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now
