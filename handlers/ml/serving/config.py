"""The serving app's configuration: one frozen object, checked when it is made, read from the environment once.

Precedence follows the rest of the repo: an explicit :class:`ServingConfig` (tests, the local stage) or
:meth:`ServingConfig.from_environ` (the image on Beanstalk, where the environment is the only channel);
every value has a default that is safe in production — no canary, the change limit in this process unless a
shared store is named. A bad value stops start-up with the variable's name and what would be accepted.

There is no setting that lets users choose a version: the public routes answer from the live pointer only, and
the validator pins versions on the internal route with a signed request (:mod:`handlers.ml.serving.auth`).
``ALLOW_VERSION_HEADER``, which once opened ``X-Model-Version`` to every caller, is ignored (with a warning).
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import orjson

from handlers.core.config import ConfigError

log = logging.getLogger(__name__)

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})
HEADER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def truthy(value: str | None, setting: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off/empty`` (any case); anything else is a :class:`ConfigError`."""
    text = (value or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigError(setting, f"{value!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


@dataclass(frozen=True)
class Canary:
    """A validated version served to ``share`` of the users (sticky per user), beside the live one."""

    version: str
    share: float


@dataclass(frozen=True)
class ServingConfig:
    """How one serving process behaves (see the field comments; environment names in :meth:`from_environ`)."""

    reload_seconds: float = 5.0  # the background poll of each model's live pointer and kill switch
    poll: bool = True  # poll in a background thread (False: only when refresh() is called — tests)
    stale_after_seconds: float = 300.0  # no successful poll for this long: answer 503 model_stale (0 = never)
    canaries: Mapping[str, Canary] = field(default_factory=lambda: MappingProxyType({}))  # model -> canary
    user_id_header: str = "X-User-Id"  # who is asking: what canary assignment is sticky on
    pinned_cache_size: int = 2  # versions loaded for the validator's internal requests, least recently used dropped
    change_memory: str = "local"  # local | postgresql://… | dynamodb:<table> (handlers.ml.serving.memory)
    change_memory_size: int = 50_000  # entries a local change memory keeps (least recent dropped)
    change_memory_retention_seconds: float = 7 * 86400  # entries not served for this long are dropped
    max_body_bytes: int = 16 * 1024  # larger request bodies are refused (413) before they are read
    scale_related_outputs: bool = True  # when the guarded output is limited, scale the other numeric outputs too
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)  # the kill-switch variables
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)  # signatures, memory

    def __post_init__(self) -> None:
        for name, high in (("reload_seconds", 86400), ("stale_after_seconds", 7 * 86400)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= high):
                raise ConfigError(name, f"{value!r}: seconds from 0 to {high}")
        if self.stale_after_seconds and self.stale_after_seconds <= self.reload_seconds:
            raise ConfigError("stale_after_seconds", "must be longer than reload_seconds (or 0: never stale)")
        for model, canary in self.canaries.items():
            if not (isinstance(canary.share, (int, float)) and 0.0 < canary.share <= 1.0):
                raise ConfigError("canaries", f"{model}: share {canary.share!r}: from 0 to 1 (0.05 = 5 %)")
            if not VERSION_PATTERN.match(canary.version or ""):
                raise ConfigError("canaries", f"{model}: {canary.version!r} is not a version name")
        if not HEADER_PATTERN.match(self.user_id_header):
            raise ConfigError("user_id_header", f"{self.user_id_header!r} is not an HTTP header name")
        for name in ("pinned_cache_size", "change_memory_size", "max_body_bytes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(name, f"{value!r}: a whole number of at least 1")
        if not isinstance(self.change_memory, str):
            raise ConfigError("change_memory", "local, postgresql://… or dynamodb:<table>")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> "ServingConfig":
        """``RELOAD_SECONDS``, ``STALE_AFTER_SECONDS``, ``CANARIES`` (JSON: ``{"<model>": {"version": …, "share":
        0.05}}``), ``USER_ID_HEADER``, ``PINNED_CACHE_SIZE``, ``CHANGE_MEMORY``, ``CHANGE_MEMORY_SIZE``,
        ``CHANGE_MEMORY_RETENTION_SECONDS``, ``MAX_BODY_BYTES``, ``SCALE_RELATED_OUTPUTS``."""
        values: dict[str, Any] = {"environ": environ}
        numbers = {"RELOAD_SECONDS": ("reload_seconds", float), "STALE_AFTER_SECONDS": ("stale_after_seconds", float),
                   "PINNED_CACHE_SIZE": ("pinned_cache_size", int), "CHANGE_MEMORY_SIZE": ("change_memory_size", int),
                   "CHANGE_MEMORY_RETENTION_SECONDS": ("change_memory_retention_seconds", float),
                   "MAX_BODY_BYTES": ("max_body_bytes", int)}
        for variable, (name, kind) in numbers.items():
            raw = environ.get(variable, "").strip()
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise ConfigError(variable, f"{raw!r} is not a {'whole ' if kind is int else ''}number") from None
        if "SCALE_RELATED_OUTPUTS" in environ:
            values["scale_related_outputs"] = truthy(environ["SCALE_RELATED_OUTPUTS"], "SCALE_RELATED_OUTPUTS")
        if environ.get("ALLOW_VERSION_HEADER", "").strip():
            log.warning("ALLOW_VERSION_HEADER is ignored: versions are pinned only by the validator's signed "
                        "requests on the internal route")
        if environ.get("CANARIES", "").strip():
            values["canaries"] = _canaries(environ["CANARIES"])
        for variable, name in (("USER_ID_HEADER", "user_id_header"), ("CHANGE_MEMORY", "change_memory")):
            if environ.get(variable, "").strip():
                values[name] = environ[variable].strip()
        values.update(overrides)
        env_names = {name: variable for variable, (name, _) in numbers.items()}
        env_names.update(canaries="CANARIES", user_id_header="USER_ID_HEADER", change_memory="CHANGE_MEMORY")
        try:
            return cls(**values)
        except ConfigError as exc:  # name the variable a person sets, not the field
            raise ConfigError(env_names.get(exc.where, exc.where), exc.message) from None


def _canaries(raw: str) -> Mapping[str, Canary]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError("CANARIES", 'not JSON; e.g. {"price_suggestion": {"version": "2026…", "share": 0.05}}') \
            from None
    if not isinstance(document, dict):
        raise ConfigError("CANARIES", "a JSON object of model name -> {version, share}")
    out = {}
    for model, spec in document.items():
        if not (isinstance(spec, dict) and set(spec) == {"version", "share"}):
            raise ConfigError("CANARIES", f"{model}: give exactly version and share")
        out[model] = Canary(spec["version"], spec["share"])
    return MappingProxyType(out)
