"""PostgreSQL sink (Aurora PostgreSQL in AWS): COPY-speed, one row per ``messageId``, outages told from bad data.

Rows are committed only after Firehose took the same events (see :meth:`PostgresSink.writing`), so a row
in PostgreSQL also means "sent to the warehouse": a retry skips events PostgreSQL already has in *both*
sinks, and an app re-sending an event reaches neither twice.

**One row per messageId.** ``events`` is partitioned by day, and PostgreSQL can only enforce uniqueness
on a partitioned table with the partition key in the constraint: its primary key is
``(message_id, event_time)``. The plain table ``event_ids (message_id PRIMARY KEY, event_time)``
(migrations/postgres/0003_event_ids.sql) carries the uniqueness across days; it is written in the same
transaction as ``events``, so a messageId is in one exactly when its row is in the other.

**Fast path**: ``COPY event_ids`` (two narrow columns) then ``COPY events``, both binary, as the transaction's
first work — the common case costs two COPYs and no savepoint. Only a unique violation (a retried batch, an
app re-sending an event, with the same timestamp or not) rolls that back and takes the staging path: COPY
into a temporary table, then one statement that inserts the new ids ``ON CONFLICT DO NOTHING`` and the rows
of exactly those ids; the others count as duplicates (``Written.already_there``).

**Refused rows**: when PostgreSQL refuses the *data* (SQLSTATE class 22 data exception, 23 integrity other
than the messageId uniqueness, 54 program limit — e.g. a ``\\u0000`` escape inside a context key, which
``jsonb`` cannot store, or a NUL in a messageId, which no text column can), the batch is inserted row by
row, each in its own savepoint: the refused rows are returned in :attr:`Written.refused` (the caller
quarantines them) and the rest is inserted.

**Outages**: anything else — connection refused or reset, the server shutting down mid-transaction, a
database in recovery, a statement timeout, a serialization failure, an undefined table — raises
:class:`SinkUnavailable` and drops the connection, so the next call reconnects. Connecting is bounded by
``connect_timeout`` and every statement by ``statement_timeout``. Daily partitions are created on demand.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from handlers.core.failures import describe, postgres_data_error
from handlers.tracking.errors import SinkError, SinkUnavailable
from handlers.tracking.processor import Event

COLUMNS = ("message_id", "event_type", "event_time", "received_at", "sent_at", "user_id", "anonymous_id",
           "schema_version", "context", "properties")
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
DEFAULT_STATEMENT_TIMEOUT = 30.0
_COPY_COLUMN = re.compile(r"COPY \S+, line \d+, column (\w+)")


@dataclass
class Written:
    """What one :meth:`PostgresSink.writing` did; every event given is in exactly one of the three outcomes.

    ``inserted``: rows inserted now. ``already_there``: messageIds of events not inserted because a row with
    that messageId exists (committed before, whatever its timestamp, or earlier in the same batch — the
    core removes in-batch duplicates, so in practice the former). ``refused``: messageId -> why PostgreSQL
    refused that event's values (not inserted; the rest of the batch is). ``discarded``: messageIds the
    caller asked to remove again before the commit (see :meth:`discard`).
    """

    inserted: int = 0
    already_there: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    discarded: set[str] = field(default_factory=set)

    def discard(self, message_ids: set[str]) -> None:
        """Remove these events' rows (and ids) before the commit; ids this transaction did not insert are
        left alone (a row committed earlier is never deleted)."""
        self.discarded |= message_ids


def event_row(event: Event) -> tuple[Any, ...]:
    return (event.message_id, event.type, event.timestamp, event.received_at, event.sent_at, event.user_id,
            event.anonymous_id, event.version, event.context_json(), event.properties_json())


# The fast path COPYs in binary: no text to escape on our side, none to scan and parse on the server's, and
# the three timestamps travel as what PostgreSQL stores (int64 microseconds since 2000-01-01 UTC, the wire
# format of timestamptz, sent as int8). jsonb's binary form is a version byte (1) followed by the JSON text.
BINARY_TYPES = ("text", "text", "int8", "int8", "int8", "text", "text", "int4", "bytea", "bytea")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_SECOND_MICROS: dict[str, int] = {}


def pg_micros(timestamp: str | None) -> int | None:
    """A timestamp string as PostgreSQL's timestamptz: microseconds since 2000-01-01 UTC.

    The core's canonical form (``YYYY-MM-DDTHH:MM:SS.mmmZ``) is converted once per second and cached, as the
    core does: a batch's events cluster within seconds. Anything else is parsed in full.
    """
    if timestamp is None:
        return None
    canonical = (len(timestamp) == 24 and timestamp[23] == "Z" and timestamp[19] == "."
                 and timestamp[20:23].isdigit())
    if canonical:
        second = timestamp[:19]
        base = _SECOND_MICROS.get(second)
        if base is None:
            delta = datetime.fromisoformat(second).replace(tzinfo=timezone.utc) - _PG_EPOCH
            base = (delta.days * 86400 + delta.seconds) * 1_000_000
            if len(_SECOND_MICROS) > 65536:
                _SECOND_MICROS.clear()
            _SECOND_MICROS[second] = base
        return base + int(timestamp[20:23]) * 1000
    moment = datetime.fromisoformat(timestamp)
    delta = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)) - _PG_EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def binary_row(event: Event, event_time: int | None = None) -> tuple[Any, ...]:
    """:func:`event_row` for a binary COPY (see ``BINARY_TYPES``); ``event_time``: ``pg_micros(event.timestamp)``
    when the caller has it already."""
    if event_time is None:
        event_time = pg_micros(event.timestamp)
    return (event.message_id, event.type, event_time, pg_micros(event.received_at),
            pg_micros(event.sent_at), event.user_id, event.anonymous_id, event.version,
            b"\x01" + event.context_json().encode(), b"\x01" + event.properties_json().encode())


def partition_name(day: date) -> str:
    return f"events_{day:%Y%m%d}"


def is_data_error(exc: BaseException) -> bool:
    """PostgreSQL refused the values (class 22/23/54), or psycopg refused to send them (a NUL in a text
    value: a ``DataError`` raised by the driver itself, without SQLSTATE)."""
    return postgres_data_error(exc) or (isinstance(exc, psycopg.DataError) and not getattr(exc, "sqlstate", None))


def refusal(exc: psycopg.Error, row: Sequence[Any]) -> str:
    """A specific, bounded message for a refused row: the column when PostgreSQL (or the value) says it."""
    diag = exc.diag
    column = diag.column_name
    if not column and diag.context:
        found = _COPY_COLUMN.search(diag.context)
        column = found.group(1) if found else None
    if not column and not exc.sqlstate:  # refused by the driver: find the value it cannot send
        column = next((name for name, value in zip(COLUMNS, row) if isinstance(value, str) and "\x00" in value),
                      None)
    text = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if diag.message_detail:
        text += f" — {diag.message_detail}"
    where = f"column {column}: " if column else ""
    origin = f"SQLSTATE {exc.sqlstate}" if exc.sqlstate else "refused by the driver before sending"
    return f"PostgreSQL refused the row: {where}{text[:300]} ({origin})"


class _AlreadyThere(Exception):
    """Rolls back one row's savepoint: its messageId is already stored."""


def _no_partition(exc: psycopg.Error) -> bool:
    # SQLSTATE 23514 is a check violation, a data class, but "no partition" is about the table, not the row
    return exc.sqlstate == "23514" and (exc.diag.message_primary or "").startswith("no partition of relation")


class PostgresSink:
    sink = "postgres"

    def __init__(self, dsn: str | Callable[[], str], *, table: str = "events", ids_table: str = "event_ids",
                 connect_timeout: int = 5,
                 statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT) -> None:
        """``connect_timeout`` (seconds) bounds connecting; ``statement_timeout`` (seconds; None or 0 leaves
        the server's setting) bounds every statement, sent as ``-c statement_timeout`` when connecting. A
        batch's statements take milliseconds; 30 s is far above that (a cold cache, a partition DDL waiting
        on a lock still pass) and half the consumer Lambda's 60 s timeout, so a server that accepts
        connections but does not answer fails the batch as an outage instead of the function being killed.

        ``dsn`` may be a callable (:class:`~handlers.core.secrets.DatabaseUrl`): it is asked at every connect,
        and told (``refused()``) when connecting failed, so a rotated password is read again."""
        self.dsn, self.table, self.ids_table = dsn, table, ids_table
        self.connect_timeout, self.statement_timeout = connect_timeout, statement_timeout
        self._conn: psycopg.Connection | None = None
        self._partitions: set[date] = set()  # days whose partition exists (seen committed)
        t, ids = sql.Identifier(table), sql.Identifier(ids_table)
        self._copy_rows = sql.SQL("COPY {} ({}) FROM STDIN").format(t, _COLUMN_LIST)
        self._copy_ids_binary = sql.SQL("COPY {} (message_id, event_time) FROM STDIN (FORMAT BINARY)").format(ids)
        self._copy_rows_binary = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(t, _COLUMN_LIST)
        self._insert_id = sql.SQL("INSERT INTO {} (message_id, event_time) VALUES (%s, %s) "
                                  "ON CONFLICT DO NOTHING RETURNING message_id").format(ids)
        self._staged_insert = sql.SQL(
            "WITH new_ids AS (INSERT INTO {ids} (message_id, event_time) SELECT message_id, event_time "
            "FROM staging_events ON CONFLICT DO NOTHING RETURNING message_id) "
            "INSERT INTO {t} ({cols}) SELECT {scols} FROM staging_events s JOIN new_ids USING (message_id) "
            "ON CONFLICT DO NOTHING RETURNING message_id").format(
            ids=ids, t=t, cols=_COLUMN_LIST, scols=sql.SQL(", ").join(sql.Identifier("s", c) for c in COLUMNS))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = None
            dsn = self.dsn() if callable(self.dsn) else self.dsn
            extra: dict[str, Any] = {}
            if self.statement_timeout:
                options = conninfo_to_dict(dsn).get("options") or ""
                extra["options"] = f"{options} -c statement_timeout={round(self.statement_timeout * 1000)}".strip()
            try:
                self._conn = psycopg.connect(dsn, connect_timeout=self.connect_timeout, autocommit=False, **extra)
            except psycopg.OperationalError:
                refused = getattr(self.dsn, "refused", None)
                if refused is not None:  # perhaps a rotated password: read the secret again next time
                    refused()
                raise
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already; we only want it gone
                pass

    def _rollback(self) -> None:
        """Leave no transaction open; a connection that cannot even roll back is dropped."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except psycopg.Error:
            self._drop_connection()

    def _failure(self, exc: psycopg.Error) -> SinkError:
        self._rollback()
        if is_data_error(exc) and not _no_partition(exc):
            return SinkError(self.sink, describe(exc))  # about data, yet not pinned on rows: fail the batch
        self._drop_connection()  # the next call reconnects
        return SinkUnavailable(self.sink, describe(exc))

    def close(self) -> None:
        self._drop_connection()

    def write(self, events: Sequence[Event]) -> Written:
        """Insert the events once and commit."""
        with self.writing(events) as written:
            pass
        return written

    @contextmanager
    def writing(self, events: Sequence[Event]) -> Iterator[Written]:
        """Insert inside an open transaction, let the caller deliver elsewhere, then commit.

        The caller may ``discard`` events its other sink could not take: their rows and ids are deleted
        before the commit, so a retry of those records inserts them again instead of skipping them as
        duplicates. An exception from the caller rolls everything back.

        Raises :class:`SinkUnavailable` when PostgreSQL cannot take anything now (the batch must wait and be
        retried whole), and a plain :class:`SinkError` for a data error that could not be pinned on rows.
        """
        written = Written()
        if not events:
            yield written
            return
        created: set[date] = set()
        try:
            conn = self._connection()
            placed = self._insert(conn, events, written, created)
        except psycopg.Error as exc:
            raise self._failure(exc) from exc
        except BaseException:
            self._rollback()  # never leave rows in an open transaction for the next batch to commit
            raise
        try:
            yield written
        except BaseException:
            self._rollback()
            raise
        try:
            doomed = [m for m in written.discarded if m in placed]
            if doomed:
                self._delete(conn, doomed, [placed[m] for m in doomed])
            conn.commit()
        except psycopg.Error as exc:
            raise self._failure(exc) from exc
        except BaseException:
            self._rollback()
            raise
        self._partitions |= created  # only once committed: rolled-back DDL must not be remembered

    def _insert(self, conn: psycopg.Connection, events: Sequence[Event], written: Written,
                created: set[date]) -> dict[str, str]:
        """Insert what is new in one open transaction; fills ``written``; returns messageId -> event_time of the
        rows inserted. The fast path is the transaction's only work, so instead of paying a savepoint on
        every batch, a fast path that fails is rolled back whole and the batch goes another way."""
        path, retried_partitions = self._fast, False
        while True:
            created.clear()
            created |= self._ensure_partitions(conn, events)
            try:
                return path(conn, events, written)
            except psycopg.Error as exc:
                conn.rollback()
                written.inserted, written.already_there, written.refused = 0, [], {}
                if _no_partition(exc) and not retried_partitions:
                    self._partitions.clear()  # a cached partition was dropped (retention): create it again
                    retried_partitions = True
                    continue
                if path == self._row_by_row or _no_partition(exc) or not is_data_error(exc):
                    raise
                # a messageId already stored (or twice in the batch) -> staging; values refused -> row by row
                is_duplicate = isinstance(exc, psycopg.errors.UniqueViolation) and path == self._fast
                path = self._staged if is_duplicate else self._row_by_row

    def _ensure_partitions(self, conn: psycopg.Connection, events: Sequence[Event]) -> set[date]:
        """Create the daily partitions this batch needs that are not known to exist; returns their days."""
        days = {date.fromisoformat(day) for day in {e.timestamp[:10] for e in events}} - self._partitions
        for day in sorted(days):
            try:
                with conn.transaction():  # savepoint: another consumer may be creating it right now
                    conn.execute(sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {part} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"
                    ).format(part=sql.Identifier(partition_name(day)), table=sql.Identifier(self.table),
                             lo=sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                             hi=sql.Literal(f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00")))
            except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
                pass  # lost that race (its pg_type row collided): the partition exists now
        return days

    def _fast(self, conn: psycopg.Connection, events: Sequence[Event], written: Written) -> dict[str, str]:
        """Two COPYs: the ids (their primary key refuses a messageId already stored), then the rows."""
        times = [pg_micros(e.timestamp) for e in events]
        with conn.cursor() as cur:
            with cur.copy(self._copy_ids_binary) as copy:
                copy.set_types(("text", "int8"))
                for event, event_time in zip(events, times):
                    copy.write_row((event.message_id, event_time))
            with cur.copy(self._copy_rows_binary) as copy:
                copy.set_types(BINARY_TYPES)
                for event, event_time in zip(events, times):  # built as sent: encoding overlaps the server's work
                    copy.write_row(binary_row(event, event_time))
        written.inserted = len(events)
        return {e.message_id: e.timestamp for e in events}

    def _staged(self, conn: psycopg.Connection, events: Sequence[Event], written: Written) -> dict[str, str]:
        """Some messageIds exist already (or twice in the batch): insert only the new ones, first copy wins."""
        first: dict[str, str] = {}
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS staging_events "
                                "(LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
                sql.Identifier(self.table)))
            cur.execute("TRUNCATE staging_events")
            with cur.copy(sql.SQL("COPY staging_events ({}) FROM STDIN").format(_COLUMN_LIST)) as copy:
                for event in events:
                    if event.message_id not in first:
                        first[event.message_id] = event.timestamp
                        copy.write_row(event_row(event))
            cur.execute(self._staged_insert)
            inserted = {row[0] for row in cur.fetchall()}
        seen: set[str] = set()
        for event in events:
            if event.message_id in inserted and event.message_id not in seen:
                seen.add(event.message_id)
            else:
                written.already_there.append(event.message_id)
        written.inserted = len(inserted)
        return {m: first[m] for m in inserted}

    def _row_by_row(self, conn: psycopg.Connection, events: Sequence[Event], written: Written) -> dict[str, str]:
        """PostgreSQL refused some values: find which rows, one savepoint each, and insert all the others."""
        placed: dict[str, str] = {}
        tried: set[str] = set()
        for event in events:
            message_id = event.message_id
            if message_id in tried:  # a later copy in the same batch: the first one was tried already
                written.already_there.append(message_id)
                continue
            tried.add(message_id)
            row = event_row(event)
            try:
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.execute(self._insert_id, (message_id, event.timestamp))
                        if cur.fetchone() is None:
                            raise _AlreadyThere
                        with cur.copy(self._copy_rows) as copy:  # a COPY error names the column
                            copy.write_row(row)
            except (_AlreadyThere, psycopg.errors.UniqueViolation):
                written.already_there.append(message_id)
                continue
            except psycopg.Error as exc:
                if _no_partition(exc) or not is_data_error(exc):
                    raise
                written.refused[message_id] = refusal(exc, row)
                continue
            placed[message_id] = event.timestamp
        written.inserted = len(placed)
        return placed

    def _delete(self, conn: psycopg.Connection, message_ids: list[str], event_times: list[str]) -> None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE (message_id, event_time) IN "
                             "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))").format(
            sql.Identifier(self.table)), (message_ids, event_times))
        conn.execute(sql.SQL("DELETE FROM {} WHERE message_id = ANY(%s::text[])").format(
            sql.Identifier(self.ids_table)), (message_ids,))
