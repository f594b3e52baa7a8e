"""The model store on S3: immutable versions, a candidate, a live pointer that names validated versions only.

Layout under ``s3://<bucket>/<prefix>`` (prefix ``models/`` by default)::

    <name>/versions/<version>/model.skops       the artefact (skops; never pickle)
    <name>/versions/<version>/metadata.json     metrics, reference statistics (the drift baseline), code version,
                                                sha256 of the artefact, created_at, training rows, ...
    <name>/candidate.json                       the newest published version, awaiting the validator
    <name>/current.json                         the live pointer: the version users get (validated only)
    <name>/validated/<version>.json             the validator accepted it live (a rollback target)
    <name>/rejected/<version>.json              it failed validation or was rolled back from: never live again
    <name>/pointer-log/<time>-<version>.json    every move of the live pointer, with its reason (the audit trail,
                                                and the order rollbacks follow)
    <name>/kill_switch.json                     an operator's off switch (:class:`~handlers.ml.store_types.KillSwitch`)
    _validation/key.json                        the key that signs the validator's internal requests

Why this shape:

* **Candidate → validated → live.** Training publishes a *candidate* (:meth:`ModelStore.publish`: artefact,
  metadata, a check that the artefact landed whole, then ``candidate.json``). Users never get a candidate: the
  validator asks it the golden requests on the serving fleet's internal path, and only then marks it validated
  and moves the live pointer (:meth:`ModelStore.promote` refuses anything else). A crash at any step leaves
  the live version served.
* **Versions are immutable and named by content** (:func:`~handlers.ml.store_types.version_name`), so names sort
  by age and one name never holds two artefacts; a retried write rewrites the same bytes.
* **Rollback follows the pointer log, not the names.** :meth:`ModelStore.rollback` marks the live version
  rejected and goes back to the newest version that was *live before* (newest log entry first) and is
  validated, not rejected and intact (checksum verified) — whatever the names of hand-written or missing
  versions sort like. A pointer that is unreadable or names a missing version is found by
  :meth:`ModelStore.live_problem` (the validator runs it on every write of ``current.json``) and rolled back.
* **Loading verifies before it deserialises**: the artefact's sha256 must match the metadata (and the pointer,
  when loading the live version); only then are its types checked against the allow-list and the object
  rebuilt (:mod:`handlers.ml.artifacts`). Tampered bytes are never parsed.
* **Every failure is a** :class:`~handlers.ml.errors.StoreError` **with the key**: an S3 error, a missing
  object, a garbled pointer, metadata or kill switch (each parsed strictly in :mod:`handlers.ml.store_types`).

The S3 client is injected or created lazily (:func:`handlers.core.aws.client`), so moto and the local stage
point it elsewhere. Writers: the training job (versions, the candidate), the validator (markers, the live
pointer, rollbacks), operators (the kill switch, rollbacks). S3 bucket versioning (on in the storage layer)
keeps every overwritten pointer recoverable.
"""
from __future__ import annotations

import logging
import platform
import secrets
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from handlers.ml.errors import (ChecksumMismatch, InvalidPointer, ModelNotFound, NoCurrentModel, NotValidated,
                                NoValidatedVersion, StoreError, UntrustedTypes)
from handlers.ml.store_types import (KillSwitch, LoadedModel, ModelMetadata, Pointer, iso, parse_json_object,
                                     sha256_hex, utc, version_name)

log = logging.getLogger(__name__)

ARTEFACT = "model.skops"
METADATA = "metadata.json"
REQUIRED_METADATA = ("metrics", "reference_stats", "training_rows")
VALIDATED, REJECTED, UNVALIDATED = "validated", "rejected", "unvalidated"
ROLLBACK_PREFIX = "rollback:"
_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class ModelStore:
    """Versions, pointers, verdicts and kill switch of models in one bucket (one wrapper over S3)."""

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

    def candidate_key(self, model: str) -> str:
        return f"{self._root(model)}candidate.json"

    def validated_key(self, model: str, version: str) -> str:
        return f"{self._root(model)}validated/{version}.json"

    def rejected_key(self, model: str, version: str) -> str:
        return f"{self._root(model)}rejected/{version}.json"

    def log_prefix(self, model: str) -> str:
        return f"{self._root(model)}pointer-log/"

    def kill_switch_key(self, model: str) -> str:
        return f"{self._root(model)}kill_switch.json"

    @property
    def validation_key_key(self) -> str:
        return f"{self.prefix}_validation/key.json"

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

    def _names(self, model: str, folder: str) -> list[str]:
        """The ``<name>`` of every ``<root>/<folder>/<name>.json`` (markers), sorted."""
        prefix = f"{self._root(model)}{folder}/"
        return sorted(key[len(prefix):-len(".json")] for key in self._list(model, prefix) if key.endswith(".json"))

    # reading ---------------------------------------------------------------------------------------------------
    def _pointer(self, model: str, key: str) -> Pointer | None:
        body = self._get(model, key)
        return None if body is None else Pointer.from_json(model, key, body)

    def current(self, model: str) -> Pointer | None:
        """The live pointer, or None before the first promotion; :class:`InvalidPointer` when unreadable."""
        return self._pointer(model, self.pointer_key(model))

    def candidate(self, model: str) -> Pointer | None:
        """The newest published version awaiting validation (None when nothing was published)."""
        return self._pointer(model, self.candidate_key(model))

    def current_version(self, model: str) -> str | None:
        pointer = self.current(model)
        return pointer.version if pointer else None

    def metadata(self, model: str, version: str | None = None) -> ModelMetadata:
        """A version's metadata (the live version's when ``version`` is None)."""
        version = version or self._current_or_raise(model).version
        key = self.metadata_key(model, version)
        body = self._get(model, key)
        if body is None:
            raise ModelNotFound(model, version, key)
        return ModelMetadata.from_json(model, key, body)

    def current_metadata(self, model: str) -> ModelMetadata | None:
        """The live version's metadata (its metrics and drift reference), or None before the first promotion."""
        pointer = self.current(model)
        return self.metadata(model, pointer.version) if pointer else None

    def versions(self, model: str) -> list[str]:
        """Every published version, oldest first (whether or not it was ever live)."""
        prefix = f"{self._root(model)}versions/"
        return sorted({key[len(prefix):].split("/", 1)[0] for key in self._list(model, prefix)
                       if key.endswith(f"/{METADATA}")})

    def rejected_versions(self, model: str) -> list[str]:
        return self._names(model, "rejected")

    def validated_versions(self, model: str) -> list[str]:
        """Versions the validator accepted and nobody rejected since (the possible rollback targets)."""
        rejected = set(self.rejected_versions(model))
        return [v for v in self._names(model, "validated") if v not in rejected]

    def verdict(self, model: str, version: str) -> str:
        """``validated``, ``rejected`` (wins over validated: a rolled-back version) or ``unvalidated``."""
        if self._size(model, self.rejected_key(model, version)) is not None:
            return REJECTED
        return VALIDATED if self._size(model, self.validated_key(model, version)) is not None else UNVALIDATED

    def log_versions(self, model: str) -> list[str]:
        """The versions the live pointer named, newest move first (read from the log's key names, no GETs)."""
        prefix = self.log_prefix(model)
        names = [key[len(prefix):-len(".json")] for key in self._list(model, prefix) if key.endswith(".json")]
        return [name.split("-", 1)[1] for name in sorted(names, reverse=True) if "-" in name]

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every move of the live pointer, oldest first."""
        out = []
        for key in self._list(model, self.log_prefix(model)):
            body = self._get(model, key)
            if body is not None:
                out.append(parse_json_object(model, key, body, "pointer log entry"))
        return out

    def _current_or_raise(self, model: str) -> Pointer:
        pointer = self.current(model)
        if pointer is None:
            raise NoCurrentModel(model, self.pointer_key(model))
        return pointer

    def verified_bytes(self, model: str, version: str | None = None) -> tuple[bytes, ModelMetadata]:
        """The artefact's bytes after checking their sha256 against the metadata (and the pointer when live)."""
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

        ``version`` None loads the live one (:class:`NoCurrentModel` before the first promotion). Raises
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
    def _live_or_none(self, model: str) -> Pointer | None:
        """The live pointer, or None when there is none *or it is unreadable* (logged): for writers that must
        carry on over a garbled pointer (publishing a replacement, rolling back)."""
        try:
            return self.current(model)
        except InvalidPointer as exc:
            log.error("%s", exc)
            return None

    def publish(self, model: str, artefact: bytes, metadata: Mapping[str, Any]) -> str:
        """Store a new version and name it the candidate; returns the version. Users do not get it until the
        validator promotes it.

        ``metadata`` must hold ``metrics``, ``reference_stats`` and ``training_rows``; ``code_version`` is
        recorded when given (else ``unknown``); every other key is kept as is. The store adds the version,
        ``created_at``, ``sha256`` and ``size_bytes``. Order: artefact, metadata, check, candidate pointer.
        Publishing the artefact that is already live or already the candidate is a no-op.
        """
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise StoreError(model, f"metadata needs {', '.join(missing)}")
        digest = sha256_hex(artefact)
        live = self._live_or_none(model)
        for pointer in (live, self._candidate_or_none(model)):
            if pointer is not None and pointer.sha256 == digest:
                log.info("model %s: this artefact is already version %s", model, pointer.version)
                return pointer.version
        created = self.clock()
        version = version_name(created, digest)
        document = {**{k: v for k, v in metadata.items() if k not in ModelMetadata.FIELDS},
                    "model": model, "version": version, "created_at": iso(created), "sha256": digest,
                    "size_bytes": len(artefact), "code_version": str(metadata.get("code_version") or "unknown"),
                    "training_rows": int(metadata["training_rows"]), "metrics": dict(metadata["metrics"]),
                    "reference_stats": dict(metadata["reference_stats"]),
                    "python": platform.python_version()}
        artefact_key = self.artefact_key(model, version)
        self._put(model, artefact_key, artefact, "application/octet-stream")
        self._put_json(model, self.metadata_key(model, version), document)
        if self._size(model, artefact_key) != len(artefact):
            raise StoreError(model, f"version {version}: the artefact did not land whole; nothing published",
                             key=artefact_key)
        candidate = Pointer(model, version, digest, iso(self.clock()), "published",
                            live.version if live else None)
        self._put_json(model, self.candidate_key(model), candidate.to_dict())
        log.info("model %s: published candidate %s (%d bytes); live stays %s", model, version, len(artefact),
                 live.version if live else "(none)")
        return version

    def _candidate_or_none(self, model: str) -> Pointer | None:
        try:
            return self.candidate(model)
        except InvalidPointer as exc:
            log.error("%s", exc)
            return None

    def announce_candidate(self, model: str, *, reason: str) -> Pointer | None:
        """Write ``candidate.json`` again, unchanged but for its time and reason: the write event is what starts a
        validation (e.g. after a revive, or to re-drive one that stayed inconclusive). None without a candidate."""
        candidate = self.candidate(model)
        if candidate is None:
            return None
        again = Pointer(model, candidate.version, candidate.sha256, iso(self.clock()), reason, candidate.previous)
        self._put_json(model, self.candidate_key(model), again.to_dict())
        return again

    def _move_pointer(self, model: str, version: str, digest: str, reason: str, previous: Pointer | None) -> Pointer:
        now = self.clock()
        pointer = Pointer(model, version, digest, iso(now), reason, previous.version if previous else None)
        self._put_json(model, self.pointer_key(model), pointer.to_dict())
        stamp = f"{utc(now):%Y%m%dT%H%M%S%f}Z"
        self._put_json(model, f"{self.log_prefix(model)}{stamp}-{version}.json", pointer.to_dict())
        return pointer

    def promote(self, model: str, version: str, *, reason: str) -> Pointer:
        """Make a validated version live (after verifying its artefact's checksum); :class:`NotValidated` for any
        other version: the live pointer never names a version the validator did not accept."""
        verdict = self.verdict(model, version)
        if verdict != VALIDATED:
            raise NotValidated(model, version, verdict, key=self.validated_key(model, version))
        _, meta = self.verified_bytes(model, version)
        pointer = self._move_pointer(model, version, meta.sha256, reason, self._live_or_none(model))
        log.info("model %s: version %s is live (%s)", model, version, reason)
        return pointer

    def mark_validated(self, model: str, version: str, *, note: str = "") -> None:
        """Record that ``version`` answered the golden requests live (idempotent)."""
        self.metadata(model, version)  # raises ModelNotFound for a version that does not exist
        self._put_json(model, self.validated_key(model, version),
                       {"model": model, "version": version, "validated_at": iso(self.clock()), "note": note})
        log.info("model %s: version %s marked validated", model, version)

    def reject(self, model: str, version: str, *, reason: str) -> None:
        """Record that ``version`` must never be live again (failed validation, or rolled back from)."""
        self._put_json(model, self.rejected_key(model, version),
                       {"model": model, "version": version, "rejected_at": iso(self.clock()), "reason": reason})
        log.warning("model %s: version %s rejected (%s)", model, version, reason)

    def rollback(self, model: str, *, reason: str) -> str:
        """Reject the live version and make the last version that was live before it live again; returns it.

        The target is the newest entry of the pointer log (then, for stores older than the log, the newest
        validated version by name) that is validated, not rejected and whose artefact still verifies. Works over
        an unreadable pointer. Raises :class:`NoValidatedVersion` (listing what was refused) when none is left.
        """
        live = self._live_or_none(model)
        bad = live.version if live else None
        if bad is not None:
            self.reject(model, bad, reason=f"{ROLLBACK_PREFIX} {reason}")
        validated = set(self.validated_versions(model))
        tried: list[str] = []
        for version in dict.fromkeys([*self.log_versions(model), *sorted(validated, reverse=True)]):
            if version == bad or version not in validated:
                continue
            try:
                _, meta = self.verified_bytes(model, version)
            except StoreError as exc:
                tried.append(f"{version}: {type(exc).__name__}")
                log.error("model %s: rollback cannot use %s: %s", model, version, exc)
                continue
            self._move_pointer(model, version, meta.sha256, f"{ROLLBACK_PREFIX} {reason}", live)
            log.warning("model %s: rolled back from %s to %s (%s)", model, bad or "(unreadable pointer)", version,
                        reason)
            return version
        raise NoValidatedVersion(model, bad, tuple(tried))

    def live_problem(self, model: str) -> str | None:
        """What is wrong with the live pointer — unreadable, naming a missing, unvalidated or altered version —
        or None when it is sound (or there is none yet). Downloads the artefact to verify its checksum."""
        try:
            pointer = self.current(model)
            if pointer is None:
                return None
            verdict = self.verdict(model, pointer.version)
            if verdict != VALIDATED:
                return f"the live pointer names version {pointer.version}, which is {verdict}"
            self.verified_bytes(model)
        except StoreError as exc:
            return str(exc)
        return None

    # the kill switch -------------------------------------------------------------------------------------------
    def set_kill_switch(self, model: str, on: bool, *, reason: str = "") -> KillSwitch:
        """Write the switch (``on`` a bool, ``reason`` a string: nothing else is ever written); returns it."""
        if not isinstance(on, bool) or not isinstance(reason, str):
            raise TypeError(f"the kill switch is on=True|False with a string reason, not on={on!r} reason={reason!r}")
        switch = KillSwitch(model, on, reason, iso(self.clock()))
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

    # the validator's signing key -------------------------------------------------------------------------------
    def validation_key(self, *, create: bool = False) -> bytes | None:
        """The key that signs the validator's internal requests (:mod:`handlers.ml.serving.auth`); the validator
        creates it (``create``) the first time, serving processes only read it. None when there is none yet."""
        key = self.validation_key_key
        body = self._get("(validation)", key)
        if body is None and create:
            self._put_json("(validation)", key, {"key": secrets.token_hex(32), "created_at": iso(self.clock())})
            body = self._get("(validation)", key)  # what is stored wins a race between two creators
        if body is None:
            return None
        document = parse_json_object("(validation)", key, body, "validation key")
        value = document.get("key")
        if not isinstance(value, str) or len(value) < 32:
            raise StoreError("(validation)", "the validation key is not a hex string of 16 bytes or more", key=key)
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise StoreError("(validation)", "the validation key is not hex", key=key) from None
