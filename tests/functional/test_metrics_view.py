"""Reading statistics back (letgo/metrics_view.py, `letgo metrics`) against the local stage's PostgreSQL.

Rows are written straight into ``metric_windows`` — two shards per metric window, so the ``metric_values``
view has to add them up — and read back through the HTTP API, the chart and the CLI.
"""
from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from handlers.statistics.definitions import load_metrics
from handlers.statistics.sink import MetricSink
from letgo import cli
from letgo.metrics_view import chart_series, create_app, metric_series, render_chart
from tests.conftest import REPO

pytestmark = pytest.mark.functional

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CATEGORIES = ("bikes", "cars", "electronics", "fashion", "furniture", "games", "garden", "home", "jobs", "music",
              "pets", "sports")


def lead_count(minute: int, category_index: int) -> int:
    return 10 + 3 * minute + 7 * category_index  # distinct per window and group, so order mistakes show


@pytest.fixture(scope="module")
def metrics(catalog):
    return load_metrics(Path(REPO) / "metrics", catalog)


@pytest.fixture
def dsn(stage):
    """GIVEN five one-minute windows of leads_per_category (12 categories, each split over two shards), five
    5-minute windows of average_listing_price and a row of an older version that must not show."""
    rows = []
    for minute in range(5):
        start = T0 + timedelta(minutes=minute)
        for index, category in enumerate(CATEGORIES):
            total = lead_count(minute, index)
            for shard, part in (("shardId-000000000000", total // 3), ("shardId-000000000001", total - total // 3)):
                rows.append(("leads_per_category", 1, start, start + timedelta(minutes=1), start, shard,
                             json.dumps([category]), json.dumps({"properties.category": category}), part,
                             None, None, None, None))
        price_start = T0 + timedelta(minutes=5 * minute)
        for sub in range(5):  # a 5-minute metric window is the sum of five stream windows
            rows.append(("average_listing_price", 1, price_start, price_start + timedelta(minutes=5),
                         price_start + timedelta(minutes=sub), "shardId-000000000000", '["cars","EUR"]',
                         json.dumps({"properties.category": "cars", "properties.currency": "EUR"}), 2,
                         2000.0 * (minute + 1), 900.0, 1100.0 * (minute + 1), None))
    rows.append(("leads_per_category", 0, T0 + timedelta(minutes=4), T0 + timedelta(minutes=5),
                 T0 + timedelta(minutes=4), "shardId-000000000000", '["bikes"]',
                 json.dumps({"properties.category": "bikes"}), 999_999, None, None, None, None))
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO metric_windows (metric, version, metric_window_start, metric_window_end, "
                "stream_window_start, shard_id, dims_key, dims, count, sum, min, max, distinct_estimate) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
    yield stage.postgres.dsn
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")


@pytest.fixture
def client(dsn, metrics):
    return create_app(dsn, metrics).test_client()


def assert_error(response, status, code):
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status and body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


def test_lists_metrics_with_descriptions(client, metrics):
    body = client.get("/metrics").get_json()
    listed = {m["name"]: m for m in body["metrics"]}
    assert set(listed) == {m.name for m in metrics.metrics}
    assert listed["leads_per_category"]["description"] == metrics.get("leads_per_category").description
    assert listed["leads_per_category"]["aggregation"] == "count"


def test_returns_the_last_n_windows_oldest_first_with_the_shards_added_up(client):
    response = client.get("/metrics/leads_per_category?last=3")
    assert response.status_code == 200
    body = response.get_json()
    assert body["last"] == 3
    windows = body["windows"]
    assert [w["window_start"] for w in windows] == [(T0 + timedelta(minutes=m)).isoformat() for m in (2, 3, 4)]
    for minute, window in zip((2, 3, 4), windows):
        assert window["window_end"] == (T0 + timedelta(minutes=minute + 1)).isoformat()
        values = {g["label"]: g["value"] for g in window["groups"]}
        assert values == {f"category={c}": lead_count(minute, i) for i, c in enumerate(CATEGORIES)}
    # the version-0 row in the last window is not mixed in
    assert windows[-1]["groups"][0]["label"] == "category=bikes" and windows[-1]["groups"][0]["value"] == 22

    every = client.get("/metrics/leads_per_category").get_json()  # default: the last 60
    assert every["last"] == 60 and len(every["windows"]) == 5


def test_the_value_follows_the_aggregation(client):
    body = client.get("/metrics/average_listing_price?last=2").get_json()
    assert [w["window_start"] for w in body["windows"]] == [(T0 + timedelta(minutes=m)).isoformat() for m in (15, 20)]
    for minute, window in zip((4, 5), body["windows"]):
        (group,) = window["groups"]
        assert group["label"] == "category=cars, currency=EUR"
        assert group["count"] == 10 and group["sum"] == pytest.approx(10_000.0 * minute)
        assert group["value"] == pytest.approx(1000.0 * minute) == group["avg"]


@pytest.mark.parametrize("last", ["0", "1441", "-1", "2.5", "abc", "", "99999999"])
def test_a_bad_last_is_a_400_with_a_json_error(client, last):
    message = assert_error(client.get(f"/metrics/leads_per_category?last={last}"), 400, "bad_last")
    assert "1 to 1440" in message
    assert_error(client.get(f"/metrics/leads_per_category/chart.png?last={last}"), 400, "bad_last")


def test_an_unknown_metric_is_a_404_in_the_same_shape(client):
    message = assert_error(client.get("/metrics/no_such_metric"), 404, "unknown_metric")
    assert "leads_per_category" in message  # says which ones exist
    assert_error(client.get("/metrics/no_such_metric/chart.png"), 404, "unknown_metric")
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.post("/metrics"), 405, "method_not_allowed")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_chart_png_is_a_real_png(client):
    response = client.get("/metrics/leads_per_category/chart.png?last=5")
    assert response.status_code == 200 and response.mimetype == "image/png"
    data = response.get_data()
    assert data.startswith(b"\x89PNG") and len(data) > 5_000
    width, height = png_size(data)
    assert width >= 800 and height >= 400


def test_render_chart_writes_top_8_groups_and_other(dsn, metrics, tmp_path):
    metric = metrics.get("leads_per_category")
    rows = [row for row in MetricSink(dsn).last_windows(metric.name, 5) if row["version"] == 1]
    path = render_chart(metric, rows, tmp_path / "charts" / "leads.png")
    assert path == tmp_path / "charts" / "leads.png"
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5_000

    lines = chart_series(rows, metric.aggregation)
    biggest = [f"category={c}" for c in reversed(CATEGORIES[4:])]  # larger index, more leads
    assert list(lines) == biggest + ["other"]
    assert [value for _, value in lines["other"]] == [sum(lead_count(m, i) for i in range(4)) for m in range(5)]


def test_render_chart_without_rows_still_draws(metrics, tmp_path):
    path = render_chart(metrics.get("events_per_type"), [], tmp_path / "empty.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_metric_series_labels_and_value_columns():
    row = {"window_start": T0, "dims": {}, "count": 4, "sum": 10.0, "min": 1.0, "max": 6.0, "avg": 2.5,
           "distinct_users": 3}
    grouped = {**row, "dims": {"properties.category": "bikes", "type": "Lead"}}
    for aggregation, expected in {"count": 4, "sum": 10.0, "min": 1.0, "max": 6.0, "avg": 2.5,
                                  "distinct_users": 3}.items():
        assert metric_series([row], aggregation) == {"all": [(T0, expected)]}
    assert list(metric_series([grouped], "count")) == ["category=bikes, type=Lead"]
    with pytest.raises(ValueError):
        metric_series([row], "median")


def test_cli_show_prints_the_values(dsn, capsys):
    assert cli.main(["metrics", "show", "leads_per_category", "--last", "2", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert "window start (UTC)" in out and "Buyers contacting sellers" in out
    assert "2026-03-01 12:03:00Z" in out and "2026-03-01 12:04:00Z" in out and "12:02:00Z" not in out
    lines = [line.split() for line in out.splitlines()]
    assert ["2026-03-01", "12:04:00Z", "category=pets", str(lead_count(4, 10))] in lines
    assert ["2026-03-01", "12:03:00Z", "category=bikes", str(lead_count(3, 0))] in lines


def test_cli_chart_prints_the_png_path(dsn, tmp_path, capsys):
    out = tmp_path / "leads.png"
    assert cli.main(["metrics", "chart", "leads_per_category", "--dsn", dsn, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_refuses_an_unknown_metric_and_a_bad_last(dsn, capsys):
    assert cli.main(["metrics", "show", "nope", "--dsn", dsn]) == 2
    assert "leads_per_category" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["metrics", "show", "leads_per_category", "--last", "0", "--dsn", dsn])
    assert "1 to 1440" in capsys.readouterr().err
