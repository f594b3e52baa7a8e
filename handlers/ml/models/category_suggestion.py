"""Category suggestion for a new listing: its title -> the category it most likely belongs to, with a confidence.

The model: TF-IDF over the title's words (1–2-grams) and character n-grams (2–4 within words: brands, model
numbers and five languages without a tokenizer per language), into a multinomial logistic regression. Logistic
regression because its probabilities are usable as they are — the serving wrapper abstains below the
definition's minimum confidence, and the training gates measure log loss and calibration, which a margin-only
classifier (a linear SVM) cannot offer — and because a sparse linear model trains in a second on the look-back
window and answers one title in well under a millisecond.

This module is a *model module*: the three entry points a definition names (``models/category_suggestion.yaml``):

* ``train(data, labels, definition, *, seed) -> artefact`` — the training rows (a
  :class:`~handlers.ml.dataset.Dataset`) and their labels (class names), returns what skops serialises: a plain
  dict of the fitted pipeline and the feature's name;
* ``predict_proba(artefact, data) -> (classes, probabilities)`` — every holdout row's class probabilities
  (what the training job's classification metrics read);
* ``predict(artefact, request) -> {category, confidence, alternatives}`` — one validated request, for the
  serving wrapper and the golden requests.

The types the artefact holds are the allow-list in the YAML (``artifact.trusted_types``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

ALTERNATIVES = 3


def _titles(values: Any) -> list[str]:
    return [v if isinstance(v, str) else "" for v in values]


def build_pipeline(*, seed: int, c: float = 10.0) -> Pipeline:
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, max_features=20000, sublinear_tf=True)
    return Pipeline([("features", FeatureUnion([("words", words), ("chars", chars)])),
                     ("classifier", LogisticRegression(C=c, max_iter=1000, random_state=seed))])


def train(data: Any, labels: np.ndarray, definition: Any, *, seed: int) -> dict[str, Any]:
    """The training entry point: (training Dataset, class names, definition, seed) -> artefact."""
    feature = definition.data.features[0]
    pipeline = build_pipeline(seed=seed)
    pipeline.fit(_titles(data.column(feature)), [str(label) for label in labels])
    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        # vocabulary indices as Python ints (numpy scalars become one file each in a skops zip) and no
        # ``stop_words_`` (the pruned terms, kept only for introspection)
        vectorizer.vocabulary_ = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_
    return {"pipeline": pipeline, "feature": feature,
            "classes": [str(c) for c in pipeline.named_steps["classifier"].classes_]}


def predict_proba(model: Mapping[str, Any], data: Any) -> tuple[list[str], np.ndarray]:
    """Class probabilities for every row of a Dataset: what the classification metrics compare with the truth."""
    return list(model["classes"]), model["pipeline"].predict_proba(_titles(data.column(model["feature"])))


def predict(model: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """The serving entry point: a validated request -> the most likely category, its probability and the next."""
    probabilities = model["pipeline"].predict_proba(_titles([request.get(model["feature"])]))[0]
    order = np.argsort(-probabilities)[:ALTERNATIVES]
    classes = model["classes"]
    return {"category": classes[order[0]], "confidence": round(float(probabilities[order[0]]), 4),
            "alternatives": [{"category": classes[i], "confidence": round(float(probabilities[i]), 4)}
                             for i in order]}
