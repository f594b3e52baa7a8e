"""The serving app's configuration: one frozen object, checked when it is made, read from the environment once.

Precedence follows the rest of the repo: an explicit :class:`ServingConfig` (tests, the local stage) or
:meth:`ServingConfig.from_environ` (the image on Beanstalk, where the environment is the only channel);
every value has a default that is safe in production — choosing a version by header is off, no canary.
A bad value stops start-up with the variable's name and what would be accepted.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from handlers.core.config import ConfigError

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
class ServingConfig:
    """How one serving process behaves (see the field comments; environment names in :meth:`from_environ`)."""

    reload_seconds: float = 30.0  # at most one look at current.json + the kill switch per this many seconds
    background_reload: bool = True  # load a new version in a thread (requests keep the old one meanwhile)
    canary_version: str | None = None  # a candidate served to ``canary_share`` of the users, sticky per user
    canary_share: float = 0.0  # 0.05 = 5 % of user ids
    user_id_header: str = "X-User-Id"  # who is asking: what canary assignment is sticky on
    allow_version_header: bool = False  # honour X-Model-Version (the validator's requests; IAM-signed on AWS)
    pinned_cache_size: int = 2  # versions loaded on demand for X-Model-Version, least recently used dropped
    change_memory_size: int = 50_000  # inputs remembered for the max-change guard rail, least recent dropped
    scale_related_outputs: bool = True  # when the guarded output is limited, scale the other numeric outputs too
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)  # the kill-switch variable's
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.reload_seconds, (int, float)) and 0 <= self.reload_seconds <= 86400):
            raise ConfigError("reload_seconds", f"{self.reload_seconds!r}: seconds from 0 to 86400")
        if not (isinstance(self.canary_share, (int, float)) and 0.0 <= self.canary_share <= 1.0):
            raise ConfigError("canary_share", f"{self.canary_share!r}: a share from 0 to 1 (0.05 = 5 %)")
        if self.canary_share > 0 and not self.canary_version:
            raise ConfigError("canary_version", "a canary share without a canary version: name the version")
        if self.canary_version is not None and not VERSION_PATTERN.match(self.canary_version):
            raise ConfigError("canary_version", f"{self.canary_version!r} is not a version name")
        if not HEADER_PATTERN.match(self.user_id_header):
            raise ConfigError("user_id_header", f"{self.user_id_header!r} is not an HTTP header name")
        for name in ("pinned_cache_size", "change_memory_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(name, f"{value!r}: a whole number of at least 1")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> "ServingConfig":
        """``RELOAD_SECONDS``, ``BACKGROUND_RELOAD``, ``CANARY_VERSION``, ``CANARY_SHARE``, ``USER_ID_HEADER``,
        ``ALLOW_VERSION_HEADER``, ``PINNED_CACHE_SIZE``, ``CHANGE_MEMORY_SIZE``, ``SCALE_RELATED_OUTPUTS``."""
        values: dict[str, Any] = {"environ": environ}
        numbers = {"RELOAD_SECONDS": ("reload_seconds", float), "CANARY_SHARE": ("canary_share", float),
                   "PINNED_CACHE_SIZE": ("pinned_cache_size", int), "CHANGE_MEMORY_SIZE": ("change_memory_size", int)}
        for variable, (name, kind) in numbers.items():
            raw = environ.get(variable, "").strip()
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise ConfigError(variable, f"{raw!r} is not a {'whole ' if kind is int else ''}number") from None
        for variable, name in (("BACKGROUND_RELOAD", "background_reload"),
                               ("ALLOW_VERSION_HEADER", "allow_version_header"),
                               ("SCALE_RELATED_OUTPUTS", "scale_related_outputs")):
            if variable in environ:
                values[name] = truthy(environ[variable], variable)
        if environ.get("CANARY_VERSION", "").strip():
            values["canary_version"] = environ["CANARY_VERSION"].strip()
        if environ.get("USER_ID_HEADER", "").strip():
            values["user_id_header"] = environ["USER_ID_HEADER"].strip()
        values.update(overrides)
        env_names = {name: variable for variable, (name, _) in numbers.items()}
        env_names.update(canary_version="CANARY_VERSION", user_id_header="USER_ID_HEADER")
        try:
            return cls(**values)
        except ConfigError as exc:  # name the variable a person sets, not the field
            raise ConfigError(env_names.get(exc.where, exc.where), exc.message) from None
