"""Model artefacts as skops files, loaded only through an explicit allow-list of types.

Why skops and not pickle/joblib: unpickling runs whatever code the bytes ask for, so a model file would have
to be trusted like code. A skops file is a zip of arrays plus ``schema.json``, a tree that names the type
of every object to rebuild. Before anything is built we read that tree, collect every ``module.Class`` it
names and refuse the file when one is outside the allow-list — stricter than skops' own defaults, which
would also accept types we never use. Only then does ``skops.io.loads`` run, with ``trusted`` set to that
same list (never ``trusted=True``).

The checksum check comes before this (see :mod:`handlers.ml.store`): bytes that are not the ones we
published are never even parsed.
"""
from __future__ import annotations

import io
import zipfile
from typing import Any, Iterable

import orjson
import skops.io as sio

MAX_SCHEMA_BYTES = 64 * 1024 * 1024


class ArtefactError(Exception):
    """The bytes are not a loadable skops artefact (``untrusted`` lists types outside the allow-list)."""

    def __init__(self, message: str, untrusted: tuple[str, ...] = ()) -> None:
        self.message, self.untrusted = message, untrusted
        super().__init__(message)


def dumps(model: Any) -> bytes:
    """Serialise with skops (deflate-compressed zip)."""
    return sio.dumps(model, compression=zipfile.ZIP_DEFLATED)


def _walk(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
            found.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def types_in(data: bytes) -> set[str]:
    """Every ``module.Class`` a skops artefact would instantiate, read from its schema without building anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("schema.json")
            if info.file_size > MAX_SCHEMA_BYTES:
                raise ArtefactError(f"schema.json is {info.file_size} bytes, over {MAX_SCHEMA_BYTES}")
            schema = orjson.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, orjson.JSONDecodeError) as exc:
        raise ArtefactError(f"not a skops artefact: {exc}") from None
    found: set[str] = set()
    _walk(schema, found)
    return found


def loads(data: bytes, trusted_types: Iterable[str]) -> Any:
    """Rebuild an artefact whose every type is in ``trusted_types``; :class:`ArtefactError` otherwise."""
    trusted = sorted(set(trusted_types))
    untrusted = tuple(sorted(types_in(data) - set(trusted)))
    if untrusted:
        raise ArtefactError(f"types outside the allow-list: {', '.join(untrusted)}", untrusted)
    try:
        return sio.loads(data, trusted=trusted)
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds; all mean "cannot load these bytes"
        raise ArtefactError(f"skops could not load it: {type(exc).__name__}: {exc}") from None
