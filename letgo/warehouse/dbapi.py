"""The local warehouse as a DB-API 2.0 connection, so that a notebook is the same on both sides.

Why: on JupyterHub a notebook talks to Redshift through ``redshift_connector`` (a DB-API 2.0 driver:
``conn.cursor()``, ``cursor.execute(sql)``, ``cursor.description``, ``cursor.fetchall()``). Handing the local
warehouse over with the same interface means a notebook written here runs there by changing the one line that
makes ``conn`` (notebooks/first_analysis.py). The SQL is Redshift SQL on both sides: locally it is translated
to DuckDB (:mod:`letgo.warehouse.redshift_sql`).

Only what an analysis needs: no parameters (``%s`` placeholders are a driver detail the notebook avoids),
no transactions (the local warehouse is read-only views; ``commit`` and ``rollback`` do nothing), results
fetched whole at ``execute`` (local data fits in memory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from letgo.warehouse import DEFAULT_DIR

apilevel = "2.0"
threadsafety = 1  # one connection per thread
paramstyle = "format"  # what redshift_connector uses; parameters themselves are not supported here


class Error(Exception):
    """DB-API's base error: a query that failed (the message is the local warehouse's)."""


def connect(folder: str | Path | None = None, *, dialect: str = "redshift",
            event_types: str | Path | None = None) -> "Connection":
    """A connection to the local warehouse in ``folder`` (default ``.local/warehouse``)."""
    from letgo.warehouse.local import LocalWarehouse

    warehouse = LocalWarehouse(Path(folder) if folder else DEFAULT_DIR, dialect=dialect,
                               event_types=Path(event_types) if event_types else None)
    return Connection(warehouse)


class Connection:
    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse

    def cursor(self) -> "Cursor":
        return Cursor(self)

    def commit(self) -> None:
        """Nothing to commit: the local warehouse is read-only views."""

    def rollback(self) -> None:
        """Nothing to roll back."""

    def close(self) -> None:
        self.warehouse.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Cursor:
    arraysize = 100

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: list[tuple[Any, ...]] = []
        self._next = 0

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> "Cursor":
        import duckdb

        from letgo.warehouse.redshift_sql import RedshiftSqlError

        if parameters:
            raise Error("parameters are not supported by the local warehouse: put the values in the SQL")
        try:
            columns, self._rows = self.connection.warehouse.query(sql)
        except (duckdb.Error, RedshiftSqlError) as exc:
            raise Error(str(exc)) from exc
        self.description = [(name, None, None, None, None, None, None) for name in columns] or None
        self.rowcount, self._next = len(self._rows), 0
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        end = self._next + (size or self.arraysize)
        rows, self._next = self._rows[self._next:end], min(end, len(self._rows))
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = []

    def __iter__(self):
        return iter(self.fetchall())
