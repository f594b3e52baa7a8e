"""humilis reference parser ``$letgo_artefact``: a package that ``make package`` built, named — never a guessed path.

A layer parameter such as ``consumer_zip: {$letgo_artefact: {name: consumer}}`` resolves to the ``{s3bucket,
s3key}`` of ``dist/<name>-<sha12>.zip``, uploaded by humilis's own uploader (the same S3 key scheme as its
``$lambda``). Why not ``$lambda`` on a path: the file name carries a content hash, so the environment would
have to be told each name (it used to read eight ``LETGO_<NAME>_ZIP`` variables, one of them misspelt for
``search-api``, and fell back to paths ``make package`` never writes). Here the name is looked up in
``dist/manifest.json``: a package that was not built, or changed since, fails the render with its name and what
to run, instead of deploying an empty template or a stale zip.

``dist/`` is ``../dist`` relative to the environment file (``environments/`` in this repository), or
``LETGO_DIST``. Runs inside humilis's own virtualenv: standard library only (humilis is imported lazily).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class ArtefactError(Exception):
    """A package the environment references was not built (or changed since): nothing is deployed."""


def dist_dir(env_basedir: str | os.PathLike[str], dist: str | None = None) -> Path:
    """Where the packages are: ``LETGO_DIST``, else ``dist`` (default ``../dist``) relative to the environment."""
    override = os.environ.get("LETGO_DIST")
    return Path(override).resolve() if override else (Path(env_basedir) / (dist or "../dist")).resolve()


def find(name: str | None, env_basedir: str | os.PathLike[str], dist: str | None = None) -> Path:
    """The built package ``name``, checked against its manifest entry (present, same sha256)."""
    if not name:
        raise ArtefactError("$letgo_artefact needs a name (one of deploy/package.py's packages)")
    folder = dist_dir(env_basedir, dist)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ArtefactError(f"artefact {name!r}: {manifest} does not exist — build the packages first "
                            f"(`make package`)")
    entries = json.loads(manifest.read_text())
    if name not in entries:
        raise ArtefactError(f"artefact {name!r} is not in {manifest} (built: {', '.join(sorted(entries)) or 'none'})"
                            f" — `make package` builds every package")
    path = folder / entries[name]["file"]
    if not path.is_file():
        raise ArtefactError(f"artefact {name!r}: {path} is listed in {manifest} but missing — run `make package`")
    if hashlib.sha256(path.read_bytes()).hexdigest() != entries[name]["sha256"]:
        raise ArtefactError(f"artefact {name!r}: {path} changed since `make package` wrote {manifest} — "
                            f"run `make package` again")
    return path


def parser(layer: Any, config: Any, name: str | None = None, dist: str | None = None) -> Any:
    """The reference parser (entry point ``humilis.reference_parsers: letgo_artefact``): find, then upload."""
    path = find(name, layer.env_basedir, dist)
    from humilis.reference import file as upload  # humilis's uploader: s3prefix/<env>/<STAGE>/<layer>/<file name>

    return upload(layer, config, str(path))
