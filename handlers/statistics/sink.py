"""PostgreSQL sink for metric windows (Aurora in AWS): exact replacement per (stream window, shard).

The final invocation of a tumbling window writes every row of that window and shard in one transaction
that first deletes what was there for the same (metric, version, stream window, shard). Repeating the
final invocation, or replaying the window, therefore leaves exactly one copy — never a sum of attempts.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

import orjson
import psycopg

from handlers.core.failures import describe, postgres_data_error
from handlers.tracking.errors import SinkError, SinkUnavailable


def metric_window(start: datetime, window_seconds: int) -> tuple[datetime, datetime]:
    epoch = int(start.timestamp())
    begin = datetime.fromtimestamp(epoch - epoch % window_seconds, timezone.utc)
    return begin, begin + timedelta(seconds=window_seconds)


class MetricSink:
    sink = "metrics"

    def __init__(self, dsn: str | Callable[[], str], *, connect_timeout: int = 5) -> None:
        """``dsn``: a string, or a :class:`~handlers.core.secrets.DatabaseUrl` (re-read after a refused login)."""
        self.dsn, self.connect_timeout = dsn, connect_timeout
        self._conn: psycopg.Connection | None = None

    @property
    def url(self) -> str:
        return self.dsn() if callable(self.dsn) else self.dsn

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout)
            except psycopg.OperationalError:
                refused = getattr(self.dsn, "refused", None)
                if refused is not None:
                    refused()
                raise
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write_window(self, rows: Sequence[Any], windows: dict[str, int], stream_window_start: datetime,
                     shard_id: str) -> int:
        """Replace the rows of one (stream window, shard); ``windows`` maps metric key -> its window seconds."""
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for key in windows:
                    name, version = key.rsplit(":v", 1)
                    cur.execute("DELETE FROM metric_windows WHERE metric = %s AND version = %s "
                                "AND stream_window_start = %s AND shard_id = %s",
                                (name, int(version), stream_window_start, shard_id))
                cur.executemany(
                    "INSERT INTO metric_windows (metric, version, metric_window_start, metric_window_end, "
                    "stream_window_start, shard_id, dims_key, dims, count, sum, min, max, distinct_estimate) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(row.metric, row.version,
                      *metric_window(stream_window_start, windows[f"{row.metric}:v{row.version}"]),
                      stream_window_start, shard_id, row.dims_key, orjson.dumps(row.dims).decode(), row.count,
                      row.sum, row.min, row.max, row.distinct) for row in rows])
            return len(rows)
        except psycopg.Error as exc:
            self.close()
            if postgres_data_error(exc):  # the rows themselves: retried, then the window's coordinates are queued
                raise SinkError(self.sink, describe(exc)) from exc
            raise SinkUnavailable(self.sink, describe(exc)) from exc  # an outage: the window waits

    def delete_from(self, since: datetime, metric: str | None = None) -> int:
        """Replay's first step: forget every stream window that starts at or after ``since``."""
        with psycopg.connect(self.url) as conn:
            done = conn.execute("DELETE FROM metric_windows WHERE stream_window_start >= %s "
                                "AND (%s::text IS NULL OR metric = %s)", (since, metric, metric))
            return done.rowcount

    def last_windows(self, metric: str, n: int = 60) -> list[dict[str, Any]]:
        """The last ``n`` metric windows of a metric (all groups), oldest first."""
        with psycopg.connect(self.url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                "SELECT * FROM metric_values WHERE metric = %s AND window_start IN ("
                "  SELECT DISTINCT window_start FROM metric_values WHERE metric = %s "
                "  ORDER BY window_start DESC LIMIT %s) ORDER BY window_start, dims::text", (metric, metric, n))
            return cur.fetchall()
