"""Builders for the serving and validator tests: an in-memory store, a scripted model, real trained artefacts.

* :class:`MemoryStore` answers the part of :class:`handlers.ml.store.ModelStore` the serving core reads
  (pointer, verdicts, kill switch, validation key, load) from memory, so unit tests drive reloads, rollbacks,
  canaries and guard rails with no I/O.
  Its "artefacts" are plain dicts answered by :func:`scripted_predict`, wired in through the definition's own
  ``serving.predict`` entry point (:func:`scripted_definition`), so the definition, endpoint checks and guard
  rails are the shipped ones.
* :func:`trained_artefact` fits the shipped price model (handlers.ml.models.price_suggestion) on seeded
  listings and serialises it with skops — a real model for the functional tests. ``inflated`` is the same
  model fitted on prices multiplied by :data:`INFLATION`: the kind of unit bug (cents for euros) golden
  requests exist to catch.
* :class:`TickClock` and :func:`publish` make version names deterministic and ordered on a real store;
  :func:`publish_live` also does what a passing validation does (validated, then live).
* :func:`serving` runs the real app on a port; :func:`internal` sends the validator's signed request.
* :func:`pointer_event` builds the EventBridge "Object Created" event S3 sends for a key.
"""
from __future__ import annotations

import copy
import hashlib
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import orjson

from handlers.ml import artifacts
from handlers.ml.definition_types import ModelDefinition
from handlers.ml.errors import ModelNotFound
from handlers.ml.models import price_suggestion
from handlers.ml.serving.app import create_app
from handlers.ml.serving.config import ServingConfig
from handlers.ml.store import ModelStore
from handlers.ml.store_types import LoadedModel, ModelMetadata, Pointer
from letgo.services import BackgroundServer, wait_until
from letgo.services.moto import MotoServer
from tests.ml_kit import Aws, dataset_of, definition, listing_documents

INFLATION = 40.0
TRAINING_ROWS = 2000


# -- a scripted model on an in-memory store (unit tests) -----------------------------------------------------------
def scripted_predict(model: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """Answers ``model["eur"]`` (times a per-category factor) in every output unit, like the price model."""
    if model.get("raise"):
        raise RuntimeError(model["raise"])
    eur = float(model["eur"]) * float(model.get("factor", {}).get(request["category"], 1.0))
    rate = {"EUR": 1.0, "GBP": 0.86, "TRY": 35.0, "USD": 1.08}[request["currency"]]
    return {"suggested_price": eur * rate, "low": 0.5 * eur * rate, "high": 2.0 * eur * rate,
            "currency": request["currency"], "suggested_price_eur": eur, "undeclared": "never served"}


def scripted_definition(**overrides: Any) -> ModelDefinition:
    return definition(**{"serving.predict": "tests.ml_serving_kit:scripted_predict", **overrides})


@dataclass
class MemoryStore:
    """Pointer, verdicts, kill switch and versions of one model in memory; counts loads (what a reload downloads).

    ``add`` makes a version validated (as the validator would before the pointer names it) unless told otherwise.
    """

    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    pointer: Pointer | None = None
    killed: bool = False
    kill_switch_error: Exception | None = None  # what reading a malformed kill switch raises (InvalidKillSwitch)
    pointer_error: Exception | None = None  # what reading an unreadable pointer raises (InvalidPointer)
    validated: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    loads: list[str] = field(default_factory=list)
    key: bytes = b"k" * 32
    bucket: str = "memory"
    prefix: str = "models/"

    def add(self, version: str, model: dict[str, Any], *, point: bool = True, validated: bool = True) -> str:
        self.versions[version] = model
        if validated:
            self.validated.add(version)
        if point:
            self.point(version)
        return version

    def sha(self, version: str) -> str:
        return hashlib.sha256(repr(sorted(self.versions[version].items())).encode()).hexdigest()

    def point(self, version: str, reason: str = "validator: golden requests passed") -> None:
        self.pointer = Pointer("price_suggestion", version, self.sha(version), "2026-11-26T00:00:00.000Z",
                               reason, self.pointer.version if self.pointer else None)

    def roll_back(self, to: str) -> None:
        """What ModelStore.rollback does: reject the live version, point back."""
        self.rejected.add(self.pointer.version)
        self.point(to, reason="rollback: test")

    def current(self, model: str) -> Pointer | None:
        if self.pointer_error is not None:
            raise self.pointer_error
        return self.pointer

    def candidate(self, model: str) -> Pointer | None:
        return None

    def verdict(self, model: str, version: str) -> str:
        return "rejected" if version in self.rejected else "validated" if version in self.validated else "unvalidated"

    def rejected_versions(self, model: str) -> list[str]:
        return sorted(self.rejected)

    def validation_key(self, *, create: bool = False) -> bytes:
        return self.key

    def kill_switch(self, model: str) -> bool:
        if self.kill_switch_error is not None:
            raise self.kill_switch_error
        return self.killed

    def kill_switch_key(self, model: str) -> str:
        return f"{self.prefix}{model}/kill_switch.json"

    def pointer_key(self, model: str) -> str:
        return f"{self.prefix}{model}/current.json"

    def load(self, model: str, version: str | None = None, *, trusted_types: Any) -> LoadedModel:
        version = version or (self.pointer.version if self.pointer else None)
        if version not in self.versions:
            raise ModelNotFound(model, str(version))
        self.loads.append(version)
        meta = ModelMetadata(model, version, "2026-11-26T00:00:00.000Z", self.sha(version), 1, "test", 1, {}, {})
        return LoadedModel(model, version, meta, copy.deepcopy(self.versions[version]))


class ManualClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request_body(**changes: Any) -> dict[str, Any]:
    body = {"title": "iPhone 13 128GB como nuevo", "category": "phones", "condition": "like_new", "country": "ES",
            "currency": "EUR"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# -- real artefacts on a real store (functional tests) -------------------------------------------------------------
@lru_cache(maxsize=None)
def trained_artefact(kind: str = "good", *, seed: int = 11) -> bytes:
    """The shipped price model fitted on seeded listings; ``inflated`` learns prices × INFLATION."""
    model_definition = definition()
    spec = model_definition.data
    data = dataset_of(listing_documents(TRAINING_ROWS, seed=seed), spec)
    labels = np.array(data.column(spec.label.name), dtype=float)
    if kind == "inflated":
        labels = labels * INFLATION
    elif kind != "good":
        raise ValueError(kind)
    return artifacts.dumps(price_suggestion.train(data, labels, model_definition, seed=seed))


class TickClock:
    """A UTC clock that moves one second per call: version names are distinct and sort in publishing order."""

    def __init__(self, start: datetime = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


def publish(store: ModelStore, artefact: bytes, model: str = "price_suggestion") -> str:
    """Publish a candidate as the training job does (artefact, metadata, then candidate.json); returns it."""
    return store.publish(model, artefact, {"metrics": {}, "reference_stats": {}, "training_rows": TRAINING_ROWS,
                                           "code_version": "test"})


def publish_live(store: ModelStore, artefact: bytes, model: str = "price_suggestion") -> str:
    """Publish, then what a passing validation does: mark it validated and make it live."""
    version = publish(store, artefact, model)
    store.mark_validated(model, version)
    store.promote(model, version, reason="validator: test")
    return version


def pointer_event(bucket: str, key: str, *, detail_type: str = "Object Created") -> dict[str, Any]:
    """The EventBridge event S3 sends for an object written to a bucket with EventBridge notifications on."""
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type,
        "source": "aws.s3", "account": "123456789012", "time": "2026-11-26T03:00:05Z", "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 310, "etag": "b1946ac92492d2347c6235b4d2611184",
                              "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "00617F08299329D189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "10.0.0.1",
                   "reason": "PutObject"},
    }


# -- shared servers (functional tests) -----------------------------------------------------------------------------
_moto: dict[str, Any] = {}


def shared_aws(request: Any, tmp_path_factory: Any) -> Aws:
    """One moto server for every serving/validator test module of the session, stopped when the session ends."""
    if "server" not in _moto:
        server = MotoServer(tmp_path_factory.mktemp("moto-ml-serving") / "moto.log").start()
        _moto["server"] = server

        def stop() -> None:
            _moto.pop("server").stop()

        request.config.add_cleanup(stop)
    return Aws(_moto["server"].url)


@contextmanager
def serving(model_definition: Any, store: Any, **config: Any) -> Iterator[tuple[BackgroundServer, Any]]:
    """The real app on a free 127.0.0.1 port, polling the pointer every 0.2 s in the background; stopped after."""
    settings = dict(reload_seconds=0.2, environ={})
    settings.update(config)
    app = create_app(model_definition, store, config=ServingConfig(**settings))
    try:
        with BackgroundServer(app) as server:
            yield server, app
    finally:
        app.extensions["ml_serving"].stop()


def internal(client: Any, store: Any, version: str, body: Mapping[str, Any], *, model: str = "price_suggestion",
             endpoint: str = "/v1/price-suggestion", key: bytes | None = None) -> Any:
    """The validator's signed request for ``version`` (over HTTP with an HttpClient)."""
    return client.request("POST", f"/internal/validate/{model}/{version}{endpoint}", dict(body),
                          validation_key=key if key is not None else store.validation_key(create=True))


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, orjson.loads(error.read())


def wait_for_health(url: str, probe: Callable[[Mapping[str, Any]], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``/health`` (each poll is also a request that lets the app start its pointer check)."""
    wait_until(lambda: probe(get_json(f"{url}/health")[1]), timeout, what)


def model_health(health: Mapping[str, Any], model: str = "price_suggestion") -> Mapping[str, Any]:
    return health["models"][model]


def stable_version(health: Mapping[str, Any], model: str = "price_suggestion") -> str | None:
    stable = health["models"][model]["served"]["stable"]
    return stable["version"] if stable else None


def local_prediction(model_definition: ModelDefinition, artefact: bytes, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the model in ``artefact`` answers to ``body``, computed here without the serving app."""
    model = artifacts.loads(artefact, model_definition.trusted_types)
    endpoint = model_definition.endpoints[0]
    raw = model_definition.predict(model, endpoint.validate(dict(body)))
    return {name: raw[name] for name in endpoint.outputs}
