"""Model definitions: the shipped file loads; every kind of broken file stops start-up naming file and field."""
from __future__ import annotations

import copy

import pytest

from handlers.ml.definition import BASE_TRUSTED_TYPES, load_definition, parse_definition
from handlers.ml.errors import InvalidModelInput
from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import load_catalog
from tests.ml_kit import DEFINITION_FILE, DELETE, REPO, definition_document, set_path

pytestmark = pytest.mark.unit
FILE = DEFINITION_FILE.name


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(REPO / "event_types")


def test_shipped_definition_loads_with_its_columns_checked_against_the_event_type(catalog):
    definition = load_definition(DEFINITION_FILE, catalog=catalog)
    document = definition_document()
    assert definition.name == "price_suggestion" and definition.filename == FILE
    assert definition.data.event_type == "ItemListed"
    assert definition.data.features == tuple(document["data"]["features"])
    assert definition.data.kinds["price_eur"] == "numeric"  # the derived label is a column of the table
    assert len(definition.sha256) == 64
    assert set(BASE_TRUSTED_TYPES) <= set(definition.trusted_types)
    assert set(document["artifact"]["trusted_types"]) <= set(definition.trusted_types)
    # every column without its own null-rate limit gets the default
    listed = document["checks"]["max_null_rate"]
    for column, limit in definition.checks.max_null_rate.items():
        assert limit == listed.get(column, listed["default"])
    assert [g.name for g in definition.golden_requests] == [g["name"] for g in document["golden_requests"]]
    assert definition.guard_rails.max_change_window_seconds == 24 * 3600
    assert callable(definition.train.function) and callable(definition.predict.function)


def test_label_is_converted_to_euros_with_the_declared_rates():
    definition = parse_definition(definition_document(), FILE)
    rates = definition_document()["data"]["label"]["to_eur"]["rates"]
    label = definition.data.label
    assert label.derive({"price": 860.0, "currency": "GBP"}) == pytest.approx(860.0 / rates["GBP"])
    assert label.derive({"price": 35.0, "currency": "TRY"}) == pytest.approx(35.0 / rates["TRY"])
    assert label.derive({"price": 10.0, "currency": "XYZ"}) is None  # no rate: no label (the null-rate check sees it)
    assert label.derive({"price": None, "currency": "EUR"}) is None


def test_endpoint_validate_cleans_a_request_and_names_the_field_it_refuses():
    endpoint = parse_definition(definition_document(), FILE).endpoints[0]
    cleaned = endpoint.validate({"title": "  Trek mountain bike ", "category": "bikes", "country": "GB",
                                 "currency": "GBP"})
    assert cleaned["title"] == "Trek mountain bike"
    with pytest.raises(InvalidModelInput) as refused:
        endpoint.validate({"title": "Trek", "category": "bike", "country": "GB", "currency": "GBP"})
    assert (refused.value.field, refused.value.reason) == ("category", "not_in_enum")
    with pytest.raises(InvalidModelInput) as unknown:
        endpoint.validate({"title": "Trek", "category": "bikes", "country": "GB", "currency": "GBP", "colour": "red"})
    assert unknown.value.reason == "unknown_property"
    with pytest.raises(InvalidModelInput) as missing:
        endpoint.validate({"category": "bikes", "country": "GB", "currency": "GBP"})
    assert (missing.value.field, missing.value.reason) == ("title", "missing_field")


# case -> (overrides as dotted path -> value, the field the error must name, a piece of the reason)
BROKEN = {
    "name_not_the_file_name": ({"name": "price_model"}, "name", "file name"),
    "unknown_top_level_key": ({"colour": "red"}, None, "unknown key"),
    "owner_missing": ({"owner": DELETE}, "owner", "required"),
    "column_kind_unknown": ({"data.columns.title.kind": "txt"}, "data.columns.title.kind", "use one of"),
    "column_path_not_properties": ({"data.columns.title.path": "title"}, "data.columns.title.path", "a path is"),
    "label_column_unknown": ({"data.label.column": "cost"}, "data.label.column", "not a column"),
    "label_rate_not_positive": ({"data.label.to_eur.rates.GBP": 0}, "data.label.to_eur.rates.GBP", "positive"),
    "euro_rate_not_one": ({"data.label.to_eur.rates.EUR": 1.1}, "data.label.to_eur.rates.EUR", "1.0"),
    "feature_is_the_label": ({"data.features": ["title", "price"]}, "data.features[1]", "the label"),
    "feature_unknown": ({"data.features": ["title", "colour"]}, "data.features[1]", "not a column"),
    "stratify_on_text": ({"data.stratify_by": "title"}, "data.stratify_by", "categorical"),
    "max_rows_zero": ({"data.max_rows": 0}, "data.max_rows", "outside"),
    "null_rate_unknown_column": ({"checks.max_null_rate.colour": 0.1}, "checks.max_null_rate.colour", "no column"),
    "null_rate_above_one": ({"checks.max_null_rate.condition": 1.5}, "checks.max_null_rate.condition", "above 1"),
    "range_min_above_max": ({"checks.ranges.price_eur": {"min": 10, "max": 1}}, "checks.ranges.price_eur",
                            "min is above max"),
    "range_values_on_numeric": ({"checks.ranges.price_eur": {"values": ["a"]}}, "checks.ranges.price_eur.values",
                                "min/max"),
    "drift_on_text": ({"checks.drift.columns": ["title"]}, "checks.drift.columns[0]", "drift is measured"),
    "metric_unknown": ({"evaluation.metrics": ["mape", "mapee"]}, "evaluation.metrics[1]", "unknown regression metric"),
    "metric_of_a_classifier": ({"evaluation.metrics": ["mape", "accuracy"]}, "evaluation.metrics[1]",
                               "unknown regression metric"),
    "regression_output_with_values": ({"guard_rails.output": {"field": "suggested_price_eur", "values": ["a"]}},
                                      "guard_rails.output", "min and max"),
    "threshold_on_uncomputed_metric": ({"evaluation.thresholds.r2": {"min": 0.1}}, "evaluation.thresholds.r2",
                                       "not in evaluation.metrics"),
    "no_absolute_threshold": ({"evaluation.thresholds": DELETE}, "evaluation.thresholds", "at least one"),
    "relative_without_max_worse": ({"evaluation.relative_to_current.mape": {"worse": 0.02}},
                                   "evaluation.relative_to_current.mape", "max_worse"),
    "entry_point_malformed": ({"training.entry_point": "handlers.ml.models.price_suggestion.train"},
                              "training.entry_point", "module.path:function"),
    "entry_point_missing_function": ({"training.entry_point": "handlers.ml.models.price_suggestion:fit"},
                                     "training.entry_point", "cannot import"),
    "trusted_type_that_runs_code": ({"artifact.trusted_types": ["os.system"]}, "artifact.trusted_types[0]",
                                    "never trusted"),
    "input_of_a_non_scalar_type": ({"serving.endpoints.0.inputs.where": {"type": "geo_point"}},
                                   "serving.endpoints[0].inputs.where.type", "serving inputs"),
    "feature_not_an_input": ({"serving.endpoints.0.inputs.condition": DELETE}, "serving.endpoints[0].inputs",
                             "'condition' is not an input"),
    "input_spec_broken": ({"serving.endpoints.0.inputs.title.max_length": -1},
                          "serving.endpoints[0].inputs.title.max_length", "non-negative"),
    "guard_rail_field_not_an_output": ({"guard_rails.output.field": "price"}, "guard_rails.output.field",
                                       "not an output"),
    "guard_rail_window_malformed": ({"guard_rails.max_change.window": "a day"}, "guard_rails.max_change.window",
                                    "not a duration"),
    "kill_switch_env_lowercase": ({"guard_rails.kill_switch.env": "disabled"}, "guard_rails.kill_switch.env",
                                  "capitals"),
    "golden_input_refused_by_endpoint": ({"golden_requests.0.input.category": "phone"},
                                         "golden_requests[0].input.category", "not_in_enum"),
    "golden_expects_unknown_output": ({"golden_requests.0.expect.price": {"min": 1}}, "golden_requests[0].expect.price",
                                      "not an output"),
    "golden_unknown_endpoint": ({"golden_requests.0.endpoint": "/v2/price"}, "golden_requests[0].endpoint",
                                "not a declared endpoint"),
    "no_golden_requests": ({"golden_requests": []}, "golden_requests", "non-empty"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_parse_definition_broken_file_names_file_and_field(case):
    overrides, field, reason = BROKEN[case]
    document = copy.deepcopy(definition_document())
    for dotted, value in overrides.items():
        set_path(document, dotted, value)
    with pytest.raises(DefinitionError) as error:
        parse_definition(document, FILE)
    assert error.value.filename == FILE
    assert error.value.field == field, str(error.value)
    assert reason in error.value.message
    assert str(error.value).startswith(f"{FILE}: {field}: " if field else f"{FILE}: ")


@pytest.mark.parametrize("path, reason", [
    ("properties.titel", "no field 'titel'"),  # a typo in the event type's property
    ("properties.price", "cannot be a text column"),  # a number cannot be a text column
])
def test_column_paths_are_checked_against_the_event_type(catalog, path, reason):
    document = definition_document()
    set_path(document, "data.columns.title.path", path)
    with pytest.raises(DefinitionError) as error:
        parse_definition(document, FILE, catalog=catalog)
    assert (error.value.field, error.value.filename) == ("data.columns.title.path", FILE)
    assert reason in error.value.message


def test_unknown_event_type_is_named(catalog):
    document = definition_document()
    set_path(document, "data.event_type", "ItemListing")
    with pytest.raises(DefinitionError) as error:
        parse_definition(document, FILE, catalog=catalog)
    assert error.value.field == "data.event_type" and "not an event type" in error.value.message


def test_load_definition_not_yaml_names_the_file(tmp_path):
    path = tmp_path / "price_suggestion.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as error:
        load_definition(path)
    assert (error.value.filename, error.value.field) == (path.name, None)
    assert "not valid YAML" in error.value.message


# -- a classifier (models/category_suggestion.yaml) ------------------------------------------------------------------
CLASSIFIER_FILE = REPO / "models" / "category_suggestion.yaml"


def classifier_document() -> dict:
    import yaml

    return yaml.safe_load(CLASSIFIER_FILE.read_text(encoding="utf-8"))


def test_shipped_classifier_loads_with_a_categorical_label_its_metrics_and_rails(catalog):
    definition = load_definition(CLASSIFIER_FILE, catalog=catalog)
    rails = definition.guard_rails
    assert definition.data.label.kind == "categorical" and definition.data.features == ("title",)
    assert set(definition.evaluation.metrics) == {"accuracy", "f1_macro", "log_loss", "calibration_error"}
    assert rails.categorical and "phones" in rails.output_values and rails.max_change_relative is None
    assert (rails.min_confidence_field, rails.min_confidence) == ("confidence", 0.4)


CLASSIFIER_BROKEN = {
    "regression_metric": ({"evaluation.metrics": ["accuracy", "mape"]}, "evaluation.metrics[1]",
                          "unknown classification metric"),
    "bounds_instead_of_values": ({"guard_rails.output": {"field": "category", "min": 0, "max": 1}},
                                 "guard_rails.output", "values (not min/max)"),
    "max_change_on_a_category": ({"guard_rails.max_change": {"max_relative": 0.1, "window": "1h"}},
                                 "guard_rails.max_change", "applies to a number"),
    "confidence_not_an_output": ({"guard_rails.min_confidence.field": "certainty"},
                                 "guard_rails.min_confidence.field", "not an output"),
    "confidence_above_one": ({"guard_rails.min_confidence.min": 1.5}, "guard_rails.min_confidence.min", "above 1"),
    "values_repeated": ({"guard_rails.output.values": ["phones", "phones"]}, "guard_rails.output.values",
                        "distinct"),
}


@pytest.mark.parametrize("case", sorted(CLASSIFIER_BROKEN))
def test_broken_classifier_definition_names_file_and_field(case):
    overrides, field, reason = CLASSIFIER_BROKEN[case]
    document = classifier_document()
    for dotted, value in overrides.items():
        set_path(document, dotted, value)
    with pytest.raises(DefinitionError) as error:
        parse_definition(document, CLASSIFIER_FILE.name)
    assert (error.value.field, error.value.filename) == (field, CLASSIFIER_FILE.name), str(error.value)
    assert reason in error.value.message


def test_load_definitions_safely_keeps_the_good_ones_and_names_the_broken(tmp_path):
    from handlers.ml.definition import load_definitions_safely

    (tmp_path / "price_suggestion.yaml").write_bytes(DEFINITION_FILE.read_bytes())
    (tmp_path / "category_suggestion.yaml").write_text("name: category_suggestion\nowner: x\n", encoding="utf-8")
    (tmp_path / "not_yaml.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    loaded, broken = load_definitions_safely(tmp_path)
    assert list(loaded) == ["price_suggestion"] and sorted(broken) == ["category_suggestion.yaml", "not_yaml.yaml"]
    assert all(isinstance(error, DefinitionError) for error in broken.values())
    only, _ = load_definitions_safely(tmp_path, only={"nothing"})
    assert only == {}
