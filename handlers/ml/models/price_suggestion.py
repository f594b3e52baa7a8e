"""Price suggestion for a new listing: title, category, condition and country -> a price and a range.

The model: TF-IDF over the title's words (1–2-grams: "iphone 13", "mountain bike") and character n-grams
(2–4 within words: catches brands and model numbers across languages and typos), one-hot category /
condition / country, into a ridge regression on the log of the price in euros. Log, because prices span four
orders of magnitude and errors matter in proportion ("€50 off" is a lot for a shirt and nothing for a car);
euros, because the markets share items but not currencies — the answer is converted back to the request's
currency with the rates the model was trained with, stored in the artefact.

The range is the 10th–90th percentile of the out-of-fold log residuals (3-fold cross-validation on the
training rows), so it is honest about how spread asking prices are for similar items.

The artefact is a plain dict of the fitted scikit-learn estimator and numbers, which skops serialises; the
types it holds are the allow-list in ``models/price_suggestion.yaml`` (``artifact.trusted_types``).
Rows with a price of 0 ("free to collect") are left out of the fit: they would dominate a log-scale loss.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MISSING = "__missing__"
INTERVAL = (0.1, 0.9)


def feature_matrix(columns: Mapping[str, Sequence[Any]], features: Sequence[str],
                   kinds: Mapping[str, str]) -> np.ndarray:
    """An object matrix, one column per feature: text as strings, categories as strings, numbers as floats."""
    n = len(columns[features[0]])
    matrix = np.empty((n, len(features)), dtype=object)
    for j, name in enumerate(features):
        values, kind = columns[name], kinds[name]
        if kind == "text":
            matrix[:, j] = [v if isinstance(v, str) else "" for v in values]
        elif kind == "numeric":
            matrix[:, j] = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
                            for v in values]
        else:  # categorical, boolean
            matrix[:, j] = [MISSING if v is None else ("true" if v is True else "false" if v is False else str(v))
                            for v in values]
    return matrix


def build_estimator(features: Sequence[str], kinds: Mapping[str, str], *,
                    alpha: float = 1.0) -> TransformedTargetRegressor:
    transformers: list[tuple[str, Any, Any]] = []
    for j, name in enumerate(features):
        if kinds[name] == "text":
            transformers.append((f"{name}_words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), j))
            transformers.append((f"{name}_chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2,
                                                                  max_features=20000, sublinear_tf=True), j))
    categorical = [j for j, name in enumerate(features) if kinds[name] in ("categorical", "boolean")]
    if categorical:
        transformers.append(("categories", OneHotEncoder(handle_unknown="ignore"), categorical))
    numeric = [j for j, name in enumerate(features) if kinds[name] == "numeric"]
    if numeric:
        transformers.append(("numbers", Pipeline([("impute", SimpleImputer(strategy="median")),
                                                  ("scale", StandardScaler())]), numeric))
    pipeline = Pipeline([("features", ColumnTransformer(transformers)), ("ridge", Ridge(alpha=alpha))])
    return TransformedTargetRegressor(regressor=pipeline, func=np.log, inverse_func=np.exp, check_inverse=False)


def train(data: Any, labels: np.ndarray, definition: Any, *, seed: int) -> dict[str, Any]:
    """The training entry point: (training Dataset, labels in euros, definition, seed) -> artefact."""
    features = list(definition.data.features)
    kinds = {name: data.kinds[name] for name in features}
    labels = np.asarray(labels, dtype=float)
    keep = np.flatnonzero(labels > 0)
    matrix = feature_matrix(data.columns, features, kinds)[keep]
    labels = labels[keep]
    estimator = build_estimator(features, kinds)
    folds = KFold(n_splits=3, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(clone(estimator), matrix, labels, cv=folds)
    residuals = np.log(labels) - np.log(np.maximum(out_of_fold, 1e-9))
    low, high = (float(q) for q in np.quantile(residuals, INTERVAL))
    estimator.fit(matrix, labels)
    _compact(estimator)
    return {"estimator": estimator, "features": features, "kinds": kinds, "log_interval": [low, high],
            "eur_rates": {code: float(rate) for code, rate in definition.data.label.eur_rates.items()},
            "label": definition.data.label.name}


def _compact(estimator: TransformedTargetRegressor) -> None:
    """Make the fitted vectorisers cheap to serialise: vocabulary indices as Python ints (numpy scalars become
    one file each in a skops zip — thousands of them) and no ``stop_words_`` (the pruned terms, kept only for
    introspection; scikit-learn's own advice before serialising)."""
    for _, transformer, _ in estimator.regressor_.named_steps["features"].transformers_:
        if isinstance(transformer, TfidfVectorizer):
            transformer.vocabulary_ = {term: int(index) for term, index in transformer.vocabulary_.items()}
            if hasattr(transformer, "stop_words_"):
                del transformer.stop_words_


def predict_labels(model: Mapping[str, Any], data: Any) -> np.ndarray:
    """Predicted labels (euros) for every row of a Dataset: what evaluation compares with the truth."""
    matrix = feature_matrix(data.columns, model["features"], model["kinds"])
    return np.asarray(model["estimator"].predict(matrix), dtype=float)


def round_price(value: float) -> float:
    """Prices people write: whole units under 100, fives under 2,000, fifties above."""
    step = 50 if value >= 2000 else 5 if value >= 100 else 1
    return float(max(step, round(value / step) * step))


def predict(model: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """The serving entry point: a validated request -> suggested price, range and currency."""
    matrix = feature_matrix({name: [request.get(name)] for name in model["features"]}, model["features"],
                            model["kinds"])
    eur = float(model["estimator"].predict(matrix)[0])
    currency = request.get("currency") or "EUR"
    rate = model["eur_rates"].get(currency)
    if rate is None:
        raise ValueError(f"no exchange rate for {currency}: the model knows {', '.join(sorted(model['eur_rates']))}")
    low, high = model["log_interval"]
    return {"suggested_price": round_price(eur * rate), "low": round_price(eur * math.exp(low) * rate),
            "high": round_price(eur * math.exp(high) * rate), "currency": currency,
            "suggested_price_eur": round(eur, 2)}
