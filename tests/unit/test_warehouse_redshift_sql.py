"""Redshift SQL → DuckDB (letgo/warehouse/redshift_sql.py): each rewrite sqlglot's translation needs, run on an
in-memory DuckDB with values whose Redshift answer is known, and the refusals an analyst reads.

The same queries against PostgreSQL's answers over the local stage's events are the functional tier's
(tests/functional/test_warehouse_redshift.py); here each Redshift rule is pinned on its own, with data chosen
so that the wrong rule gives a different answer (9 > 10 as text, 7 / 2 = 3.5, a 0-based subscript …).
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel, UnsupportedError

from letgo.warehouse.equivalents import LOCAL_EQUIVALENTS
from letgo.warehouse.redshift_sql import LetgoRedshift, NotLocal, RedshiftSqlError, WarehouseSchema, explain, translate

pytestmark = pytest.mark.unit

FILTERS = {"type": "object", "properties": {
    "max_price": {"type": "number"}, "condition": {"type": "list", "items": {"type": "enum"}},
    "shipping_available": {"type": "boolean"}}}
CONTEXT = {"type": "object", "properties": {"app": {"type": "object", "properties": {"version": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def db():
    """Two small views as the local warehouse has them (JSON for SUPER), UTC as Redshift."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("CREATE SCHEMA analytics")
    connection.execute("""CREATE TABLE analytics.lead AS SELECT * FROM (VALUES
        ('m1', TIMESTAMP '2026-01-05 10:11:12', 'u1', 'cars', 'chat', 7, 10.5),
        ('m2', TIMESTAMP '2026-01-05 23:59:59', 'u1', 'cars', 'offer', 8, 20.0),
        ('m3', TIMESTAMP '2026-01-06 00:00:00', 'u2', 'home', 'chat', NULL, NULL),
        ('m4', TIMESTAMP '2026-01-06 08:00:00', 'u3', 'home', 'chat', 2, 5.0))
        AS t(message_id, event_time, user_id, category, channel, message_length, price)""")
    connection.execute("ALTER TABLE analytics.lead ALTER price TYPE DOUBLE")
    connection.execute("""CREATE TABLE analytics.search AS SELECT message_id, event_time,
        CAST(filters AS JSON) AS filters, CAST(context AS JSON) AS context FROM (VALUES
        ('s1', TIMESTAMP '2026-01-05 10:00:00', '{"max_price": 9, "condition": ["new", "good"]}',
         '{"app": {"version": "4.12.0"}, "library": {"name": "analytics-ios"}}'),
        ('s2', TIMESTAMP '2026-01-05 11:00:00', '{"max_price": 10, "condition": ["good"]}',
         '{"app": {"version": "4.13.0"}, "library": {"name": "analytics-android"}}'),
        ('s3', TIMESTAMP '2026-01-05 12:00:00', '{"max_price": 100}', '{"app": {"version": "4.13.0"}}'))
        AS t(message_id, event_time, filters, context)""")
    functions = frozenset(n for (n,) in connection.execute("SELECT lower(function_name) FROM duckdb_functions()")
                          .fetchall())
    schema = WarehouseSchema(temporal=frozenset({"event_time"}), integers=frozenset({"message_length"}),
                             navigable={"filters": FILTERS, "context": CONTEXT}, functions=functions)
    yield connection, schema
    connection.close()


def run(db, sql: str) -> tuple[list[str], list[tuple]]:
    connection, schema = db
    cursor = connection.execute(translate(sql, schema))
    return [c[0] for c in cursor.description], cursor.fetchall()


def test_the_readme_query_runs_and_trunc_of_a_timestamp_is_its_day(db):
    columns, rows = run(db, "SELECT TRUNC(event_time) AS day, category, count(*) AS leads FROM analytics.lead "
                            "WHERE event_time >= DATEADD(day, -7, DATE '2026-01-06') GROUP BY 1, 2 ORDER BY 1, 3 DESC;")
    assert columns == ["day", "category", "leads"]
    assert rows == [(dt.date(2026, 1, 5), "cars", 2), (dt.date(2026, 1, 6), "home", 2)]
    # numeric TRUNC stays numeric; a timestamp the warehouse cannot type gets a hint naming the way out
    assert run(db, "SELECT TRUNC(price), TRUNC(price, 0) FROM analytics.lead WHERE message_id = 'm1'")[1] == [
        (10.0, 10.0)]
    assert run(db, "SELECT TRUNC(DATEADD(hour, 1, event_time)) FROM analytics.lead WHERE message_id = 'm2'") == (
        ["trunc"], [(dt.date(2026, 1, 6),)])
    with pytest.raises(duckdb.Error) as failed:
        run(db, "WITH x AS (SELECT event_time AS moment FROM analytics.lead) SELECT TRUNC(moment) FROM x")
    assert "CAST(x AS DATE)" in explain(str(failed.value))


def test_getdate_is_a_utc_timestamp_to_the_second_and_datediff_counts_boundaries(db):
    [(now, sysdate, today)] = run(db, "SELECT GETDATE(), SYSDATE, CURRENT_DATE")[1]
    assert now.tzinfo is None and now.microsecond == 0 and sysdate.tzinfo is None
    assert abs(now - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) < dt.timedelta(seconds=5)
    assert today == dt.datetime.now(dt.timezone.utc).date()
    rows = run(db, "SELECT DATEDIFF(day, MIN(event_time), MAX(event_time)), DATEDIFF(minute, "
                   "TIMESTAMP '2026-01-05 23:59:59', TIMESTAMP '2026-01-06 00:00:00') FROM analytics.lead")[1]
    assert rows == [(1, 1)]  # boundaries crossed, as Redshift: 1 second apart is 1 minute


def test_integer_division_and_the_average_of_integers_truncate_as_in_redshift(db):
    [row] = run(db, "SELECT 7 / 2, -7 / 2, 7 / 2.0, COUNT(*) / COUNT(DISTINCT user_id), AVG(message_length), "
                    "AVG(price), SUM(message_length) / 2 FROM analytics.lead")[1]
    # SUM of a BIGINT is a NUMERIC in Redshift: 17 / 2 keeps its fraction
    assert row == (3, -3, 3.5, 1, 5, pytest.approx(35.5 / 3), 8.5)


def test_nvl_decode_listagg_and_approximate_count(db):
    rows = run(db, "SELECT category, NVL(SUM(message_length), 0), DECODE(category, 'cars', 'c', 'other'), "
                   "LISTAGG(DISTINCT channel, ',') WITHIN GROUP (ORDER BY channel), LISTAGG(message_id) "
                   "WITHIN GROUP (ORDER BY message_id), APPROXIMATE COUNT(DISTINCT user_id) "
                   "FROM analytics.lead GROUP BY 1 ORDER BY 1")
    assert rows[0] == ["category", "coalesce", "decode", "listagg", "listagg", "count"]  # Redshift's names
    assert rows[1] == [("cars", 15, "c", "chat,offer", "m1m2", 1), ("home", 2, "other", "chat", "m3m4", 2)]


def test_super_navigation_is_typed_by_the_yaml_and_subscripts_are_zero_based(db):
    columns, rows = run(db, "SELECT s.message_id, s.filters.max_price, s.filters.condition[0], s.context.app.version, "
                            "context.library.name FROM analytics.search AS s WHERE s.filters.max_price > 9 "
                            "ORDER BY s.filters.max_price")
    assert columns == ["message_id", "max_price", "condition", "version", "name"]
    assert rows == [("s2", 10.0, "good", "4.13.0", "analytics-android"), ("s3", 100.0, None, "4.13.0", None)]
    # a navigation inside a function, and a relation aliased like a SUPER column is a relation, not a path
    assert run(db, "SELECT COUNT(*) FROM analytics.search WHERE filters.condition[1] = 'good'")[1] == [(1,)]
    assert run(db, "SELECT filters.message_id FROM analytics.search AS filters ORDER BY 1 LIMIT 1")[1] == [("s1",)]


def test_to_char_and_window_functions(db):
    rows = run(db, "SELECT TO_CHAR(event_time, 'Dy DD Mon YYYY HH24:MI'), ROW_NUMBER() OVER (PARTITION BY "
                   "category ORDER BY event_time), LAG(channel) OVER (PARTITION BY category ORDER BY event_time), "
                   "SUM(price) OVER (ORDER BY event_time ROWS UNBOUNDED PRECEDING) FROM analytics.lead ORDER BY "
                   "event_time")
    assert rows == (["to_char", "row_number", "lag", "sum"], [
        ("Mon 05 Jan 2026 10:11", 1, None, 10.5), ("Mon 05 Jan 2026 23:59", 2, "chat", 30.5),
        ("Tue 06 Jan 2026 00:00", 1, None, 30.5), ("Tue 06 Jan 2026 08:00", 2, "chat", 35.5)])


def test_several_statements_and_comments(db):
    assert run(db, "-- the analyst's scratch\nSELECT 1;\nSELECT COUNT(*) FROM analytics.lead; ")[1] == [(4,)]


def test_a_function_without_a_translation_is_named_with_its_local_equivalent(db):
    _, schema = db
    with pytest.raises(NotLocal) as refused:
        translate("SELECT STRTOL(category, 16) FROM analytics.lead", schema)
    assert refused.value.function == "STRTOL" and "CAST('0x' || s AS BIGINT)" in str(refused.value)
    with pytest.raises(NotLocal, match=r"^SOUNDEX\(\) .*jaro_winkler_similarity"):
        translate("SELECT soundex(category) FROM analytics.lead", schema)
    with pytest.raises(NotLocal, match=r"^MY_UDF\(\) is not a DuckDB function; no known local equivalent"):
        translate("SELECT my_udf(category) FROM analytics.lead", schema)
    with pytest.raises(RedshiftSqlError, match="not Redshift SQL.*--dialect duckdb"):
        translate("SELECT (1", schema)
    with pytest.raises(NotLocal, match=r"^TO_NUMBER\(\) .*CAST\(replace"):
        translate("SELECT to_number(category, '99') FROM analytics.lead", schema)
    # a column or string spelled like such a function is not a call
    assert translate("SELECT 'dexp(1)' AS crc32", schema) == "SELECT 'dexp(1)' AS crc32"
    assert explain("Catalog Error: Scalar Function with name dexp does not exist!") == "hint: DEXP() locally: exp(x)"
    assert explain("Binder Error: Referenced column nope not found") is None


# One call per entry of the table, with arguments of the types Redshift takes.
SAMPLES = {
    "TIMEOFDAY": "()", "DATE_PART_YEAR": "(DATE '2026-01-05')", "DATE_CMP": "(DATE '2026-01-05', DATE '2026-01-06')",
    "DATE_CMP_TIMESTAMP": "(DATE '2026-01-05', TIMESTAMP '2026-01-06 00:00:00')",
    "TIMESTAMP_CMP": "(TIMESTAMP '2026-01-05 00:00:00', TIMESTAMP '2026-01-06 00:00:00')",
    "TIMESTAMP_CMP_DATE": "(TIMESTAMP '2026-01-05 00:00:00', DATE '2026-01-06')",
    "INTERVAL_CMP": "(INTERVAL '1 day', INTERVAL '2 days')", "REPLICATE": "('ab', 2)", "QUOTE_IDENT": "('a')",
    "QUOTE_LITERAL": "('a')", "SOUNDEX": "('a')", "DIFFERENCE": "('a', 'b')", "OCTET_LENGTH": "('a')",
    "STRTOL": "('ff', 16)", "TEXT_TO_INT_ALT": "('12')", "TEXT_TO_NUMERIC_ALT": "('12')", "TO_NUMBER": "('12', '99')",
    "FUNC_SHA1": "('a')", "CRC32": "('a')", "FNV_HASH": "('a')", "DEXP": "(1.0)", "DLOG1": "(1.0)", "DLOG10": "(1.0)",
    "IS_VALID_JSON": "('{}')", "IS_VALID_JSON_ARRAY": "('[]')", "CAN_JSON_PARSE": "('{}')",
    "JSON_EXTRACT_ARRAY_ELEMENT_TEXT": "('[1,2]', 1)",
    **{name: "(JSON_PARSE('[1]'))" for name in ("JSON_SERIALIZE", "JSON_TYPEOF", "JSON_SIZE", "IS_OBJECT", "IS_SCALAR",
                                                "IS_VARCHAR", "IS_BOOLEAN", "IS_INTEGER", "IS_FLOAT",
                                                "GET_ARRAY_LENGTH", "ARRAY_FLATTEN")},
    "SUBARRAY": "(JSON_PARSE('[1,2]'), 0, 1)", "HLL": "(1)", "HLL_CREATE_SKETCH": "(1)",
    "HLL_CARDINALITY": "(HLL_CREATE_SKETCH(1))", "HLL_COMBINE": "(HLL_CREATE_SKETCH(1))",
    "RATIO_TO_REPORT": "(1) OVER ()", "PG_LAST_COPY_COUNT": "()", "PG_LAST_QUERY_ID": "()",
}


@pytest.mark.parametrize("function", sorted(LOCAL_EQUIVALENTS))
def test_every_listed_function_is_still_missing_locally_and_is_refused_by_name(db, function):
    connection, schema = db
    sql = f"SELECT {function}{SAMPLES[function]}"
    try:  # without the refusal: sqlglot refuses it, or DuckDB does — else the entry is stale and goes
        duck = sqlglot.transpile(sql, read=LetgoRedshift, write="duckdb", unsupported_level=ErrorLevel.RAISE)[0]
    except UnsupportedError:
        pass
    else:
        with pytest.raises(duckdb.Error):
            connection.execute(duck).fetchall()
    with pytest.raises(NotLocal) as refused:
        translate(sql, schema)
    assert refused.value.function == function and refused.value.equivalent == LOCAL_EQUIVALENTS[function]
    assert str(refused.value).startswith(f"{function}() ") and LOCAL_EQUIVALENTS[function] in str(refused.value)


def test_the_samples_cover_the_table():
    assert set(SAMPLES) == set(LOCAL_EQUIVALENTS)
