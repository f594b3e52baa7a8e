"""Benchmark 2: PostgresSink.write vs a raw psycopg COPY of the very same rows, on a real server.

The baseline is ``COPY events FROM STDIN`` of the rows alone; the sink does its whole job on top (the
``event_ids`` COPY that keeps one row per messageId, partitions, building the rows from the events).
``python -m bench --only postgres`` runs just this one.
"""
from __future__ import annotations

import copy
from typing import Any

import psycopg
from psycopg import sql

from bench.timing import alternate, progress
from handlers.tracking.processor import Event
from handlers.tracking.sinks.postgres import COLUMNS, PostgresSink, event_row

BATCH = 500
_COPY = sql.SQL("COPY {} ({}) FROM STDIN").format(
    sql.Identifier("events"), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def _fresh(events: list[Event], tag: str) -> list[Event]:
    fresh = []
    for event in events:
        twin = copy.copy(event)
        twin.message_id = f"{event.message_id}-{tag}"
        fresh.append(twin)
    return fresh


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def run(dsn: str, events: list[Event], rounds: int) -> dict[str, Any]:
    n = len(events)
    progress(f"postgres: pre-building {rounds + 1} rounds of {n} events and their COPY rows")
    event_batches = {r: _chunks(_fresh(events, f"r{r}")) for r in range(-1, rounds)}
    row_batches = {r: [[event_row(e) for e in batch] for batch in batches] for r, batches in event_batches.items()}

    admin = psycopg.connect(dsn, autocommit=True)
    raw = psycopg.connect(dsn, autocommit=False)
    sink = PostgresSink(dsn)
    expected: list[int] = []

    def reset(_: str = "", __: int = 0) -> None:
        if expected:
            count = admin.execute("SELECT count(*) FROM events").fetchone()[0]
            if count != expected[-1]:
                raise AssertionError(f"postgres: {count} rows after a round, expected {expected[-1]}")
        admin.execute("TRUNCATE events, event_ids")  # the sink's id table too; the raw COPY only fills events
        expected.append(n)

    def sink_round(r: int) -> int:
        inserted = 0
        for batch in event_batches[r]:
            written = sink.write(batch)
            if written.already_there or written.refused:
                raise AssertionError(f"postgres sink: {len(written.already_there)} unexpected conflicts, "
                                     f"{len(written.refused)} refused rows")
            inserted += written.inserted
        return inserted

    def copy_round(r: int) -> int:
        written = 0
        for rows in row_batches[r]:
            with raw.transaction():
                with raw.cursor() as cur:
                    with cur.copy(_COPY) as copy:
                        for row in rows:
                            copy.write_row(row)
            written += len(rows)
        return written

    try:
        # warm-up: creates the daily partitions (the sink caches them, as a long-running consumer does),
        # opens both connections and fills PostgreSQL's caches; both paths, untimed
        progress("postgres: warm-up (creates partitions, checks both paths insert every row)")
        reset()
        if sink_round(-1) != n:
            raise AssertionError("postgres sink: warm-up did not insert every row")
        reset()
        if copy_round(-1) != n:
            raise AssertionError("raw COPY: warm-up did not insert every row")
        partitions = [row[0] for row in admin.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass ORDER BY 1")]
        timings = alternate("postgres", {"sink": sink_round, "raw_copy": copy_round}, rounds, expected=n,
                            before_each=reset)
        reset()
        server_version = admin.execute("SHOW server_version").fetchone()[0]
    finally:
        sink.close()
        raw.close()
        admin.close()
    return {
        "rows": n, "batch_size": BATCH, "rounds": rounds, "partitions": partitions,
        "server_version": server_version, "variants": timings,
        # value (best round against best round) is what the goal is checked on; the median is there because the
        # best of few rounds is noisy on a shared machine
        "ratios": {"sink/raw_copy": {"value": timings["sink"]["best_per_second"]
                                     / timings["raw_copy"]["best_per_second"],
                                     "median_value": timings["sink"]["median_per_second"]
                                     / timings["raw_copy"]["median_per_second"], "goal": 0.7}},
    }
