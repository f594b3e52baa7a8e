"""The guard rails as plain functions: output bounds, a classifier's allowed answers and abstaining, the sliding
change limit and the key it remembers answers by (normalised, so spelling variants share one limit).

(The shared memories on a real PostgreSQL and moto's DynamoDB: tests/functional/test_ml_memory.py.)
"""
from __future__ import annotations

import math

import pytest

from handlers.ml.definition_types import GuardRails
from handlers.ml.serving.errors import PredictionFailed
from handlers.ml.serving.guards import guard, input_key, normalise_text
from handlers.ml.serving.memory import LocalMemory, open_memory, slew
from tests.ml_serving_kit import request_body, scripted_definition

pytestmark = pytest.mark.unit

PATH = "/v1/price-suggestion"
DEFINITION = scripted_definition()
RAILS = DEFINITION.guard_rails
FEATURES = DEFINITION.data.features
OUTPUTS = {"suggested_price": 0.0, "low": 0.0, "high": 0.0, "currency": "EUR", "suggested_price_eur": 0.0}
CATEGORIES = GuardRails("category", output_values=("phones", "cars"), min_confidence_field="confidence",
                        min_confidence=0.4, kill_switch_env="X")
DAY = 86400.0
FACTOR = 1 + RAILS.max_change_relative


def outputs(eur: float) -> dict:
    return {**OUTPUTS, "suggested_price": eur, "low": eur / 2, "high": eur * 2, "suggested_price_eur": eur}


def key_of(**changes) -> bytes:
    return input_key(PATH, request_body(**changes), FEATURES, ("title",))


# -- output bounds -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, bound", [(RAILS.output_min / 10, RAILS.output_min),
                                        (RAILS.output_max * 3, RAILS.output_max), (-5.0, RAILS.output_min)])
def test_value_outside_the_bounds_is_clamped_and_related_outputs_scaled(raw, bound):
    result = guard(RAILS, outputs(raw))

    assert result.clamped and not result.change_limited
    assert result.outputs["suggested_price_eur"] == bound
    factor = bound / raw
    assert result.outputs["low"] == pytest.approx(round(raw / 2 * factor, 2))
    assert result.outputs["high"] == pytest.approx(round(raw * 2 * factor, 2))
    assert result.report(RAILS)["raw"] == raw and result.report(RAILS)["bounds"] == [RAILS.output_min,
                                                                                      RAILS.output_max]


def test_value_inside_the_bounds_is_untouched_and_not_reported():
    inside = (RAILS.output_min + RAILS.output_max) / 2
    result = guard(RAILS, outputs(inside))
    assert (result.clamped, result.change_limited, result.report(RAILS)) == (False, False, None)
    assert result.outputs == outputs(inside)


def test_without_scaling_related_outputs_stay():
    raw = RAILS.output_max * 2
    result = guard(RAILS, outputs(raw), scale_related=False)
    assert result.outputs["suggested_price_eur"] == RAILS.output_max and result.outputs["high"] == raw * 2


@pytest.mark.parametrize("value", [math.nan, math.inf, None, "120", True])
def test_value_that_is_not_a_finite_number_is_never_served(value):
    with pytest.raises(PredictionFailed) as refused:
        guard(RAILS, {**OUTPUTS, "suggested_price_eur": value})
    assert refused.value.details["field"] == RAILS.output_field


def test_the_limit_is_applied_after_the_bounds_and_reported():
    result = guard(RAILS, outputs(RAILS.output_max * 2), limit=lambda value: value / 2)
    assert result.clamped and result.change_limited and result.served == RAILS.output_max / 2
    assert result.report(RAILS)["max_relative"] == RAILS.max_change_relative


# -- a classifier: allowed answers, minimum confidence -------------------------------------------------------------
@pytest.mark.parametrize("answer, abstained, why", [
    ({"category": "phones", "confidence": 0.9}, False, None),
    ({"category": "phones", "confidence": 0.39}, True, "below the minimum"),
    ({"category": "spaceships", "confidence": 0.99}, True, "not one of the declared values"),
    ({"category": None, "confidence": 0.99}, True, "not one of the declared values"),
])
def test_a_classifier_answers_only_allowed_confident_categories_else_abstains(answer, abstained, why):
    result = guard(CATEGORIES, {**answer, "alternatives": []})
    assert result.abstained is abstained
    assert result.outputs["category"] == (None if abstained else answer["category"])
    assert result.outputs["confidence"] == answer["confidence"]  # the caller still sees how sure it was
    if why:
        assert why in result.report(CATEGORIES)["abstained_because"]
    else:
        assert result.report(CATEGORIES) is None


def test_a_classifier_without_a_finite_confidence_is_not_served():
    with pytest.raises(PredictionFailed):
        guard(CATEGORIES, {"category": "phones", "confidence": math.nan})


# -- the key: normalised spelling, features only -------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["iPhone 13 128GB como nuevo!", "IPHONE 13 128GB COMO NUEVO", "iphone  13 128gb "
                                     "como nuevo", "  iPhone 13, 128GB — como nuevo!!! ", "iPhone 13 128GB cómo nuevo"])
def test_spelling_variants_of_a_title_are_one_input(variant):
    assert key_of(title=variant) == key_of()


def test_inputs_the_model_does_not_read_do_not_split_the_key_but_features_do():
    assert key_of(currency="GBP") == key_of()  # the guarded answer is in euros whatever the currency
    assert key_of(country="PT") != key_of() and key_of(title="iPhone 14 128GB como nuevo") != key_of()
    assert input_key("/other", request_body(), FEATURES, ("title",)) != key_of()


def test_normalise_text_keeps_letters_and_digits_of_every_script():
    assert normalise_text("  Ｂｉｃｉｃｌｅｔａ  de  MONTAÑA ") == "bicicleta de montana"
    assert normalise_text("dağ bisikleti") == "dag bisikleti" and normalise_text("!!!") == ""


# -- the sliding limit ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("elapsed, raw", [(0, 500.0), (DAY / 4, 500.0), (DAY / 2, 10.0), (DAY, 5000.0),
                                          (10 * DAY, 5000.0), (DAY / 2, 101.0)])
def test_slew_moves_at_most_the_factor_pro_rata_to_the_time_since(elapsed, raw):
    served = slew(100.0, raw, elapsed, FACTOR, DAY)
    allowed = FACTOR ** min(1.0, elapsed / DAY)
    assert served == pytest.approx(min(max(raw, 100.0 / allowed), 100.0 * allowed))


def test_no_cliff_and_no_creep_over_any_window():
    """The old rail jumped in full when its window closed, and each request could move it: now, over every
    window of the day, the served answer moves at most the factor, however the requests are spaced."""
    memory, key, now = LocalMemory(), key_of(), 0.0
    served = [memory.step("m", key, 100.0, "v1", now=now, factor=FACTOR, window=DAY, ignore=frozenset())[0]]
    times = [0.0]
    for step in [60.0] * 200 + [DAY] + [3600.0] * 48:  # a bad version answering 50x, asked often then rarely
        now += step
        served.append(memory.step("m", key, 5000.0, "v2", now=now, factor=FACTOR, window=DAY,
                                  ignore=frozenset())[0])
        times.append(now)
    for i, start in enumerate(times):
        within = [value for t, value in zip(times[i:], served[i:]) if t - start <= DAY]
        assert max(within) <= served[i] * FACTOR * (1 + 1e-9)
    assert served[-1] < 5000.0  # three days in: still far from the bad answer


def test_what_a_rejected_version_served_is_not_a_limit_and_can_be_forgotten():
    memory, key = LocalMemory(), key_of()
    memory.step("m", key, 100.0, "v1", now=0.0, factor=FACTOR, window=DAY, ignore=frozenset())
    bad = memory.step("m", key, 5000.0, "v2", now=DAY, factor=FACTOR, window=DAY, ignore=frozenset())[0]
    assert bad == pytest.approx(100.0 * FACTOR)
    # rolled back: v1 answers 100 again, unlimited by what v2 served
    assert memory.step("m", key, 100.0, "v1", now=DAY + 1, factor=FACTOR, window=DAY,
                       ignore=frozenset({"v2"}))[0] == 100.0
    memory.step("m", key_of(title="otra cosa"), 7.0, "v2", now=DAY, factor=FACTOR, window=DAY, ignore=frozenset())
    memory.forget("m", ["v2"])
    assert len(memory) == 1


def test_local_memory_is_bounded_and_expires():
    memory = LocalMemory(capacity=3)
    for i in range(4):
        memory.step("m", key_of(title=f"bicicleta {i}"), 100.0, "v1", now=float(i), factor=FACTOR, window=DAY,
                    ignore=frozenset())
    assert len(memory) == 3
    memory.expire("m", before=2.5)
    assert len(memory) == 1


@pytest.mark.parametrize("spec", ["redis://x", "dynamodb:", "postgresq://x"])
def test_open_memory_names_the_accepted_forms(spec):
    with pytest.raises(ValueError, match="local, postgresql"):
        open_memory(spec)


def test_health_can_describe_every_kind_of_memory():
    from handlers.ml.serving.memory import DynamoMemory, PostgresMemory, Resilient, describe

    assert describe(LocalMemory()) == {"kind": "local", "state": "ok", "entries": 0}
    assert describe(PostgresMemory("postgresql://x@127.0.0.1:1/db")) == {"kind": "postgresql", "state": "ok"}
    assert describe(Resilient(DynamoMemory("t", client=object())))["state"] == "ok"
