"""What the model store holds, as values: pointers, a version's metadata, the kill switch, a loaded model.

Kept apart from :mod:`handlers.ml.store` (the S3 wrapper that reads and writes them) because more code reads
these values than talks to S3: the serving core compares pointers, the validator reads their ``reason``, the
operator's commands print the kill switch. Each value that comes from a file is *parsed strictly* here — a
pointer, a metadata document or a kill switch that is not in its format raises a
:class:`~handlers.ml.errors.StoreError` kind naming the key and what is wrong, never a ``KeyError`` or a
``JSONDecodeError`` from deep inside a caller: a garbled ``current.json`` written by hand is an alert and a
rollback, not a crashed process.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

import orjson

from handlers.ml.errors import InvalidKillSwitch, InvalidPointer, StoreError

VERSION_TIME_FORMAT = "%Y%m%dT%H%M%S"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_name(created_at: datetime, sha256: str) -> str:
    """``<UTC time to the ms>Z-<first 12 hex of sha256>``: names sort by age; one name, one artefact."""
    moment = utc(created_at)
    return f"{moment:{VERSION_TIME_FORMAT}}{moment.microsecond // 1000:03d}Z-{sha256[:12]}"


def parse_json_object(model: str, key: str, body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object, or a :class:`StoreError` naming the key (what a garbled file becomes)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise StoreError(model, f"the {what} is not JSON ({exc})", key=key) from None
    if not isinstance(document, dict):
        raise StoreError(model, f"the {what} must be a JSON object, not {type(document).__name__}", key=key)
    return document


@dataclass(frozen=True)
class Pointer:
    """``current.json`` (the live version) or ``candidate.json`` (the version awaiting validation)."""

    model: str
    version: str
    sha256: str
    updated_at: str
    reason: str
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "sha256": self.sha256, "updated_at": self.updated_at,
                "reason": self.reason, "previous": self.previous}

    @property
    def is_rollback(self) -> bool:
        return self.reason.startswith("rollback:")

    @classmethod
    def from_json(cls, model: str, key: str, body: bytes) -> "Pointer":
        """The pointer in ``body``; :class:`InvalidPointer` naming the key and the problem otherwise."""
        try:
            document = parse_json_object(model, key, body, "pointer")
        except StoreError as exc:
            raise InvalidPointer(model, key, exc.message) from None
        for name in ("version", "sha256", "updated_at", "reason"):
            if not isinstance(document.get(name), str) or not document[name]:
                raise InvalidPointer(model, key, f"'{name}' must be a non-empty string")
        if document.get("previous") is not None and not isinstance(document["previous"], str):
            raise InvalidPointer(model, key, "'previous' must be a string or null")
        if document.get("model", model) != model:
            raise InvalidPointer(model, key, f"it names the model {document.get('model')!r}")
        if "/" in document["version"] or document["version"].startswith("."):
            raise InvalidPointer(model, key, f"{document['version']!r} is not a version name")
        return cls(model, document["version"], document["sha256"], document["updated_at"], document["reason"],
                   document.get("previous"))


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

    FIELDS = ("model", "version", "created_at", "sha256", "size_bytes", "code_version", "training_rows", "metrics",
              "reference_stats")

    def to_dict(self) -> dict[str, Any]:
        return {**dict(self.extra), **{name: getattr(self, name) for name in self.FIELDS}}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "ModelMetadata":
        missing = [name for name in cls.FIELDS if name not in document]
        if missing:
            raise ValueError(f"metadata without {', '.join(missing)}")
        return cls(**{name: document[name] for name in cls.FIELDS},
                   extra=MappingProxyType({k: v for k, v in document.items() if k not in cls.FIELDS}))

    @classmethod
    def from_json(cls, model: str, key: str, body: bytes) -> "ModelMetadata":
        try:
            return cls.from_dict(parse_json_object(model, key, body, "metadata"))
        except ValueError as exc:
            raise StoreError(model, str(exc), key=key) from None


@dataclass(frozen=True)
class KillSwitch:
    """``kill_switch.json``: whether an operator switched the model off, why, and when.

    The file is ``{"model": ..., "on": true|false, "reason": "...", "updated_at": "...Z"}``. ``on`` must be a JSON
    boolean — ``"false"`` is a string, and a string read as truthy would switch a model off — and ``reason`` and
    ``updated_at``, when present, strings; other keys are ignored (a newer writer may add some). No file means
    off. Readers that meet a file out of this format treat the model as switched **off** (fail safe; see
    :mod:`handlers.ml.killswitch`).
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
