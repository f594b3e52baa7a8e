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
import weakref
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


class LinearScorer:
    """The fitted pipeline as plain arithmetic, for one request at a time.

    The model is linear in its features: log(price) = intercept + coef · [tf-idf(title words), tf-idf(title
    character n-grams), one-hot(category, condition, country)]. scikit-learn's general machinery (a
    ColumnTransformer, sparse matrices, input validation) costs milliseconds for a single row; the same sums
    over the handful of terms a title has cost microseconds. :meth:`compile` derives the weights from the
    fitted objects and *proves* itself against scikit-learn on probe inputs before it is used — any other
    pipeline shape, or any disagreement, leaves serving on scikit-learn's own ``predict``.
    """

    def __init__(self, intercept: float, parts: list[tuple[str, Any]]) -> None:
        self.intercept, self.parts = intercept, parts

    @classmethod
    def compile(cls, model: Mapping[str, Any]) -> "LinearScorer | None":
        estimator = model["estimator"]
        try:
            pipeline = estimator.regressor_
            columns, ridge = pipeline.named_steps["features"], pipeline.named_steps["ridge"]
            coef = np.asarray(ridge.coef_, dtype=float).ravel()
            if estimator.func is not np.log or estimator.inverse_func is not np.exp:
                return None
            parts: list[tuple[str, Any]] = []
            for name, transformer, selected in columns.transformers_:
                if transformer == "drop" or name == "remainder":
                    continue
                block = coef[columns.output_indices_[name]]
                indices = [selected] if isinstance(selected, (int, np.integer)) else list(selected)
                features = [model["features"][int(j)] for j in indices]
                if isinstance(transformer, TfidfVectorizer):
                    if transformer.norm != "l2" or not transformer.use_idf or len(features) != 1:
                        return None
                    vocabulary = transformer.vocabulary_
                    idf = transformer.idf_
                    weights = {term: (float(idf[i]), float(block[i])) for term, i in vocabulary.items()}
                    parts.append(("tfidf", (features[0], transformer.build_analyzer(), weights,
                                            bool(transformer.sublinear_tf))))
                elif isinstance(transformer, OneHotEncoder):
                    offset, lookups = 0, []
                    for feature, categories in zip(features, transformer.categories_):
                        lookups.append((feature, {str(c): float(block[offset + k]) for k, c in enumerate(categories)}))
                        offset += len(categories)
                    parts.append(("onehot", lookups))
                else:
                    return None
            scorer = cls(float(ridge.intercept_), parts)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        return scorer if scorer._agrees_with(model) else None

    def log_price(self, request: Mapping[str, Any]) -> float:
        total = self.intercept
        for kind, spec in self.parts:
            if kind == "tfidf":
                feature, analyzer, weights, sublinear = spec
                text = request.get(feature)
                counts: dict[str, int] = {}
                for term in analyzer(text if isinstance(text, str) else ""):
                    if term in weights:
                        counts[term] = counts.get(term, 0) + 1
                dot = norm = 0.0
                for term, count in counts.items():
                    idf, weight = weights[term]
                    value = ((1.0 + math.log(count)) if sublinear else float(count)) * idf
                    dot += value * weight
                    norm += value * value
                if norm > 0:
                    total += dot / math.sqrt(norm)
            else:
                for feature, lookup in spec:
                    value = request.get(feature)
                    key = MISSING if value is None else ("true" if value is True else "false" if value is False
                                                         else str(value))
                    total += lookup.get(key, 0.0)  # handle_unknown="ignore": an unseen value adds nothing
        return total

    def __call__(self, request: Mapping[str, Any]) -> float:
        return math.exp(self.log_price(request))

    def _agrees_with(self, model: Mapping[str, Any]) -> bool:
        """Same answer as scikit-learn (to 1e-9, relative) on probes: known and unseen words and values."""
        probes = []
        for kind, spec in self.parts:
            if kind == "onehot":
                for feature, lookup in spec:
                    for value in sorted(lookup)[:6] + ["__never_seen__"]:
                        probes.append({feature: value})
        words = [" ".join(sorted(spec[2])[i::97][:4]) for kind, spec in self.parts if kind == "tfidf" for i in range(3)]
        base = {"title": "iPhone 13 128GB como nuevo", "category": "phones", "condition": "good", "country": "ES"}
        requests = [{**base, **probe} for probe in probes] + [{**base, "title": w} for w in words]
        requests += [{**base, "title": "Bicicleta de montaña Orbea Orbea"}, {**base, "title": ""},
                     {**base, "condition": None}]
        matrix = feature_matrix({name: [r.get(name) for r in requests] for name in model["features"]},
                                model["features"], model["kinds"])
        expected = np.asarray(model["estimator"].predict(matrix), dtype=float)
        actual = np.asarray([self(r) for r in requests])
        return bool(np.allclose(actual, expected, rtol=1e-9, atol=0.0))


_SCORERS: "weakref.WeakKeyDictionary[Any, LinearScorer | bool]" = weakref.WeakKeyDictionary()


def scorer_of(model: Mapping[str, Any]) -> "LinearScorer | None":
    """The model's compiled scorer, built once per fitted estimator (kept beside it, never inside the model:
    the artefact stays exactly what was trained); None when it cannot be compiled."""
    estimator = model["estimator"]
    scorer = _SCORERS.get(estimator)
    if scorer is None:
        scorer = _SCORERS[estimator] = LinearScorer.compile(model) or False
    return scorer or None


def predict(model: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """The serving entry point: a validated request -> suggested price, range and currency."""
    scorer = scorer_of(model)
    if scorer is not None:
        eur = scorer(request)
    else:
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
