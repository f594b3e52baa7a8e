"""``make run``'s last step: the run's events into the local warehouse folder, and an analyst's first query.

Why: the local stage's moto server (and with it Firehose's output) stops when ``make run`` ends; without this
step ``letgo warehouse query`` afterwards finds nothing. :func:`demo_summary` lays the run's Firehose output
out in ``.local/warehouse`` (what ``letgo warehouse sync`` does) and runs :data:`FIRST_QUERY` — the README's
Redshift query, unchanged — on it, so the run ends by showing the warehouse answering Redshift SQL.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from letgo.warehouse import DEFAULT_DIR

FIRST_QUERY = """\
SELECT TRUNC(event_time) AS day, category, count(*) AS leads
FROM analytics.lead
WHERE event_time >= DATEADD(day, -7, CURRENT_DATE)
GROUP BY 1, 2 ORDER BY 1, 3 DESC;"""


def demo_summary(stage: Any, say: Callable[[str], Any] = print, *, target: Path | None = None,
                 rows: int = 5) -> dict[str, Any]:
    """Sync ``stage``'s processed events into ``target`` (default ``.local/warehouse``), run :data:`FIRST_QUERY`,
    ``say`` it with its first ``rows`` rows; return what was shown (JSON-ready, for the run's report)."""
    from handlers.core.aws import client
    from letgo.progress import Progress
    from letgo.warehouse.local import LocalWarehouse, format_table, materialise

    target = Path(target) if target else DEFAULT_DIR
    progress = Progress("warehouse sync (firehose objects)", stream=sys.stdout)
    events = materialise(client("s3"), stage.names.processed_bucket, target, progress=progress)
    with LocalWarehouse(target) as warehouse:
        columns, result = warehouse.query(FIRST_QUERY)
    summary = {"folder": str(target), "events": events, "query": FIRST_QUERY, "columns": columns,
               "rows": len(result), "first_rows": [[_text(value) for value in row] for row in result[:rows]],
               "table": format_table(columns, result, limit=rows)}
    say_summary(summary, say)
    return summary


def say_summary(summary: dict[str, Any], say: Callable[[str], Any] = print) -> None:
    """The summary as the run's report shows it (also usable on its own, e.g. in the report at the end)."""
    say(f"  warehouse      {summary['events']:>8,}  events in {summary['folder']} — Redshift SQL runs on it: "
        "`letgo warehouse query \"…\"` or `letgo warehouse prompt`")
    for line in [*summary["query"].splitlines(), *summary["table"].splitlines()]:
        say(f"      {line}")


def _text(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else str(value)
