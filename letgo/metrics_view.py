"""Read the real-time statistics back: a metric's last windows as JSON, a table or a PNG chart.

The rows come from :meth:`handlers.statistics.sink.MetricSink.last_windows` (the ``metric_values`` view:
one row per metric window and group). The metric's ``aggregation`` says which column is its value.

    create_app(dsn, metrics)      GET /metrics                      the metrics and what they mean
                                  GET /metrics/<name>?last=N        the last N windows (1..1440, default 60)
                                  GET /metrics/<name>/chart.png     the same windows as a PNG chart
    render_chart(metric, rows, path)   the PNG, written to a file (``letgo metrics chart``)
    format_table(metric, rows)         a plain-text table (``letgo metrics show``)

Charts are drawn with matplotlib's Agg canvas: no display, no pyplot global state (safe in a Flask thread).
"""
from __future__ import annotations

import io
import re
import textwrap
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import psycopg
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from handlers.statistics.definitions import AGGREGATIONS, MetricDefinition, MetricSet
from handlers.statistics.sink import MetricSink

VALUE_COLUMN = {aggregation: aggregation for aggregation in AGGREGATIONS}  # the view names its columns alike
DEFAULT_LAST, MAX_LAST = 60, 1440  # 1440 one-minute windows = one day
TOP_GROUPS = 8
OTHER = "other"
ALL = "all"
# tab10 without its grey, which is kept for "other": eight groups, eight distinct colours
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")

Point = tuple[datetime, float | None]


def dims_label(dims: dict[str, Any] | None) -> str:
    """``{"properties.category": "bikes"}`` -> ``category=bikes``; no dimensions -> ``all``."""
    if not dims:
        return ALL
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in sorted(dims.items()))


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return float(value)  # Decimal, should the view ever return numeric


def metric_series(rows: Iterable[dict[str, Any]], aggregation: str) -> dict[str, list[Point]]:
    """Rows of ``metric_values`` -> {dims label: [(window start in UTC, value)]}, each series oldest first."""
    if aggregation not in VALUE_COLUMN:
        raise ValueError(f"unknown aggregation {aggregation!r}; one of {', '.join(AGGREGATIONS)}")
    column = VALUE_COLUMN[aggregation]
    series: dict[str, list[Point]] = defaultdict(list)
    for row in rows:
        series[dims_label(row["dims"])].append((_utc(row["window_start"]), _number(row[column])))
    return {label: sorted(points, key=lambda point: point[0]) for label, points in sorted(series.items())}


def chart_series(rows: Sequence[dict[str, Any]], aggregation: str, top: int = TOP_GROUPS) -> dict[str, list[Point]]:
    """The lines of the chart: the ``top`` groups by total value, then the rest folded into ``other``.

    ``other`` is the sum of the remaining groups for count, sum and distinct_users; for min and max it is
    their minimum / maximum, and for avg the count-weighted average (sum of sums / sum of counts) — adding
    averages or minima up would draw a number that means nothing.
    """
    series = metric_series(rows, aggregation)
    totals = {label: sum(value or 0 for _, value in points) for label, points in series.items()}
    ranked = sorted(series, key=lambda label: (-totals[label], label))
    if len(ranked) <= top + 1:  # folding a single group into "other" would only hide its name
        return {label: series[label] for label in ranked}
    kept, rest = ranked[:top], set(ranked[top:])
    folded: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if dims_label(row["dims"]) in rest:
            folded[_utc(row["window_start"])].append(row)
    other: list[Point] = []
    for start, group in sorted(folded.items()):
        other.append((start, _fold(group, aggregation)))
    return {**{label: series[label] for label in kept}, OTHER: other}


def _fold(rows: list[dict[str, Any]], aggregation: str) -> float | None:
    def present(column: str) -> list[float]:
        return [float(row[column]) for row in rows if row[column] is not None]

    if aggregation == "min":
        return min(present("min"), default=None)
    if aggregation == "max":
        return max(present("max"), default=None)
    if aggregation == "avg":
        counts = sum(row["count"] for row in rows if row["sum"] is not None)
        return sum(present("sum")) / counts if counts else None
    values = present(VALUE_COLUMN[aggregation])
    return sum(values) if values else None


def _y_label(metric: MetricDefinition) -> str:
    return f"{metric.aggregation} of {metric.field}" if metric.field else metric.aggregation


def _draw(metric: MetricDefinition, rows: Sequence[dict[str, Any]], target: str | Path | IO[bytes]) -> None:
    from matplotlib import dates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg (raster, headless) canvas: never a window
    axes = figure.add_subplot()
    title = f"{metric.name} (v{metric.version})\n" + "\n".join(textwrap.wrap(metric.description, 100))
    axes.set_title(title, fontsize=11)
    axes.set_xlabel("window start (UTC)")
    axes.set_ylabel(_y_label(metric))
    axes.grid(True, alpha=0.3)
    lines = chart_series(rows, metric.aggregation)
    if not lines:
        axes.text(0.5, 0.5, "no windows yet", transform=axes.transAxes, ha="center", va="center", fontsize=14,
                  color="grey")
        axes.set_xticks([])
        axes.set_yticks([])
    for index, (label, points) in enumerate(lines.items()):
        xs = [start for start, _ in points]
        ys = [float("nan") if value is None else value for _, value in points]
        style = {"color": "grey", "linestyle": "--"} if label == OTHER else {"color": PALETTE[index % len(PALETTE)]}
        axes.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=label, **style)
    if lines:
        # at least the last hour, so a young metric (one or two windows) still reads as a time series
        latest = max(start for points in lines.values() for start, _ in points)
        earliest = min(start for points in lines.values() for start, _ in points)
        end = latest + timedelta(seconds=metric.window_seconds)
        axes.set_xlim(min(earliest, end - timedelta(hours=1)), end)
        locator = dates.AutoDateLocator(tz=timezone.utc)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=timezone.utc))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="group")
    figure.savefig(target, format="png")


def render_chart(metric: MetricDefinition, rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Draw the metric over time (one line per group) into a PNG file and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _draw(metric, rows, path)
    return path


def chart_png(metric: MetricDefinition, rows: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    _draw(metric, rows, buffer)
    return buffer.getvalue()


def window_rows(metric: MetricDefinition, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the definition's version: after a version bump old rows mean something else."""
    return [row for row in rows if row["version"] == metric.version]


def group_windows(metric: MetricDefinition, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows -> one entry per metric window (oldest first), each with its groups and their values."""
    column = VALUE_COLUMN[metric.aggregation]
    windows: dict[datetime, dict[str, Any]] = {}
    for row in rows:
        start = _utc(row["window_start"])
        window = windows.setdefault(start, {"window_start": start.isoformat(),
                                            "window_end": _utc(row["window_end"]).isoformat(), "groups": []})
        window["groups"].append({
            "label": dims_label(row["dims"]), "dims": row["dims"], "value": _number(row[column]),
            **{name: _number(row[name]) for name in ("count", "sum", "min", "max", "avg", "distinct_users")},
        })
    for window in windows.values():
        window["groups"].sort(key=lambda group: group["label"])
    return [windows[start] for start in sorted(windows)]


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def format_table(metric: MetricDefinition, rows: Sequence[dict[str, Any]]) -> str:
    """The windows as a table: start (UTC), group, value — under a line saying what the metric is."""
    if not rows:
        return f"{metric.name}: no windows yet"
    value_column = metric.aggregation  # the metric_values view names its columns after the aggregations
    table = [(row["window_start"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"), dims_label(row["dims"]),
              format_value(row[value_column])) for row in rows]
    header = ("window start (UTC)", "dims", metric.aggregation)
    widths = [max(len(cells[i]) for cells in (header, *table)) for i in range(3)]
    lines = [f"{metric.name} v{metric.version}: {metric.description}"]
    for cells in (header, tuple("-" * w for w in widths), *table):
        lines.append(f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:>{widths[2]}}")
    return "\n".join(lines)


def parse_last(raw: str | None) -> int:
    """``?last=N``: a whole number from 1 to 1440; absent -> 60. Raises ValueError with the reason."""
    if raw is None:
        return DEFAULT_LAST
    if not re.fullmatch(r"[0-9]{1,6}", raw.strip()) or not 1 <= int(raw) <= MAX_LAST:
        raise ValueError(f"last must be a whole number of windows from 1 to {MAX_LAST}, not {raw!r}")
    return int(raw)


def _metric_map(metrics: MetricSet | Iterable[MetricDefinition]) -> dict[str, MetricDefinition]:
    definitions = metrics.metrics if isinstance(metrics, MetricSet) else tuple(metrics)
    return {metric.name: metric for metric in definitions}


def describe(metric: MetricDefinition) -> dict[str, Any]:
    return {"name": metric.name, "version": metric.version, "description": metric.description,
            "aggregation": metric.aggregation, "field": metric.field, "group_by": list(metric.group_by),
            "window_seconds": metric.window_seconds, "event_type": metric.event_type}


def create_app(dsn: str, metrics: MetricSet | Iterable[MetricDefinition]) -> Flask:
    """Every error, ours or Flask's, answers ``{"error": {"status", "code", "message"}}``."""
    app = Flask("letgo-metrics")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    definitions = _metric_map(metrics)
    sink = MetricSink(dsn)

    def error(status: int, code: str, message: str) -> tuple[Response, int]:
        return jsonify(error={"status": status, "code": code, "message": message}), status

    def lookup(name: str) -> MetricDefinition | tuple[Response, int]:
        metric = definitions.get(name)
        if metric is None:
            return error(404, "unknown_metric",
                         f"no metric named {name!r}; known: {', '.join(sorted(definitions)) or 'none'}")
        return metric

    def last_rows(metric: MetricDefinition) -> list[dict[str, Any]] | tuple[Response, int]:
        try:
            last = parse_last(request.args.get("last"))
        except ValueError as exc:
            return error(400, "bad_last", str(exc))
        return window_rows(metric, sink.last_windows(metric.name, last))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(psycopg.Error)
    def database_error(exc: psycopg.Error) -> tuple[Response, int]:
        first = (str(exc).strip().splitlines() or [""])[0]
        return error(503, "database_unavailable", f"metric store: {type(exc).__name__}: {first}")

    @app.get("/metrics")
    def list_metrics() -> Any:
        return jsonify(metrics=[describe(definitions[name]) for name in sorted(definitions)])

    def metric_and_rows(name: str) -> tuple[MetricDefinition, list[dict[str, Any]]] | Any:
        """(the metric, its last windows), or the error response to return as it is."""
        metric = lookup(name)
        if not isinstance(metric, MetricDefinition):
            return metric
        rows = last_rows(metric)
        return (metric, rows) if isinstance(rows, list) else rows

    @app.get("/metrics/<name>")
    def metric_windows(name: str) -> Any:
        found = metric_and_rows(name)
        if not isinstance(found[0], MetricDefinition):  # errors are (response, status) tuples
            return found
        metric, rows = found
        return jsonify(metric=describe(metric), last=parse_last(request.args.get("last")),
                       windows=group_windows(metric, rows))

    @app.get("/metrics/<name>/chart.png")
    def metric_chart(name: str) -> Any:
        found = metric_and_rows(name)
        if not isinstance(found[0], MetricDefinition):  # errors are (response, status) tuples
            return found
        metric, rows = found
        return Response(chart_png(metric, rows), mimetype="image/png", headers={"Cache-Control": "no-store"})

    return app
