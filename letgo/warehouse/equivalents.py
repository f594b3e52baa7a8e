"""What to write locally for a Redshift function DuckDB has no counterpart for.

Why: the local warehouse runs Redshift SQL through sqlglot's Redshift → DuckDB translation
(:mod:`letgo.warehouse.redshift_sql`). A function sqlglot does not know is passed through unchanged, and DuckDB
then answers "Scalar Function with name dexp does not exist" — true, but it does not tell an analyst what to
write instead. Each entry here is the DuckDB expression that computes the same thing (``x``, ``s``, ``j``, …
stand for the function's arguments); an error about a function names it and quotes its entry. Functions that
are missing from this table still get a message naming them (and DuckDB's function list to look in).

The entries were found by running every Redshift function an analyst is likely to type through the
translation and DuckDB (tests/unit/test_warehouse_redshift_sql.py holds that each one is still missing in
DuckDB's catalog — once sqlglot or DuckDB learns one, its entry goes).
"""
from __future__ import annotations

# Redshift function (upper case) -> what to write in DuckDB SQL (run it with --dialect duckdb, or inline).
LOCAL_EQUIVALENTS: dict[str, str] = {
    # date and time
    "TIMEOFDAY": "strftime(now(), '%a %b %d %H:%M:%S.%f %Y UTC')",
    "DATE_PART_YEAR": "year(d)",
    "DATE_CMP": "sign(date_diff('day', d2, d1))",
    "DATE_CMP_TIMESTAMP": "sign(epoch(d1) - epoch(ts2))",
    "TIMESTAMP_CMP": "sign(epoch(ts1) - epoch(ts2))",
    "TIMESTAMP_CMP_DATE": "sign(epoch(ts1) - epoch(d2))",
    "INTERVAL_CMP": "sign(epoch(i1) - epoch(i2))",
    # strings
    "REPLICATE": "repeat(s, n)",
    "QUOTE_IDENT": "'\"' || replace(s, '\"', '\"\"') || '\"'",
    "QUOTE_LITERAL": "'''' || replace(s, '''', '''''') || ''''",
    "SOUNDEX": "none in DuckDB; for fuzzy matching compare with jaro_winkler_similarity(a, b) > 0.9",
    "DIFFERENCE": "none in DuckDB; compare with jaro_winkler_similarity(a, b) or levenshtein(a, b)",
    "OCTET_LENGTH": "strlen(s) (bytes of the UTF-8 text)",
    "STRTOL": "CAST('0x' || s AS BIGINT) for base 16, CAST('0b' || s AS BIGINT) for base 2",
    "TEXT_TO_INT_ALT": "TRY_CAST(s AS INTEGER)",
    "TEXT_TO_NUMERIC_ALT": "TRY_CAST(s AS DECIMAL(18, 4))",
    "TO_NUMBER": "CAST(replace(s, ',', '') AS DECIMAL(18, 4))",
    # hashes (DuckDB's hash() is a different function: equal inputs still hash equal, values differ)
    "FUNC_SHA1": "sha1(s)",
    "CRC32": "hash(s) (another hash function: use it to bucket or compare, not to match Redshift's values)",
    "FNV_HASH": "hash(s) (another hash function: use it to bucket or compare, not to match Redshift's values)",
    # maths
    "DEXP": "exp(x)",
    "DLOG1": "ln(x)",
    "DLOG10": "log10(x)",
    # JSON text and SUPER
    "IS_VALID_JSON": "json_valid(s)",
    "IS_VALID_JSON_ARRAY": "json_valid(s) AND json_type(s) = 'ARRAY'",
    "CAN_JSON_PARSE": "json_valid(s)",
    "JSON_EXTRACT_ARRAY_ELEMENT_TEXT": "json_extract_string(s, i) (0-based, as in Redshift)",
    "JSON_SERIALIZE": "CAST(j AS VARCHAR)",
    "JSON_TYPEOF": "lower(json_type(j))",
    "JSON_SIZE": "strlen(CAST(j AS VARCHAR))",
    "IS_OBJECT": "json_type(j) = 'OBJECT'",
    "IS_SCALAR": "json_type(j) NOT IN ('OBJECT', 'ARRAY')",
    "IS_VARCHAR": "json_type(j) = 'VARCHAR'",
    "IS_BOOLEAN": "json_type(j) = 'BOOLEAN'",
    "IS_INTEGER": "json_type(j) IN ('BIGINT', 'UBIGINT')",
    "IS_FLOAT": "json_type(j) = 'DOUBLE'",
    "GET_ARRAY_LENGTH": "json_array_length(j)",
    "ARRAY_FLATTEN": "unnest the JSON array: SELECT value FROM json_each(j)",
    "SUBARRAY": "j -> '$[start]' … (JSON paths, 0-based), or a list: CAST(j AS VARCHAR[])[start + 1:start + length]",
    # aggregates and windows
    "HLL": "approx_count_distinct(x)",
    "HLL_CREATE_SKETCH": "approx_count_distinct(x) (no sketch type locally)",
    "HLL_CARDINALITY": "approx_count_distinct(x) over the rows the sketch was built from",
    "HLL_COMBINE": "approx_count_distinct(x) over the union of the rows",
    "RATIO_TO_REPORT": "x / SUM(x) OVER (PARTITION BY …)",
    # system
    "PG_LAST_COPY_COUNT": "none locally: the local warehouse is loaded by `letgo warehouse sync`, not COPY",
    "PG_LAST_QUERY_ID": "none locally",
}


def equivalent(function: str) -> str | None:
    """The local equivalent of the Redshift ``function`` (any case), or None when the table has none."""
    return LOCAL_EQUIVALENTS.get(function.upper())
