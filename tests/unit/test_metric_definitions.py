"""Metric definitions: the shipped files load, and every kind of broken file stops start-up precisely."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import load_catalog
from handlers.statistics.definitions import load_metrics

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
METRICS = REPO / "metrics"
SHIPPED = {"active_users_per_country", "average_listing_price", "events_per_type", "leads_per_category",
           "offers_value_per_currency"}


@pytest.fixture(scope="module")
def shipped_catalog():
    return load_catalog(REPO / "event_types")


def test_load_metrics_shipped_files_load_with_a_60s_stream_window(shipped_catalog):
    metric_set = load_metrics(METRICS, shipped_catalog)
    assert {m.name for m in metric_set.metrics} == SHIPPED
    assert metric_set.stream_window_seconds == 60
    offers = metric_set.get("offers_value_per_currency")
    assert offers.key == "offers_value_per_currency:v1"
    assert offers.where == (("properties.channel", ("offer",)),)
    assert offers.field == "properties.offer_amount" and offers.aggregation == "sum"
    assert metric_set.get("average_listing_price").group_by == ("properties.category", "properties.currency")
    assert metric_set.windows["average_listing_price:v1"] == 300
    assert metric_set.get("events_per_type").event_type == "*"


def write(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.yaml").write_text(body, encoding="utf-8")


def metric(name: str, *, type_: str = "Lead", where: str = "", group_by: str = "[properties.category]",
           window: str = "60s", aggregation: str = "count", extra: str = "") -> str:
    where_line = f"  where: {where}\n" if where else ""
    return (f"name: {name}\nversion: 1\ndescription: A test metric.\nevents:\n  type: \"{type_}\"\n{where_line}"
            f"group_by: {group_by}\nwindow: {window}\naggregation: {aggregation}\n{extra}")


# case -> (file stem, file body, the field the error must name, a piece of the reason)
BROKEN = {
    "name_not_the_file_name": ("broken", metric("other_name"), "name", "file name"),
    "name_not_snake_case": ("BadName", metric("BadName"), "name", "snake_case"),
    "version_zero": ("v", metric("v").replace("version: 1", "version: 0"), "version", "positive integer"),
    "description_missing": ("d", metric("d").replace("description: A test metric.\n", ""), "description",
                            "required"),
    "unknown_top_level_key": ("u", metric("u", extra="colour: red\n"), None, "unknown key(s) ['colour']"),
    "not_yaml": ("y", "name: [unclosed\n", None, "not valid YAML"),
    "unknown_event_type": ("t", metric("t", type_="Leads"), "events.type", "not an event type"),
    "unknown_property": ("p", metric("p", group_by="[properties.colour]"), "group_by[0]", "no field 'colour'"),
    "property_path_on_any_type": ("a", metric("a", type_="*", group_by="[type, properties.category]"),
                                  "group_by[1]", "only 'type' and 'context.*'"),
    "unknown_context_field": ("c", metric("c", group_by="[context.os.flavour]"), "group_by[0]",
                              "no field 'flavour'"),
    "bad_path_root": ("r", metric("r", group_by="[userId]"), "group_by[0]", "a path is 'type'"),
    "group_by_pii": ("pii", metric("pii", group_by="[context.ip]"), "group_by[0]", "pii"),
    "group_by_object": ("o", metric("o", group_by="[context.location]"), "group_by[0]", "only scalar fields"),
    "group_by_geo_point": ("g", metric("g", type_="ItemListed", group_by="[properties.location]"), "group_by[0]",
                           "only scalar fields"),
    "group_by_too_many": ("many", metric("many", group_by="[type, properties.category, properties.channel, "
                                                           "properties.currency, context.os.name]"),
                          "group_by", "at most 4"),
    "group_by_twice": ("twice", metric("twice", group_by="[type, type]"), "group_by", "twice"),
    "window_unit": ("w", metric("w", window="90x"), "window", "not a duration"),
    "window_zero": ("w0", metric("w0", window="0s"), "window", "shorter than 1 s"),
    "window_of_a_day": ("w1", metric("w1", window="1d"), "window", "longer than one hour"),
    "window_missing": ("wm", metric("wm").replace("window: 60s\n", ""), "window", "required"),
    "window_over_an_hour": ("w2", metric("w2", window="2h"), "window", "longer than one hour"),
    "unknown_aggregation": ("agg", metric("agg", aggregation="median"), "aggregation", "not an aggregation"),
    "sum_without_field": ("s", metric("s", aggregation="sum"), "field", "required for sum"),
    "count_with_field": ("cf", metric("cf", extra="field: properties.price\n"), "field", "not allowed for count"),
    "distinct_with_field": ("df", metric("df", aggregation="distinct_users", extra="field: properties.price\n"),
                            "field", "not allowed for distinct_users"),
    "field_not_numeric": ("fs", metric("fs", aggregation="avg", extra="field: properties.channel\n"), "field",
                          "needs a number or integer"),
    "field_on_any_type": ("fa", metric("fa", type_="*", group_by="[type]", aggregation="max",
                                       extra="field: properties.price\n"), "field", "only 'type' and 'context.*'"),
    "field_unknown": ("fu", metric("fu", aggregation="min", extra="field: properties.cost\n"), "field",
                      "no field 'cost'"),
    "where_value_not_in_enum": ("we", metric("we", where="{properties.channel: [fax]}"),
                                "events.where.properties.channel", "never match"),
    "where_not_a_list": ("wl", metric("wl", where="{properties.channel: offer}"),
                         "events.where.properties.channel", "non-empty list"),
    "where_unknown_type": ("wt", metric("wt", type_="*", where="{type: [Leed]}", group_by="[type]"),
                           "events.where.type", "unknown event type"),
    "distinct_users_on_a_longer_window": ("du", metric("du", aggregation="distinct_users", window="5m"), "window",
                                          "cannot be summed across sub-windows"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_load_metrics_broken_file_names_file_and_field(tmp_path, shipped_catalog, case):
    stem, body, field, reason = BROKEN[case]
    directory = Path(shutil.copytree(METRICS, tmp_path / "metrics"))  # next to the good ones: gcd stays 60 s
    write(directory, stem, body)
    with pytest.raises(DefinitionError) as caught:
        load_metrics(directory, shipped_catalog)
    error = caught.value
    assert (error.filename, error.field) == (f"{stem}.yaml", field)
    assert reason in error.message
    assert str(error).startswith(f"{stem}.yaml: ")


def test_load_metrics_stream_window_above_900s_is_refused(tmp_path, shipped_catalog):
    write(tmp_path, "hourly_leads", metric("hourly_leads", window="1h"))
    write(tmp_path, "half_hourly_leads", metric("half_hourly_leads", window="30m"))
    with pytest.raises(DefinitionError) as caught:
        load_metrics(tmp_path, shipped_catalog)
    assert caught.value.filename == "half_hourly_leads.yaml"
    assert caught.value.field == "window"
    assert "1800 s" in caught.value.message and "900" in caught.value.message


def test_load_metrics_stream_window_is_the_gcd(tmp_path, shipped_catalog):
    write(tmp_path, "every_40s", metric("every_40s", window="40s"))
    write(tmp_path, "every_minute", metric("every_minute", window="1m"))
    write(tmp_path, "hourly", metric("hourly", window="1h", group_by="[]"))
    metric_set = load_metrics(tmp_path, shipped_catalog)
    assert metric_set.stream_window_seconds == 20
    assert metric_set.get("hourly").group_by == ()


def test_load_metrics_empty_or_missing_directory_is_refused(tmp_path, shipped_catalog):
    with pytest.raises(DefinitionError, match="no metric definitions"):
        load_metrics(tmp_path, shipped_catalog)
    with pytest.raises(DefinitionError, match="not found"):
        load_metrics(tmp_path / "nope", shipped_catalog)


def test_load_metrics_nested_and_context_paths_resolve(tmp_path, shipped_catalog):
    write(tmp_path, "per_os", metric("per_os", type_="*", group_by="[context.os.name, context.locale]",
                                     where="{type: [Lead, AppOpened], context.network.wifi: [true]}"))
    (only,) = load_metrics(tmp_path, shipped_catalog).metrics
    assert only.group_by == ("context.os.name", "context.locale")
    assert only.where == (("type", ("Lead", "AppOpened")), ("context.network.wifi", (True,)))
