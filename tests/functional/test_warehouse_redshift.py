"""Redshift SQL on the local warehouse, checked against PostgreSQL over the same events.

GIVEN traffic through the real event path (Kinesis → consumer → Firehose on moto + PostgreSQL) over nine days,
laid out as the local warehouse's folder: every analyst query below is Redshift SQL, run unchanged through
``LocalWarehouse.query`` (sqlglot's translation + letgo/warehouse/redshift_sql.py, on DuckDB), and must return
what a hand-written PostgreSQL query over the ``events`` table returns. The PostgreSQL side is written
independently of the translation (jsonb paths, PostgreSQL's own date arithmetic), so a wrong translation or a
wrong view gives a different answer. Also here: the README's SQL examples (each must be one of these queries,
and runs through the CLI), ``make run``'s warehouse step and the notebook, executed as a script.
"""
from __future__ import annotations

import datetime as dt
import decimal
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import psycopg
import pytest
import sqlglot

from handlers.core.aws import client
from handlers.tracking import lambda_consumer
from letgo import cli
from letgo.traffic import generate
from letgo.warehouse.demo import FIRST_QUERY, demo_summary
from letgo.warehouse.local import LocalWarehouse, materialise
from letgo.warehouse.redshift_sql import LetgoRedshift
from tests.conftest import REPO
from tests.stage_kit import empty_stage, send

pytestmark = pytest.mark.functional


def _relation(event_type: str, **columns: str) -> str:
    """One event type as a PostgreSQL subquery: the envelope (event_time as UTC wall time, as in Redshift) and
    ``columns`` (name -> expression over ``properties`` / ``context``)."""
    extra = "".join(f", {expression} AS {name}" for name, expression in columns.items())
    return (f"(SELECT message_id, user_id, (event_time AT TIME ZONE 'UTC') AS event_time{extra} "
            f"FROM events WHERE event_type = '{event_type}')")


LEAD = _relation("Lead", category="properties->>'category'", channel="properties->>'channel'",
                 item_id="properties->>'item_id'", price="(properties->>'price')::float",
                 offer_amount="(properties->>'offer_amount')::float",
                 message_length="(properties->>'message_length')::bigint")
LISTED = _relation("ItemListed", category="properties->>'category'", price="(properties->>'price')::float")
VIEWED = _relation("ItemViewed", category="properties->>'category'", item_id="properties->>'item_id'")
OPENED = _relation("AppOpened")
SEARCH = _relation("Search", app_version="context->'app'->>'version'", os="context->'os'->>'name'",
                   max_price="(properties->'filters'->>'max_price')::float",
                   shipping="(properties->'filters'->>'shipping_available')::boolean",
                   first_condition="properties->'filters'->'condition'->>0")


@dataclass(frozen=True)
class Query:
    name: str
    redshift: str
    postgres: str
    ordered: bool = True  # the ORDER BY is total: compare in order (else as multisets: ties may come either way)
    approximate: tuple[int, ...] = ()  # columns compared within 5% (APPROXIMATE COUNT is HyperLogLog)


QUERIES = [
    Query("readme_first_query", FIRST_QUERY,
          f"SELECT event_time::date, category, count(*) FROM {LEAD} l WHERE event_time >= current_date - 7 "
          "GROUP BY 1, 2 ORDER BY 1, 3 DESC", ordered=False),
    Query("readme_local_partition_column",  # the README's local example before issue 17: dt is the UTC day
          "SELECT dt AS day, category, count(*) AS leads FROM analytics.lead WHERE dt >= current_date - 7 "
          "GROUP BY 1, 2 ORDER BY 1, 3 DESC",
          f"SELECT event_time::date, category, count(*) FROM {LEAD} l WHERE event_time >= current_date - 7 "
          "GROUP BY 1, 2 ORDER BY 1, 3 DESC", ordered=False),
    Query("date_trunc_week_and_month",
          "SELECT DATE_TRUNC('week', event_time) AS week, DATE_TRUNC('month', event_time) AS month, "
          "COUNT(*) AS listings, COUNT(DISTINCT user_id) AS sellers FROM analytics.item_listed GROUP BY 1, 2 "
          "ORDER BY 1, 2",
          f"SELECT date_trunc('week', event_time), date_trunc('month', event_time), count(*), "
          f"count(DISTINCT user_id) FROM {LISTED} l GROUP BY 1, 2 ORDER BY 1, 2"),
    Query("datediff_and_getdate",
          "SELECT category, DATEDIFF(day, MIN(event_time), GETDATE()) AS days_since_first, "
          "DATEDIFF(minute, MIN(event_time), MAX(event_time)) AS minutes_active, "
          "DATEDIFF(hour, MIN(event_time), MAX(event_time)) AS hours_active FROM analytics.lead "
          "GROUP BY category ORDER BY category",
          "SELECT category, (now() AT TIME ZONE 'UTC')::date - min(event_time)::date, "
          "(extract(epoch FROM date_trunc('minute', max(event_time)) - date_trunc('minute', min(event_time))) / 60)"
          "::bigint, (extract(epoch FROM date_trunc('hour', max(event_time)) - date_trunc('hour', min(event_time)))"
          f" / 3600)::bigint FROM {LEAD} l GROUP BY 1 ORDER BY 1"),
    Query("dateadd_trunc_and_casts",
          "SELECT event_time::date AS day, COUNT(*) AS views FROM analytics.item_viewed "
          "WHERE event_time >= DATEADD(day, -3, TRUNC(GETDATE())) AND event_time < DATEADD(hour, 1, GETDATE()) "
          "GROUP BY 1 ORDER BY 1",
          f"SELECT event_time::date, count(*) FROM {VIEWED} v WHERE event_time >= current_date - 3 "
          "AND event_time < (now() AT TIME ZONE 'UTC') + interval '1 hour' GROUP BY 1 ORDER BY 1"),
    Query("nvl_nvl2_decode_and_integer_average",
          "SELECT channel, DECODE(channel, 'chat', 'message', 'offer', 'money', 'other') AS kind, "
          "SUM(NVL(offer_amount, 0)) AS offered, COUNT(NVL2(offer_amount, 1, NULL)) AS offers, "
          "AVG(NVL(message_length, 0)) AS avg_length FROM analytics.lead GROUP BY 1, 2 ORDER BY 1",
          "SELECT channel, CASE channel WHEN 'chat' THEN 'message' WHEN 'offer' THEN 'money' ELSE 'other' END, "
          "sum(coalesce(offer_amount, 0)), count(offer_amount), trunc(avg(coalesce(message_length, 0)))::bigint "
          f"FROM {LEAD} l GROUP BY 1, 2 ORDER BY 1"),
    Query("integer_division_and_shares",
          "SELECT category, COUNT(*) / COUNT(DISTINCT user_id) AS leads_per_buyer, "
          "COUNT(*) * 100 / SUM(COUNT(*)) OVER () AS share_pct FROM analytics.lead GROUP BY 1 ORDER BY 1",
          "SELECT category, count(*) / count(DISTINCT user_id), count(*) * 100 / sum(count(*)) OVER () "
          f"FROM {LEAD} l GROUP BY 1 ORDER BY 1"),
    Query("listagg",
          "SELECT user_id, LISTAGG(DISTINCT channel, ',') WITHIN GROUP (ORDER BY channel) AS channels, "
          "LISTAGG(category, '|') WITHIN GROUP (ORDER BY event_time, message_id) AS path "
          "FROM analytics.lead WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY user_id",
          "SELECT user_id, string_agg(DISTINCT channel, ',' ORDER BY channel), "
          f"string_agg(category, '|' ORDER BY event_time, message_id) FROM {LEAD} l WHERE user_id IS NOT NULL "
          "GROUP BY 1 ORDER BY 1"),
    Query("approximate_count_distinct",
          "SELECT category, APPROXIMATE COUNT(DISTINCT user_id) AS buyers, COUNT(*) AS leads "
          "FROM analytics.lead GROUP BY 1 ORDER BY 1",
          f"SELECT category, count(DISTINCT user_id), count(*) FROM {LEAD} l GROUP BY 1 ORDER BY 1",
          approximate=(1,)),
    Query("window_functions",
          "SELECT message_id, user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY event_time, message_id) "
          "AS nth, LAG(category) OVER (PARTITION BY user_id ORDER BY event_time, message_id) AS previous_category, "
          "SUM(price) OVER (PARTITION BY category ORDER BY event_time, message_id ROWS UNBOUNDED PRECEDING) "
          "AS running_value, FIRST_VALUE(channel) OVER (PARTITION BY user_id ORDER BY event_time, message_id "
          "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_channel "
          "FROM analytics.lead ORDER BY message_id",
          "SELECT message_id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY event_time, message_id), "
          "lag(category) OVER (PARTITION BY user_id ORDER BY event_time, message_id), sum(price) OVER "
          "(PARTITION BY category ORDER BY event_time, message_id ROWS UNBOUNDED PRECEDING), first_value(channel) "
          "OVER (PARTITION BY user_id ORDER BY event_time, message_id ROWS BETWEEN UNBOUNDED PRECEDING AND "
          f"UNBOUNDED FOLLOWING) FROM {LEAD} l ORDER BY message_id"),
    Query("top_categories_per_day_with_rank",
          "SELECT day, category, leads FROM (SELECT TRUNC(event_time) AS day, category, COUNT(*) AS leads, "
          "RANK() OVER (PARTITION BY TRUNC(event_time) ORDER BY COUNT(*) DESC) AS rnk FROM analytics.lead "
          "GROUP BY 1, 2) AS ranked WHERE rnk <= 3 ORDER BY day, leads DESC, category",
          "SELECT day, category, leads FROM (SELECT event_time::date AS day, category, count(*) AS leads, "
          f"rank() OVER (PARTITION BY event_time::date ORDER BY count(*) DESC) AS rnk FROM {LEAD} l "
          "GROUP BY 1, 2) AS ranked WHERE rnk <= 3 ORDER BY 1, 3 DESC, 2"),
    Query("join_with_datediff_window",
          "SELECT v.category, COUNT(DISTINCT v.item_id) AS viewed, COUNT(DISTINCT l.item_id) AS with_lead "
          "FROM analytics.item_viewed AS v LEFT JOIN analytics.lead AS l ON l.item_id = v.item_id "
          "AND l.user_id = v.user_id AND DATEDIFF(minute, v.event_time, l.event_time) BETWEEN 0 AND 60 "
          "GROUP BY 1 ORDER BY 1",
          f"SELECT v.category, count(DISTINCT v.item_id), count(DISTINCT l.item_id) FROM {VIEWED} v LEFT JOIN "
          f"{LEAD} l ON l.item_id = v.item_id AND l.user_id = v.user_id AND extract(epoch FROM "
          "date_trunc('minute', l.event_time) - date_trunc('minute', v.event_time)) / 60 BETWEEN 0 AND 60 "
          "GROUP BY 1 ORDER BY 1"),
    Query("super_navigation",
          "SELECT s.context.app.version AS app_version, s.context.os.name AS os, COUNT(*) AS searches, "
          "COUNT(s.filters.max_price) AS with_price_filter, AVG(s.filters.max_price) AS avg_max_price, "
          "SUM(CASE WHEN s.filters.shipping_available = TRUE THEN 1 ELSE 0 END) AS shipping_only, "
          "COUNT(CASE WHEN s.filters.condition[0] = 'new' THEN 1 END) AS first_condition_new "
          "FROM analytics.search AS s GROUP BY 1, 2 ORDER BY 1, 2",
          "SELECT app_version, os, count(*), count(max_price), avg(max_price), "
          "sum(CASE WHEN shipping THEN 1 ELSE 0 END), count(CASE WHEN first_condition = 'new' THEN 1 END) "
          f"FROM {SEARCH} s GROUP BY 1, 2 ORDER BY 1, 2"),
    Query("to_char_date_part_extract",
          "SELECT TO_CHAR(event_time, 'YYYY-MM') AS month, TO_CHAR(event_time, 'Dy') AS weekday, "
          "DATE_PART(dow, event_time) AS dow, EXTRACT(hour FROM event_time) AS hour, COUNT(*) AS opens "
          "FROM analytics.app_opened GROUP BY 1, 2, 3, 4 ORDER BY 1, 3, 4",
          "SELECT to_char(event_time, 'YYYY-MM'), to_char(event_time, 'Dy'), extract(dow FROM event_time), "
          f"extract(hour FROM event_time), count(*) FROM {OPENED} o GROUP BY 1, 2, 3, 4 ORDER BY 1, 3, 4"),
    Query("median_and_percentile",
          "SELECT category, MEDIAN(price) AS median_price, PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY price) "
          "AS p90, MAX(price) - MIN(price) AS spread FROM analytics.item_listed GROUP BY 1 ORDER BY 1",
          "SELECT category, percentile_cont(0.5) WITHIN GROUP (ORDER BY price), percentile_cont(0.9) WITHIN GROUP "
          f"(ORDER BY price), max(price) - min(price) FROM {LISTED} l GROUP BY 1 ORDER BY 1"),
    Query("cte_case_and_cast",
          "WITH sellers AS (SELECT user_id, COUNT(*) AS listings FROM analytics.item_listed GROUP BY 1) "
          "SELECT CASE WHEN listings >= 3 THEN '3+' ELSE listings::VARCHAR END AS bucket, COUNT(*) AS sellers "
          "FROM sellers GROUP BY 1 ORDER BY 1",
          f"WITH sellers AS (SELECT user_id, count(*) AS listings FROM {LISTED} l GROUP BY 1) SELECT CASE WHEN "
          "listings >= 3 THEN '3+' ELSE listings::text END, count(*) FROM sellers GROUP BY 1 ORDER BY 1"),
]


def normalised(sql: str) -> str:
    return sqlglot.parse_one(sql.strip().rstrip(";"), read=LetgoRedshift).sql(dialect=LetgoRedshift)


def value(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def assert_same(query: Query, local: list[tuple], postgres: list[tuple]) -> None:
    local = [tuple(value(v) for v in row) for row in local]
    postgres = [tuple(value(v) for v in row) for row in postgres]
    if not query.ordered:
        local, postgres = (sorted(rows, key=lambda row: [(v is None, str(v)) for v in row])
                           for rows in (local, postgres))
    assert len(local) == len(postgres), f"{len(local)} rows locally, {len(postgres)} in PostgreSQL"
    for mine, theirs in zip(local, postgres):
        expected = tuple(
            pytest.approx(v, rel=0.05) if i in query.approximate else
            pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for i, v in enumerate(theirs))
        assert mine == expected, f"{query.name}: {mine} != {theirs}"
        assert [type(v) for v in mine if v is not None and not isinstance(v, (int, float))] == [
            type(v) for v in theirs if v is not None and not isinstance(v, (int, float))], "types differ"


def pg(stage, sql: str) -> list[tuple]:
    with psycopg.connect(stage.postgres.dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # Redshift's
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def warehouse(session_stage, tmp_path_factory):
    """GIVEN 2,100 generated units over nine days (today, two and nine days ago), drained and synced."""
    stage = empty_stage(session_stage)
    now = dt.datetime.now(dt.timezone.utc)
    plans = [generate(700, seed=seed, now=now - dt.timedelta(days=days), malformed_share=0)  # a clock-skewed
             for seed, days in ((21, 9), (22, 2), (23, 0))]  # event of nine days ago is valid now: none here
    send(stage, [record.data for plan in plans for record in plan.records])
    stage.mapping.drain()
    assert pg(stage, "SELECT count(*) FROM events") == [(sum(plan.expected_valid for plan in plans),)]
    folder = tmp_path_factory.mktemp("warehouse")
    materialise(client("s3"), stage.names.processed_bucket, folder)
    yield stage, folder
    lambda_consumer.reset()


@pytest.mark.parametrize("query", QUERIES, ids=[q.name for q in QUERIES])
def test_analyst_query_in_redshift_sql_answers_as_postgres(warehouse, query):
    stage, folder = warehouse
    with LocalWarehouse(folder) as local:
        columns, rows = local.query(query.redshift)
    expected = pg(stage, query.postgres)
    assert expected, f"{query.name}: PostgreSQL returned no rows — the traffic does not exercise this query"
    assert_same(query, rows, expected)
    names = [e.alias_or_name for e in sqlglot.parse_one(query.redshift, read=LetgoRedshift).selects]
    assert columns == names, "the columns carry the query's names"


def readme_examples() -> list[str]:
    """The SQL of the README's warehouse section: ```sql blocks and the `letgo warehouse query "…"` commands of
    its ```sh blocks."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Warehouse"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    commands = [sql for block in re.findall(r"```sh\n(.*?)```", section, re.S)
                for sql in re.findall(r'letgo warehouse query "(.*?)"', block, re.S)]
    return [re.sub(r"\s+", " ", sql).strip() for sql in blocks + commands]


def test_every_readme_example_is_checked_here_and_runs_unchanged_with_the_cli(warehouse, capsys):
    _, folder = warehouse
    examples = readme_examples()
    assert examples, "the README's warehouse section shows no SQL"
    known = {normalised(q.redshift): q.name for q in QUERIES}
    for sql in examples:
        assert normalised(sql) in known, f"README example not among the checked analyst queries: {sql}"
        assert cli.main(["warehouse", "query", sql, "--dir", str(folder)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[-1].startswith("(") and not out[-1].startswith("(0 rows"), out[-3:]


def test_the_cli_names_a_function_that_does_not_translate_and_runs_duckdb_sql_when_told(warehouse, capsys):
    _, folder = warehouse
    assert cli.main(["warehouse", "query", "SELECT RATIO_TO_REPORT(price) OVER () FROM analytics.lead",
                     "--dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "RATIO_TO_REPORT()" in err and "x / SUM(x) OVER (PARTITION BY …)" in err
    duckdb_only = "SELECT category, count(*) AS n FROM analytics.lead GROUP BY ALL ORDER BY n DESC LIMIT 1"
    assert cli.main(["warehouse", "query", duckdb_only, "--dialect", "duckdb", "--dir", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(1 row)"
    assert cli.main(["warehouse", "query", FIRST_QUERY, "--show-sql", "--dir", str(folder)]) == 0
    assert "CAST(event_time AS DATE) AS day" in capsys.readouterr().err


def test_make_runs_warehouse_step_leaves_a_folder_the_readme_query_answers(warehouse, tmp_path, capsys):
    stage, _ = warehouse
    said: list[str] = []
    summary = demo_summary(stage, said.append, target=tmp_path / "warehouse")
    assert summary["events"] == pg(stage, "SELECT count(*) FROM events")[0][0]
    expected = pg(stage, QUERIES[0].postgres)
    assert summary["rows"] == len(expected) and summary["columns"] == ["day", "category", "leads"]
    assert said[0].startswith("  warehouse") and any("DATEADD(day, -7, CURRENT_DATE)" in line for line in said)
    assert said[-1].strip() == f"({len(expected)} rows (showing 5))"
    capsys.readouterr()  # the sync's progress line
    # the stage may stop now: the folder alone answers the README's query
    assert cli.main(["warehouse", "query", FIRST_QUERY, "--dir", str(tmp_path / "warehouse")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["day", "category", "leads"] and out[-1] == f"({len(expected)} rows)"
    with LocalWarehouse(tmp_path / "warehouse") as local:
        assert_same(QUERIES[0], local.query(FIRST_QUERY)[1], expected)


def test_the_notebook_runs_as_a_script_and_charts_postgres_numbers(warehouse, tmp_path):
    stage, folder = warehouse
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_")}
    env.update(LETGO_WAREHOUSE_DIR=str(folder), LETGO_NOTEBOOK_OUT=str(tmp_path), MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "notebooks/first_analysis.py"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "leads_per_category_per_day.csv").read_text().splitlines()
    assert lines[0] == "day,category,leads"
    expected = pg(stage, f"SELECT event_time::date, category, count(*) FROM {LEAD} l "
                         "WHERE event_time >= current_date - 14 GROUP BY 1, 2 ORDER BY 1, 2")
    assert lines[1:] == [f"{day},{category},{leads}" for day, category, leads in expected]
    # the three plans' days at least (more when a plan's hours cross midnight UTC: a run just after it)
    assert len({day for day, _, _ in expected}) >= 3, "three days of traffic"
    assert (tmp_path / "leads_per_category_per_day.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_notebooks_redshift_connection_uses_what_the_jupyterhub_layer_sets():
    notebook = (REPO / "notebooks" / "first_analysis.py").read_text()
    layer = (REPO / "layers" / "jupyterhub" / "resources.yaml.j2").read_text()
    used = set(re.findall(r'os\.environ(?:\.get\()?\[?"(REDSHIFT_\w+|AWS_DEFAULT_REGION)"', notebook))
    assert used >= {"REDSHIFT_CLUSTER_ID", "REDSHIFT_DATABASE", "REDSHIFT_DB_USER_PREFIX", "REDSHIFT_DB_GROUP"}
    env_file = re.search(r"letgo\.env <<'ENV'\n(.*?)\n\s*ENV\n", layer, re.S).group(1)  # the instance's env file
    assert {name for name in used if not re.search(rf"^\s*{name}=", env_file, re.M)} == set(), "not set by the layer"
    assert len(re.findall(r"^conn = ", notebook, re.M)) == 1, "one connection line"
