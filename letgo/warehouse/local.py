"""The local warehouse: the processed events as analysts see them in AWS, queried with DuckDB.

Why: in AWS, Firehose's dynamic partitioning writes the valid events under
``events/type=<Type>/dt=<YYYY-MM-DD>/`` and analysts query them per type and day from Redshift
(``SELECT dt, count(*) FROM events.lead GROUP BY 1``). moto's Firehose does not partition, so the local
stage leaves one object per PutRecordBatch under ``events/``. This module closes the gap without a
Redshift:

* :func:`materialise` copies those objects into the AWS layout on disk,
  ``<target>/events/type=<Type>/dt=<date of the event timestamp>/part-<source key hash>.jsonl``, keeping
  each line as Firehose delivered it and dropping repeated ``messageId`` s (Firehose is at-least-once; the
  warehouse view de-duplicates the same way). File names depend only on the source object, and a run
  rebuilds the whole tree and swaps it in, so re-running replaces files and never duplicates events.
* :class:`LocalWarehouse` opens DuckDB in memory over that tree with one view per event type,
  ``events.<snake_case type>``, whose columns follow the event type's YAML (one typed column per property;
  a geo point becomes ``<name>_lat``/``<name>_lon``; objects and lists stay JSON) and carry the Redshift
  DDL's names (:mod:`letgo.warehouse.ddl`), plus ``events.all_events``. Types without data yet get an empty
  view with the same columns. Queries are Redshift SQL by default, translated to DuckDB
  (:mod:`letgo.warehouse.redshift_sql`), so the analyst's Redshift query runs here unchanged.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from handlers.schema.event_types import EventType
from letgo import REPO_ROOT
from letgo.warehouse import DEFAULT_DIR

EVENTS_PREFIX = "events/"
PROMPT, CONTINUATION = "sql> ", " ..> "

# The envelope as every view exposes it: (view column, SQL type, expression over the raw JSON columns).
ENVELOPE = (
    ("message_id", "VARCHAR", '"messageId"'),
    ("event_time", "TIMESTAMP", 'CAST("timestamp" AS TIMESTAMP)'),
    ("received_at", "TIMESTAMP", 'CAST("receivedAt" AS TIMESTAMP)'),
    ("sent_at", "TIMESTAMP", 'CAST("sentAt" AS TIMESTAMP)'),
    ("user_id", "VARCHAR", '"userId"'),
    ("anonymous_id", "VARCHAR", '"anonymousId"'),
    ("schema_version", "INTEGER", '"version"'),
    ("dt", "DATE", "dt"),
    ("context", "JSON", "context"),
)
# What read_json parses from each line (everything else in the line is ignored); ``type`` and ``dt`` come
# from the folder names (hive partitioning), as in Redshift Spectrum.
RAW_COLUMNS = {"messageId": "VARCHAR", "timestamp": "VARCHAR", "receivedAt": "VARCHAR", "sentAt": "VARCHAR",
               "userId": "VARCHAR", "anonymousId": "VARCHAR", "version": "INTEGER", "context": "JSON",
               "properties": "JSON"}
SCALAR_TYPES = {"string": "VARCHAR", "enum": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE",
                "boolean": "BOOLEAN", "timestamp": "TIMESTAMP"}


# -- materialise ------------------------------------------------------------------------------------------
def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)  # the order decides which copy of a duplicate is kept: make it deterministic


def part_name(key: str) -> str:
    return f"part-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


def event_date(timestamp: str) -> str:
    """The UTC day of an event timestamp (the platform writes ``YYYY-MM-DDTHH:MM:SS.mmmZ``)."""
    if len(timestamp) == 24 and timestamp.endswith("Z"):
        return timestamp[:10]
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).date().isoformat()


def partitions(s3: Any, bucket: str, keys: list[str]) -> Iterator[tuple[str, str, str, list[bytes]]]:
    """What Firehose's dynamic partitioning would have written: (key, type, day, lines) per source object and
    partition, each ``messageId`` once (the first copy, in key order — Firehose is at-least-once)."""
    seen: set[str] = set()
    for key in keys:
        groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines():
            if not line.strip():
                continue
            document = orjson.loads(line)
            if document["messageId"] in seen:
                continue
            seen.add(document["messageId"])
            groups[(document["type"], event_date(document["timestamp"]))].append(line)
        for (event_type, day), lines in groups.items():
            yield key, event_type, day, lines


def materialise(s3: Any, bucket: str, target: Path, *, prefix: str = EVENTS_PREFIX, progress: Any = None) -> int:
    """Copy the Firehose objects of ``bucket`` into the AWS layout under ``target/events``; return the number
    of distinct events written.

    ``progress`` (e.g. :class:`letgo.progress.Progress`) is called with the number of objects done; its
    ``total`` is set to the number of objects if unset. The new tree is built next to the old one and swapped
    in at the end, so a failed run leaves the previous materialisation intact.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    keys = _list_keys(s3, bucket, prefix)
    if progress is not None and getattr(progress, "total", 0) is None:
        progress.total = len(keys)
    staging = target / f".events-building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    events, done, last = 0, 0, None
    try:
        for key, event_type, day, lines in partitions(s3, bucket, keys):
            folder = staging / f"type={event_type}" / f"dt={day}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / part_name(key)).write_bytes(b"\n".join(lines) + b"\n")
            events += len(lines)
            if key != last:
                done, last = done + 1, key
                if progress is not None:
                    progress(done)
        if progress is not None:
            progress.finish()
        tree = target / "events"
        retired = target / f".events-retired-{os.getpid()}"
        if tree.exists():
            tree.rename(retired)
        staging.rename(tree)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return events


def partition_into_bucket(s3: Any, source: str, target: str, *, prefix: str = EVENTS_PREFIX) -> int:
    """The local stage's Firehose output laid out in ``target`` as AWS's dynamic partitioning writes it
    (``events/type=<T>/dt=<day>/``), for the code that reads that layout from S3 (the training job). Object
    names derive from the source keys, so a rerun rewrites the same objects. Returns the events written."""
    events = 0
    for key, event_type, day, lines in partitions(s3, source, _list_keys(s3, source, prefix)):
        s3.put_object(Bucket=target, Key=f"{prefix}type={event_type}/dt={day}/{part_name(key)}",
                      Body=b"\n".join(lines) + b"\n")
        events += len(lines)
    return events


# -- the views ---------------------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    """ItemListed -> item_listed, UserSignedUp -> user_signed_up, HTTPCall -> http_call."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def property_columns(event_type: EventType) -> list[tuple[str, str, str]]:
    """(column, SQL type, expression over ``properties``) for every property declared in the YAML.

    Column names are the Redshift DDL's (:func:`letgo.warehouse.ddl.column_name`: snake_case, ``prop_`` before
    envelope names and Redshift reserved words such as ``language``), so a query runs unchanged on both.
    """
    from letgo.warehouse.ddl import column_name

    taken = {column for column, _, _ in ENVELOPE}
    columns: list[tuple[str, str, str]] = []

    def add(column: str, sql_type: str, expression: str) -> None:
        column = column_name(column)
        if column in taken:  # e.g. a property `dt` (the partition column here): keep its data, renamed
            column = f"prop_{column}"
        taken.add(column)
        columns.append((column, sql_type, expression))

    for name, spec in event_type.properties.items():
        path = _literal(f"$.{name}")
        kind = spec["type"]
        if kind in SCALAR_TYPES:
            add(name, SCALAR_TYPES[kind], f"CAST(properties->>{path} AS {SCALAR_TYPES[kind]})")
        elif kind == "geo_point":
            for part in ("lat", "lon"):
                add(f"{name}_{part}", "DOUBLE", f"CAST(properties->>{_literal(f'$.{name}.{part}')} AS DOUBLE)")
        else:  # object, list (SUPER in Redshift)
            add(name, "JSON", f"properties->{path}")
    return columns


class LocalWarehouse:
    """DuckDB (in memory) over a materialised tree: ``events.<snake_case type>`` and ``events.all_events``.

    ``dialect`` is the SQL :meth:`query` accepts unless told otherwise: ``redshift`` (translated) or ``duckdb``.
    """

    def __init__(self, target: Path = DEFAULT_DIR, *, event_types: Path | None = None,
                 dialect: str = "redshift") -> None:
        import duckdb

        from handlers.schema.event_types import load_catalog
        from letgo.warehouse.redshift_sql import DIALECTS, WarehouseSchema

        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
        self.target = Path(target)
        self.dialect = dialect
        self.catalog = load_catalog(Path(event_types) if event_types else REPO_ROOT / "event_types")
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("SET TimeZone = 'UTC'")  # as Redshift: GETDATE(), CURRENT_DATE are UTC
        self.views: dict[str, str] = {}  # view name -> event type
        self.schema = WarehouseSchema()
        self.refresh()

    def _source(self, pattern: Path) -> str:
        raw = ", ".join(f"{_literal(name)}: {_literal(sql_type)}" for name, sql_type in RAW_COLUMNS.items())
        return (f"read_json({_literal(pattern.as_posix())}, format = 'newline_delimited', hive_partitioning = true, "
                f"hive_types = {{'type': 'VARCHAR', 'dt': 'DATE'}}, columns = {{{raw}}})")

    def _view(self, name: str, columns: Sequence[tuple[str, str, str]], files: str) -> None:
        """A view over ``<target>/events/<files>`` (a glob) selecting ``columns``."""
        events = self.target / "events"
        pattern = events / files
        if any(events.glob(files)):
            select = ", ".join(f"{expression} AS {_ident(column)}" for column, _, expression in columns)
            body = f"SELECT {select} FROM {self._source(pattern)}"
        else:  # no files yet: DuckDB refuses an empty glob, so an empty relation with the same columns
            select = ", ".join(f"CAST(NULL AS {sql_type}) AS {_ident(column)}" for column, sql_type, _ in columns)
            body = f"SELECT {select} WHERE false"
        self.connection.execute(f"CREATE OR REPLACE VIEW events.{_ident(name)} AS {body}")

    def refresh(self) -> None:
        """(Re)create the views — after a new :func:`materialise`, a type's view switches from empty to data."""
        self.connection.execute("CREATE SCHEMA IF NOT EXISTS events")
        for type_name, event_type in sorted(self.catalog.types.items()):
            view = snake_case(type_name)
            if view == "all_events" or view in self.views and self.views[view] != type_name:
                raise ValueError(f"event type {type_name} would map to the view events.{view}, which is taken")
            self.views[view] = type_name
            self._view(view, [*ENVELOPE, *property_columns(event_type)], f"type={type_name}/dt=*/*.jsonl")
        self._view("all_events", [("type", "VARCHAR", "type"), ("event_time", "TIMESTAMP", ENVELOPE[1][2]),
                                  ("dt", "DATE", "dt"), ("message_id", "VARCHAR", '"messageId"'),
                                  ("user_id", "VARCHAR", '"userId"')],
                   "type=*/dt=*/*.jsonl")
        # Redshift's analysts query analytics.<type> (the cluster's last month UNION ALL Spectrum's history);
        # locally all of it is in the files, so the same names point at the same views.
        self.connection.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        for view in [*self.views, "all_events"]:
            self.connection.execute(f"CREATE OR REPLACE VIEW analytics.{_ident(view)} AS SELECT * FROM "
                                    f"events.{_ident(view)}")
        self.schema = self._schema()

    def _schema(self) -> Any:
        """What the Redshift translation needs: temporal columns, SUPER columns and their specs, DuckDB's functions."""
        from letgo.warehouse.redshift_sql import WarehouseSchema

        types: dict[str, set[str]] = defaultdict(set)
        for name, data_type in self.connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'events'"
                ).fetchall():
            types[name].add(data_type)
        navigable: dict[str, Any] = {"context": {"type": "object", "properties": self.catalog.context_properties}}
        for event_type in self.catalog.types.values():
            by_column = {column: expression for column, _, expression in property_columns(event_type)}
            for name, spec in event_type.properties.items():
                column = next((c for c, e in by_column.items() if e == f"properties->{_literal('$.' + name)}"), None)
                if column is not None:  # an object or list: SUPER in Redshift, JSON here
                    navigable[column] = spec if navigable.get(column, spec) == spec else None
        functions = {name for (name,) in self.connection.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions()").fetchall()}
        return WarehouseSchema(
            temporal=frozenset(n for n, t in types.items() if t <= {"DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}),
            integers=frozenset(n for n, t in types.items() if t <= {"INTEGER", "BIGINT", "SMALLINT"}),
            navigable=navigable, functions=frozenset(functions))

    def translate(self, sql: str, dialect: str | None = None) -> str:
        """``sql`` as DuckDB will run it (Redshift SQL translated; DuckDB SQL unchanged)."""
        from letgo.warehouse.redshift_sql import translate

        return translate(sql, self.schema) if (dialect or self.dialect) == "redshift" else sql

    def query(self, sql: str, *, dialect: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` (several statements: the last one's result); (column names, rows).

        Redshift SQL unless ``dialect`` (or the warehouse's) says ``duckdb``. Raises
        :class:`letgo.warehouse.redshift_sql.RedshiftSqlError` for SQL that cannot run locally (a DuckDB error
        about a function gets the same kind of hint) and ``duckdb.Error`` for the rest.
        """
        import duckdb

        from letgo.warehouse.redshift_sql import RedshiftSqlError, explain

        try:
            cursor = self.connection.execute(self.translate(sql, dialect))
        except duckdb.Error as exc:
            hint = explain(str(exc))
            if hint is None:
                raise
            raise RedshiftSqlError(f"{str(exc).splitlines()[0]}\n{hint}") from exc  # DuckDB's candidate list: no
        if cursor.description is None:
            return [], []
        return [column[0] for column in cursor.description], cursor.fetchall()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "LocalWarehouse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- presentation ------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def format_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, limit: int | None = None) -> str:
    """A plain-text table: numbers right-aligned, ``NULL`` for nulls, a row count at the end."""
    rows = list(rows)
    shown = rows if limit is None else rows[:limit]
    if not columns:
        return "OK"
    cells = [[_cell(value) for value in row] for row in shown]
    values = [[row[i] for row in shown if row[i] is not None] for i in range(len(columns))]
    numeric = [bool(column) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column)
               for column in values]
    widths = [max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
        return "  ".join(padded).rstrip()

    out = [line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)]
    more = f" (showing {len(shown)})" if len(shown) < len(rows) else ""
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(out)


@contextmanager
def sql_history(target: Path) -> Iterator[None]:
    """The prompt's line history, kept in ``<target>/.sql_history`` (no history where readline is missing)."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: a prompt without history
        yield
        return
    history = target / ".sql_history"
    target.mkdir(parents=True, exist_ok=True)
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    try:
        yield
    finally:
        readline.write_history_file(history)


def repl(warehouse: LocalWarehouse, *, read: Callable[[str], str] = input, write: Callable[[str], Any] = print,
         limit: int = 200) -> int:
    """``sql>`` prompt: a statement ends with ``;``; ``\\q`` (or end of input) quits, ``\\d`` lists the views,
    ``\\r`` re-reads the folder after a ``letgo warehouse sync``. Returns the number of statements that failed."""
    import duckdb

    from letgo.warehouse.redshift_sql import RedshiftSqlError

    sql_kind = "Redshift SQL, run on DuckDB" if warehouse.dialect == "redshift" else "DuckDB SQL"
    write(f"local warehouse ({sql_kind}): end statements with ';', \\d lists views, \\r refreshes, \\q quits")
    buffer: list[str] = []
    failed = 0
    while True:
        try:
            line = read(CONTINUATION if buffer else PROMPT)
        except EOFError:
            write("")
            return failed
        except KeyboardInterrupt:
            write("")
            buffer.clear()
            continue
        command = line.strip()
        if not buffer and command in (r"\q", "quit", "exit"):
            return failed
        if not buffer and command in (r"\d", r"\r"):
            if command == r"\r":
                warehouse.refresh()
            write(format_table(*warehouse.query(
                "SELECT table_name AS view FROM information_schema.tables WHERE table_schema = 'analytics' "
                "ORDER BY 1", dialect="duckdb")))
            continue
        if not command and not buffer:
            continue
        buffer.append(line)
        if not command.endswith(";"):
            continue
        sql = "\n".join(buffer)
        buffer.clear()
        try:
            write(format_table(*warehouse.query(sql), limit=limit))
        except (duckdb.Error, RedshiftSqlError) as exc:
            failed += 1
            write(f"error: {exc}")
