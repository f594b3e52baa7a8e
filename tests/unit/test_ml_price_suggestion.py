"""The shipped price model: it learns, its artefact round-trips through skops with the allow-list, and its
serving answer is consistent across currencies."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from handlers.ml import artifacts
from handlers.ml.data import split_holdout
from handlers.ml.metrics import evaluate
from handlers.ml.models import price_suggestion
from tests.ml_kit import dataset_of, definition, listing_documents

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def trained():
    """GIVEN 2,500 seeded listings, split as the job splits them, and the shipped model fitted on 80 %."""
    model_definition = definition()
    spec = model_definition.data
    data = dataset_of(listing_documents(2500, seed=11), spec)
    train_idx, holdout_idx = split_holdout(data.column(spec.stratify_by), spec.holdout_fraction, spec.seed)
    train, holdout = data.take(train_idx), data.take(holdout_idx)
    labels = np.array(train.column(spec.label.name), dtype=float)
    model = price_suggestion.train(train, labels, model_definition, seed=spec.seed)
    return model_definition, model, train, holdout


def test_the_model_beats_the_median_price_of_the_category(trained):
    """The title matters: a per-category median (what a rule would do) must lose to the model."""
    model_definition, model, train, holdout = trained
    label = model_definition.data.label.name
    truth = np.array(holdout.column(label), dtype=float)
    model_scores = evaluate(["median_ape", "mape"], truth, price_suggestion.predict_labels(model, holdout))
    by_category: dict[str, list[float]] = {}
    for category, price in zip(train.column("category"), train.column(label)):
        by_category.setdefault(category, []).append(price)
    rule = np.array([np.median(by_category[c]) for c in holdout.column("category")])
    rule_scores = evaluate(["median_ape", "mape"], truth, rule)
    assert model_scores["median_ape"] < rule_scores["median_ape"]
    assert model_scores["mape"] < rule_scores["mape"]


def test_artefact_holds_only_trusted_types_and_round_trips(trained):
    model_definition, model, _, holdout = trained
    data = artifacts.dumps(model)
    held = artifacts.types_in(data)
    assert held <= set(model_definition.trusted_types), held - set(model_definition.trusted_types)
    reloaded = artifacts.loads(data, model_definition.trusted_types)
    assert np.allclose(price_suggestion.predict_labels(reloaded, holdout),
                       price_suggestion.predict_labels(model, holdout))


def test_an_artefact_with_a_type_outside_the_allow_list_is_refused_before_loading(trained):
    model_definition = trained[0]
    data = artifacts.dumps({"estimator": LogisticRegression()})
    with pytest.raises(artifacts.ArtefactError) as refused:
        artifacts.loads(data, model_definition.trusted_types)
    assert refused.value.untrusted == ("sklearn.linear_model._logistic.LogisticRegression",)


def test_predict_answers_in_the_requested_currency_with_a_range(trained):
    model_definition, model, _, _ = trained
    rates = model_definition.data.label.eur_rates
    request = {"title": "Trek mountain bike", "category": "bikes", "condition": "good", "country": "GB"}
    in_eur = price_suggestion.predict(model, {**request, "currency": "EUR"})
    in_gbp = price_suggestion.predict(model, {**request, "currency": "GBP"})
    assert in_gbp["suggested_price_eur"] == in_eur["suggested_price_eur"]
    assert in_gbp["currency"] == "GBP"
    assert in_gbp["suggested_price"] == price_suggestion.round_price(in_eur["suggested_price_eur"] * rates["GBP"])
    assert in_gbp["low"] <= in_gbp["suggested_price"] <= in_gbp["high"]
    with pytest.raises(ValueError, match="no exchange rate"):
        price_suggestion.predict(model, {**request, "currency": "JPY"})


def test_compiled_scorer_answers_what_scikit_learn_answers(trained):
    """The serving fast path: the fitted pipeline as plain sums, checked against scikit-learn's predict."""
    import random

    import numpy as np

    from handlers.ml.models.price_suggestion import LinearScorer, feature_matrix, predict, scorer_of

    _definition, model, _train, _holdout = trained
    scorer = LinearScorer.compile(model)
    assert scorer is not None and scorer_of(model) is not None
    rng = random.Random(5)
    words = ["iPhone", "13", "128GB", "bicicleta", "montaña", "sofá", "zz-unknown", "Golf", "TDI", "nuevo"]
    requests = [{"title": " ".join(rng.sample(words, rng.randint(0, 5))),
                 "category": rng.choice(["phones", "bikes", "cars", "fashion", "never-seen"]),
                 "condition": rng.choice(["new", "good", None]), "country": rng.choice(["ES", "NL", "GB", "XX"]),
                 "currency": "EUR"} for _ in range(200)]
    matrix = feature_matrix({name: [r.get(name) for r in requests] for name in model["features"]},
                            model["features"], model["kinds"])
    expected = model["estimator"].predict(matrix)
    assert np.allclose([scorer(r) for r in requests], expected, rtol=1e-9, atol=0)
    assert predict(model, requests[0])["suggested_price_eur"] == round(float(expected[0]), 2)
    assert "_linear_scorer" not in model  # the artefact is left exactly as trained
