"""PostgreSQL sink (Aurora PostgreSQL in AWS): COPY-speed, idempotent on ``messageId``.

Rows are committed only after Firehose took the same events (see :meth:`PostgresSink.writing`), so a row
in PostgreSQL also means "sent to the warehouse": a retry skips events PostgreSQL already has in *both*
sinks, and an app re-sending an event reaches neither twice.

Fast path: ``COPY events FROM STDIN`` straight into the partitioned table inside a savepoint. Only when
that hits a unique violation (a retried batch, or an app re-sending an event) do we fall back to COPY into
a temporary staging table followed by ``INSERT … ON CONFLICT DO NOTHING`` — so the common case costs one
COPY and duplicates are still skipped, and counted. Daily partitions are created on demand.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql

from handlers.tracking.core import Event
from handlers.tracking.errors import SinkError

COLUMNS = ("message_id", "event_type", "event_time", "received_at", "sent_at", "user_id", "anonymous_id",
           "schema_version", "context", "properties")
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))


@dataclass
class Written:
    inserted: int = 0
    already_there: list[str] = field(default_factory=list)
    discarded: set[str] = field(default_factory=set)

    def discard(self, message_ids: set[str]) -> None:
        self.discarded |= message_ids


def event_row(event: Event) -> tuple[Any, ...]:
    return (event.message_id, event.type, event.timestamp, event.received_at, event.sent_at, event.user_id,
            event.anonymous_id, event.version, event.context_json(), event.properties_json())


def partition_name(day: date) -> str:
    return f"events_{day:%Y%m%d}"


class PostgresSink:
    sink = "postgres"

    def __init__(self, dsn: str, *, table: str = "events", connect_timeout: int = 5) -> None:
        self.dsn, self.table, self.connect_timeout = dsn, table, connect_timeout
        self._conn: psycopg.Connection | None = None
        self._partitions: set[date] = set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=False)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, events: Sequence[Event]) -> tuple[int, list[str]]:
        """Insert the events once and commit. Returns (rows inserted, messageIds that were already there)."""
        with self.writing(events) as written:
            pass
        return written.inserted, written.already_there

    @contextmanager
    def writing(self, events: Sequence[Event]) -> Iterator["Written"]:
        """Insert inside an open transaction, let the caller deliver elsewhere, then commit.

        The caller may ``discard`` events its other sink could not take: their rows are deleted before the
        commit, so a retry of those records inserts them again instead of skipping them as duplicates. An
        exception from the caller rolls everything back.
        """
        written = Written()
        if not events:
            yield written
            return
        try:
            conn = self._connection()
            with conn.transaction():
                self._ensure_partitions(conn, events)
                written.inserted, written.already_there = self._copy(conn, events)
                yield written
                if written.discarded:
                    doomed = [e for e in events if e.message_id in written.discarded]
                    conn.execute(sql.SQL(
                        "DELETE FROM {} WHERE (message_id, event_time) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))").format(sql.Identifier(self.table)),
                        ([e.message_id for e in doomed], [e.timestamp for e in doomed]))
        except psycopg.Error as exc:
            self._partitions.clear()  # a rolled-back transaction may have rolled back partition DDL too
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None
            raise SinkError(self.sink, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from exc

    def _ensure_partitions(self, conn: psycopg.Connection, events: Sequence[Event]) -> None:
        days = {date.fromisoformat(e.timestamp[:10]) for e in events} - self._partitions
        for day in sorted(days):
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {part} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})").format(
                part=sql.Identifier(partition_name(day)), table=sql.Identifier(self.table),
                lo=sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                hi=sql.Literal(f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00")))
        self._partitions |= days

    def _copy(self, conn: psycopg.Connection, events: Sequence[Event]) -> tuple[int, list[str]]:
        rows = [event_row(e) for e in events]
        try:
            with conn.transaction():  # savepoint: a unique violation only undoes the fast path
                with conn.cursor() as cur:
                    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                            sql.Identifier(self.table), _COLUMN_LIST)) as copy:
                        for row in rows:
                            copy.write_row(row)
            return len(rows), []
        except psycopg.errors.UniqueViolation:
            pass
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS staging_events "
                                "(LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
                sql.Identifier(self.table)))
            cur.execute("TRUNCATE staging_events")
            with cur.copy(sql.SQL("COPY staging_events ({}) FROM STDIN").format(_COLUMN_LIST)) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(sql.SQL(
                "INSERT INTO {table} SELECT DISTINCT ON (message_id, event_time) * FROM staging_events "
                "ON CONFLICT DO NOTHING RETURNING message_id").format(table=sql.Identifier(self.table)))
            inserted = {row[0] for row in cur.fetchall()}
        duplicates = [e.message_id for e in events if e.message_id not in inserted]
        return len(inserted), duplicates
