"""The model store on S3: immutable versions, one pointer that moves only on success, safe loading.

Layout under ``s3://<bucket>/<prefix>`` (prefix ``models/`` by default)::

    <name>/versions/<version>/model.skops       the artefact (skops; never pickle)
    <name>/versions/<version>/metadata.json     metrics, reference statistics (the drift baseline), code version,
                                                sha256 of the artefact, created_at, training rows, ...
    <name>/current.json                         the pointer: which version is served
    <name>/validated/<version>.json             one marker per version the validator accepted
    <name>/pointer-log/<time>-<version>.json    every move of the pointer, with its reason (audit trail)
    <name>/kill_switch.json                     an operator's off switch for the model (:class:`KillSwitch`)

Why this shape:

* **Versions are immutable and named by content**: ``<UTC time to the ms>Z-<first 12 hex of sha256>``, so
  names sort by age and one version name can never hold two different artefacts. Publishing the artefact
  the pointer already names is a no-op; every write goes to a deterministic key, so a retried write
  rewrites the same bytes.
* **The pointer moves last**: :meth:`ModelStore.publish` uploads the artefact, then its metadata, checks the
  artefact landed whole, and only then rewrites ``current.json``. A crash at any step leaves the previous
  model served; readers only ever follow the pointer to a complete version.
* **Rollback goes to a validated version**: the validator marks a version validated after it answered the
  golden requests live; :meth:`ModelStore.rollback` moves the pointer to the newest validated version older
  than the current one, after checking that version's checksum.
* **Loading verifies before it deserialises**: the artefact's sha256 must match the metadata (and the
  pointer, when loading the current version); only then are its types checked against the allow-list and
  the object rebuilt (:mod:`handlers.ml.artifacts`). Tampered bytes are never parsed.

The S3 client is injected or created lazily (:func:`handlers.core.aws.client`), so moto and the local stage
point it elsewhere. ``ClientError`` becomes :class:`~handlers.ml.errors.StoreError` or one of its kinds.
Single writer assumed per model (the scheduled training job; the validator only rolls back); S3 bucket
versioning (on in the storage layer) keeps every overwritten pointer recoverable.
"""
from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from handlers.ml.errors import (ChecksumMismatch, InvalidKillSwitch, ModelNotFound, NoCurrentModel, NoValidatedVersion,
                                StoreError, UntrustedTypes)

log = logging.getLogger(__name__)

ARTEFACT = "model.skops"
METADATA = "metadata.json"
REQUIRED_METADATA = ("metrics", "reference_stats", "training_rows")
_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_name(created_at: datetime, sha256: str) -> str:
    moment = _utc(created_at)
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z-{sha256[:12]}"


@dataclass(frozen=True)
class Pointer:
    """``current.json``: the version served, its checksum, when and why the pointer last moved."""

    model: str
    version: str
    sha256: str
    updated_at: str
    reason: str
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "sha256": self.sha256, "updated_at": self.updated_at,
                "reason": self.reason, "previous": self.previous}


@dataclass(frozen=True)
class ModelMetadata:
    """``metadata.json`` of one version. ``extra`` holds everything else the training job recorded."""

    model: str
    version: str
    created_at: str
    sha256: str
    size_bytes: int
    code_version: str
    training_rows: int
    metrics: Mapping[str, float]
    reference_stats: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    _FIELDS = ("model", "version", "created_at", "sha256", "size_bytes", "code_version", "training_rows", "metrics",
               "reference_stats")

    def to_dict(self) -> dict[str, Any]:
        return {**dict(self.extra), **{name: getattr(self, name) for name in self._FIELDS}}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "ModelMetadata":
        missing = [name for name in cls._FIELDS if name not in document]
        if missing:
            raise ValueError(f"metadata without {', '.join(missing)}")
        return cls(**{name: document[name] for name in cls._FIELDS},
                   extra=MappingProxyType({k: v for k, v in document.items() if k not in cls._FIELDS}))


@dataclass(frozen=True)
class KillSwitch:
    """``kill_switch.json``: whether an operator switched the model off, why, and when.

    The file is ``{"model": ..., "on": true|false, "reason": "...", "updated_at": "...Z"}``. ``on`` must be a JSON
    boolean — ``"false"`` is a string, and a string read as truthy would switch a model off — and ``reason`` and
    ``updated_at``, when present, strings; other keys are ignored (a newer writer may add some). No
    file means off. See :mod:`handlers.ml.killswitch` for the operator's functions.
    """

    model: str
    on: bool
    reason: str = ""
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "on": self.on, "reason": self.reason, "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, model: str, key: str, body: bytes) -> "KillSwitch":
        """The switch in ``body``; :class:`InvalidKillSwitch` naming what is wrong when it is not in the format."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidKillSwitch(model, key, f"not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise InvalidKillSwitch(model, key, f"a JSON object is expected, not {type(document).__name__}")
        if not isinstance(document.get("on"), bool):
            raise InvalidKillSwitch(model, key, f"'on' must be true or false (a JSON boolean), not "
                                                f"{orjson.dumps(document.get('on')).decode()}")
        for name in ("reason", "updated_at"):
            if document.get(name) is not None and not isinstance(document[name], str):
                raise InvalidKillSwitch(model, key, f"'{name}' must be a string")
        return cls(model, document["on"], document.get("reason") or "", document.get("updated_at"))


@dataclass(frozen=True)
class LoadedModel:
    """A deserialised artefact and the metadata it was verified against."""

    model_name: str
    version: str
    metadata: ModelMetadata
    model: Any = field(repr=False)


class ModelStore:
    """Versions, pointer, validation markers and kill switch of models in one bucket (one wrapper over S3)."""

    def __init__(self, bucket: str, *, prefix: str = "models/", s3: Any = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket, self.prefix, self._s3, self.clock = bucket, prefix, s3, clock

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            from handlers.core.aws import client

            self._s3 = client("s3")
        return self._s3

    # keys ------------------------------------------------------------------------------------------------------
    def _root(self, model: str) -> str:
        return f"{self.prefix}{model}/"

    def artefact_key(self, model: str, version: str) -> str:
        return f"{self._root(model)}versions/{version}/{ARTEFACT}"

    def metadata_key(self, model: str, version: str) -> str:
        return f"{self._root(model)}versions/{version}/{METADATA}"

    def pointer_key(self, model: str) -> str:
        return f"{self._root(model)}current.json"

    def validated_key(self, model: str, version: str) -> str:
        return f"{self._root(model)}validated/{version}.json"

    def kill_switch_key(self, model: str) -> str:
        return f"{self._root(model)}kill_switch.json"

    # S3 in our terms -------------------------------------------------------------------------------------------
    def _put(self, model: str, key: str, body: bytes, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(model, f"cannot write: {exc}", key=key) from None

    def _put_json(self, model: str, key: str, document: Mapping[str, Any]) -> None:
        self._put(model, key, orjson.dumps(document, option=_JSON), "application/json")

    def _maybe(self, model: str, key: str, read: Callable[[], Any]) -> Any:
        """``read()``, or None when the object does not exist; other failures become StoreError."""
        try:
            return read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return None
            raise StoreError(model, f"cannot read: {exc}", key=key) from None
        except BotoCoreError as exc:
            raise StoreError(model, f"cannot read: {exc}", key=key) from None

    def _get(self, model: str, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        return self._maybe(model, key, lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _size(self, model: str, key: str) -> int | None:
        return self._maybe(model, key,
                           lambda: int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"]))

    def _list(self, model: str, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(model, f"cannot list: {exc}", key=prefix) from None
        return sorted(keys)

    # reading ---------------------------------------------------------------------------------------------------
    def current(self, model: str) -> Pointer | None:
        """The pointer, or None before the first publish."""
        body = self._get(model, self.pointer_key(model))
        if body is None:
            return None
        document = orjson.loads(body)
        return Pointer(document["model"], document["version"], document["sha256"], document["updated_at"],
                       document["reason"], document.get("previous"))

    def current_version(self, model: str) -> str | None:
        pointer = self.current(model)
        return pointer.version if pointer else None

    def metadata(self, model: str, version: str | None = None) -> ModelMetadata:
        """A version's metadata (the current version's when ``version`` is None)."""
        version = version or self._current_or_raise(model).version
        body = self._get(model, self.metadata_key(model, version))
        if body is None:
            raise ModelNotFound(model, version, self.metadata_key(model, version))
        return ModelMetadata.from_dict(orjson.loads(body))

    def current_metadata(self, model: str) -> ModelMetadata | None:
        """The served version's metadata (its metrics and drift reference), or None before the first publish."""
        pointer = self.current(model)
        return self.metadata(model, pointer.version) if pointer else None

    def versions(self, model: str) -> list[str]:
        """Every published version, oldest first (whether or not the pointer ever named it)."""
        prefix = f"{self._root(model)}versions/"
        return sorted({key[len(prefix):].split("/", 1)[0] for key in self._list(model, prefix)
                       if key.endswith(f"/{METADATA}")})

    def validated_versions(self, model: str) -> list[str]:
        prefix = f"{self._root(model)}validated/"
        return sorted(key[len(prefix):-len(".json")] for key in self._list(model, prefix) if key.endswith(".json"))

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every pointer move, oldest first."""
        out = []
        for key in self._list(model, f"{self._root(model)}pointer-log/"):
            body = self._get(model, key)
            if body is not None:
                out.append(orjson.loads(body))
        return out

    def _current_or_raise(self, model: str) -> Pointer:
        pointer = self.current(model)
        if pointer is None:
            raise NoCurrentModel(model)
        return pointer

    def verified_bytes(self, model: str, version: str | None = None) -> tuple[bytes, ModelMetadata]:
        """The artefact's bytes after checking their sha256 against the metadata (and the pointer when current)."""
        pointer = self._current_or_raise(model) if version is None else None
        version = version or pointer.version  # type: ignore[union-attr]
        meta = self.metadata(model, version)
        key = self.artefact_key(model, version)
        data = self._get(model, key)
        if data is None:
            raise ModelNotFound(model, version, key)
        actual = sha256_hex(data)
        for expected in {meta.sha256, *([pointer.sha256] if pointer else [])}:
            if actual != expected:
                log.error("model %s version %s: checksum mismatch (expected %s, got %s)", model, version, expected,
                          actual)
                raise ChecksumMismatch(model, version, expected, actual, key)
        return data, meta

    def load(self, model: str, version: str | None = None, *, trusted_types: Iterable[str]) -> LoadedModel:
        """Download, verify the checksum, check the types against ``trusted_types``, then deserialise.

        ``version`` None loads the current one (:class:`NoCurrentModel` before the first publish). Raises
        :class:`ChecksumMismatch` or :class:`UntrustedTypes` without deserialising anything.
        """
        from handlers.ml import artifacts  # skops/scikit-learn: only where a model is rebuilt (not the validator)

        data, meta = self.verified_bytes(model, version)
        try:
            obj = artifacts.loads(data, trusted_types)
        except artifacts.ArtefactError as exc:
            if exc.untrusted:
                raise UntrustedTypes(model, meta.version, exc.untrusted) from None
            raise StoreError(model, f"version {meta.version}: {exc.message}",
                             key=self.artefact_key(model, meta.version)) from None
        log.info("loaded model %s version %s (%d bytes, sha256 %s)", model, meta.version, meta.size_bytes,
                 meta.sha256[:12])
        return LoadedModel(model, meta.version, meta, obj)

    # writing ---------------------------------------------------------------------------------------------------
    def publish(self, model: str, artefact: bytes, metadata: Mapping[str, Any]) -> str:
        """Store a new version and point at it; returns the version.

        ``metadata`` must hold ``metrics``, ``reference_stats`` and ``training_rows``; ``code_version`` is
        recorded when given (else ``unknown``); every other key is kept as is. The store adds the version,
        ``created_at``, ``sha256`` and ``size_bytes``. Order: artefact, metadata, check, pointer.
        """
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise StoreError(model, f"metadata needs {', '.join(missing)}")
        digest = sha256_hex(artefact)
        pointer = self.current(model)
        if pointer is not None and pointer.sha256 == digest:
            log.info("model %s: this artefact is already the current version %s", model, pointer.version)
            return pointer.version
        created = self.clock()
        version = version_name(created, digest)
        document = {**{k: v for k, v in metadata.items() if k not in ModelMetadata._FIELDS},
                    "model": model, "version": version, "created_at": _iso(created), "sha256": digest,
                    "size_bytes": len(artefact), "code_version": str(metadata.get("code_version") or "unknown"),
                    "training_rows": int(metadata["training_rows"]), "metrics": dict(metadata["metrics"]),
                    "reference_stats": dict(metadata["reference_stats"]),
                    "python": platform.python_version()}
        artefact_key = self.artefact_key(model, version)
        self._put(model, artefact_key, artefact, "application/octet-stream")
        self._put_json(model, self.metadata_key(model, version), document)
        if self._size(model, artefact_key) != len(artefact):
            raise StoreError(model, f"version {version}: the artefact did not land whole; pointer not moved",
                             key=artefact_key)
        self._move_pointer(model, version, digest, "published", pointer)
        log.info("model %s: published version %s (%d bytes); pointer moved from %s", model, version, len(artefact),
                 pointer.version if pointer else "(none)")
        return version

    def _move_pointer(self, model: str, version: str, digest: str, reason: str, previous: Pointer | None) -> Pointer:
        now = self.clock()
        pointer = Pointer(model, version, digest, _iso(now), reason, previous.version if previous else None)
        self._put_json(model, self.pointer_key(model), pointer.to_dict())
        stamp = f"{_utc(now):%Y%m%dT%H%M%S%f}Z"
        self._put_json(model, f"{self._root(model)}pointer-log/{stamp}-{version}.json", pointer.to_dict())
        return pointer

    def promote(self, model: str, version: str, *, reason: str) -> Pointer:
        """Point at an existing version (after verifying its artefact's checksum)."""
        _, meta = self.verified_bytes(model, version)
        return self._move_pointer(model, version, meta.sha256, reason, self.current(model))

    def mark_validated(self, model: str, version: str, *, note: str = "") -> None:
        """Record that ``version`` answered the golden requests live (idempotent)."""
        self.metadata(model, version)  # raises ModelNotFound for a version that does not exist
        self._put_json(model, self.validated_key(model, version),
                       {"model": model, "version": version, "validated_at": _iso(self.clock()), "note": note})
        log.info("model %s: version %s marked validated", model, version)

    def rollback(self, model: str, *, reason: str) -> str:
        """Move the pointer to the newest validated version older than the current one; returns it.

        Raises :class:`NoValidatedVersion` when there is none, and :class:`ChecksumMismatch` (pointer not moved)
        when that version's artefact no longer matches its checksum.
        """
        pointer = self.current(model)
        candidates = [v for v in self.validated_versions(model) if pointer is None or v < pointer.version]
        if not candidates:
            raise NoValidatedVersion(model, pointer.version if pointer else None)
        target = candidates[-1]
        self.promote(model, target, reason=f"rollback: {reason}")
        log.warning("model %s: rolled back from %s to %s (%s)", model, pointer.version if pointer else "(none)",
                    target, reason)
        return target

    # the kill switch -------------------------------------------------------------------------------------------
    def set_kill_switch(self, model: str, on: bool, *, reason: str = "") -> KillSwitch:
        """Write the switch (``on`` a bool, ``reason`` a string: nothing else is ever written); returns it."""
        if not isinstance(on, bool) or not isinstance(reason, str):
            raise TypeError(f"the kill switch is on=True|False with a string reason, not on={on!r} reason={reason!r}")
        switch = KillSwitch(model, on, reason, _iso(self.clock()))
        self._put_json(model, self.kill_switch_key(model), switch.to_dict())
        return switch

    def kill_switch_state(self, model: str) -> KillSwitch:
        """The switch as written (off when there is no file); :class:`InvalidKillSwitch` when it is malformed."""
        key = self.kill_switch_key(model)
        body = self._get(model, key)
        return KillSwitch(model, False) if body is None else KillSwitch.from_json(model, key, body)

    def kill_switch(self, model: str) -> bool:
        """Whether the model is switched off in the store (:meth:`kill_switch_state`, its ``on``)."""
        return self.kill_switch_state(model).on
