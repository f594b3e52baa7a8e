"""The serving core: which loaded version answers a request, what it may answer, and keeping up with the store.

The Flask routes (:mod:`handlers.ml.serving.app`) are thin: they hand a decoded body, the user id and the
optional pinned version to :meth:`ModelService.answer` and turn its :class:`Answer` or
:class:`~handlers.ml.serving.errors.ServingError` into JSON. Everything else is here, with the store and a
clock injected, so it runs the same under gunicorn, in the local stage and in tests.

**Reloading.** The store's pointer (``current.json``) says which version is served. At most once every
``reload_seconds`` a request triggers a *check*: one small GET of the pointer and one of the kill switch.
Only when the pointer names another artefact (version or checksum) is the new version loaded — through
:meth:`handlers.ml.store.ModelStore.load`, which verifies the sha256 against the pointer and the metadata and
the skops types against the definition's allow-list before building anything. The load runs in a
background thread (or inline, configurable); requests keep the previous version until the new one is
completely built, then one reference assignment swaps it in: a half-loaded model is never visible. A load
that fails (tampered bytes, untrusted types, S3 down) leaves the previous version in place, shows in
``/health`` and goes to Sentry once per version and error kind; the next check tries again. A kill switch
not in its format (:class:`handlers.ml.store.KillSwitch`: ``"on": "false"`` is a string) is refused the same
way: the state last read stays, ``/health`` says ``kill_switch_invalid`` with the problem, Sentry hears once.

**Variants.** ``stable`` is what the pointer names. ``canary`` is an extra version from the configuration,
answered to a sticky share of users (:mod:`handlers.ml.serving.routing`). ``pinned`` is a version asked for
with ``X-Model-Version`` (the validator's requests, only when the configuration allows it): loaded on demand
with the same verification, kept in a small LRU cache, exempt from the kill switch (it is how an operator or
the validator checks a version while users are switched off) and from the max-change memory (the validator
must see what the candidate really answers, and its requests must not move the users' anchors). Output
bounds apply to every variant: nothing outside them is ever answered.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from handlers.ml.definition_types import ModelDefinition
from handlers.ml.errors import InvalidKillSwitch, InvalidModelInput, ModelNotFound
from handlers.ml.serving import routing
from handlers.ml.serving.alerts import report_kill_switch_problem, report_reload_problem
from handlers.ml.serving.config import FALSE, ServingConfig
from handlers.ml.serving.errors import (InvalidInput, ModelDisabled, ModelUnavailable, ModelUnloadable,
                                        PredictionFailed, UnknownVersion, VersionHeaderDisabled)
from handlers.ml.serving.guards import ChangeLimiter, Guarded, guard, input_key

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Served:
    """A completely loaded, verified version."""

    version: str
    sha256: str
    loaded_at: str
    model: Any = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "loaded_at": self.loaded_at}


@dataclass(frozen=True)
class Answer:
    """A served prediction: who answered and what the guard rails did."""

    model: str
    version: str
    variant: str
    guarded: Guarded
    guard_report: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        body = {"model": self.model, "version": self.version, "variant": self.variant,
                "prediction": dict(self.guarded.outputs), "clamped": self.guarded.clamped,
                "change_limited": self.guarded.change_limited}
        if self.guard_report:
            body["guard_rail"] = dict(self.guard_report)
        return body


@dataclass(frozen=True)
class LoadProblem:
    """Why a version could not be loaded (kept for /health until a later load succeeds)."""

    version: str
    error: str
    message: str
    at: str

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "error": self.error, "message": self.message, "at": self.at}


def env_switch_on(value: str | None) -> bool:
    """The definition's kill-switch variable: off only when unset or clearly false; a typo switches it on."""
    return (value or "").strip().lower() not in FALSE


class ModelService:
    """One model's serving state: stable / canary / pinned versions, kill switch, change memory, counters."""

    def __init__(self, definition: ModelDefinition, store: Any, config: ServingConfig) -> None:
        self.definition, self.store, self.config = definition, store, config
        self.name = definition.name
        rails = definition.guard_rails
        self.limiter = ChangeLimiter(rails.max_change_relative, rails.max_change_window_seconds,
                                     capacity=config.change_memory_size, clock=config.clock)
        self.counters = routing.Counters()
        self._stable: Served | None = None
        self._canary: Served | None = None
        self._pinned: OrderedDict[str, Served] = OrderedDict()
        self._pinned_lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # one check/load at a time per process
        self._kill_store = False
        self._kill_env = False
        self._kill_problem: str | None = None  # why the store's switch was refused at the last check
        self._pointer: dict[str, Any] | None = None
        self._last_check: float | None = None
        self._last_check_at: str | None = None
        self._checks = self._reloads = self._failures = 0
        self._problem: LoadProblem | None = None
        self._canary_problem: LoadProblem | None = None
        self._alerted: set[tuple[str, str]] = set()

    # -- keeping up with the store ---------------------------------------------------------------------------------
    @property
    def stable(self) -> Served | None:
        return self._stable

    @property
    def canary(self) -> Served | None:
        return self._canary

    @property
    def kill_switch_on(self) -> bool:
        return self._kill_store or self._kill_env

    def due(self) -> bool:
        return self._last_check is None or self.config.clock() - self._last_check >= self.config.reload_seconds

    def maybe_refresh(self) -> None:
        """Called on the request path: start a check when one is due and none is running; never waits for it."""
        if not self.due() or self._refresh_lock.locked():
            return
        if self.config.background_reload:
            threading.Thread(target=self.refresh, kwargs={"wait": False}, name=f"reload-{self.name}",
                             daemon=True).start()
        else:
            self.refresh(wait=False)

    def refresh(self, *, wait: bool = True) -> bool:
        """Check the pointer and the kill switch; load a new version if the pointer moved. True when it ran."""
        if not self._refresh_lock.acquire(blocking=wait):
            return False
        try:
            if not wait and not self.due():  # another thread checked while this one was being scheduled
                return False
            self._check()
            return True
        finally:
            self._refresh_lock.release()

    def _check(self) -> None:
        self._last_check, self._last_check_at = self.config.clock(), _now()
        self._checks += 1
        self._kill_env = env_switch_on(self.config.environ.get(self.definition.guard_rails.kill_switch_env))
        try:
            pointer = self.store.current(self.name)
            self._kill_store = self._read_kill_switch()
        except Exception as exc:  # noqa: BLE001 - S3 down, a garbled pointer: keep serving what is loaded
            log.error("model %s: cannot read the pointer / kill switch (%s); serving %s unchanged", self.name,
                      exc, self._stable.version if self._stable else "nothing")
            self._problem = LoadProblem(self._stable.version if self._stable else "(pointer)", type(exc).__name__,
                                        str(exc), _now())
            return
        if pointer is not None:
            self._pointer = pointer.to_dict()
            stable = self._stable
            if stable is None or (stable.version, stable.sha256) != (pointer.version, pointer.sha256):
                self._load_stable(pointer)
            elif self._problem is not None:  # serving what the pointer names: an older problem is over
                self._problem = None
        if self.config.canary_version and self._canary is None:
            self._load_canary(self.config.canary_version)

    def _read_kill_switch(self) -> bool:
        """The store's switch; a malformed one is refused: the state last read stays, /health and Sentry say why."""
        try:
            on = self.store.kill_switch(self.name)
        except InvalidKillSwitch as exc:
            if self._kill_problem != exc.problem:  # once per distinct problem, not every check
                log.error("model %s: %s; the kill switch stays %s", self.name, exc, "on" if self._kill_store else "off")
                report_kill_switch_problem(self.name, exc, on=self._kill_store)
            self._kill_problem = exc.problem
            return self._kill_store
        self._kill_problem = None
        return on

    def _reuse(self, version: str, sha256: str | None = None) -> Served | None:
        """A version already loaded in this process (e.g. the validator pinned the candidate just before)."""
        with self._pinned_lock:
            candidates = (self._stable, self._canary, *self._pinned.values())
        for served in candidates:
            if served is not None and served.version == version and (sha256 is None or served.sha256 == sha256):
                return served
        return None

    def _load(self, version: str | None) -> Served:
        """Load through the store (checksum and allow-list verified); ``None`` = whatever the pointer names."""
        loaded = self.store.load(self.name, version, trusted_types=self.definition.trusted_types)
        return Served(loaded.version, loaded.metadata.sha256, _now(), loaded.model)

    def _failed(self, version: str, exc: Exception) -> LoadProblem:
        self._failures += 1
        problem = LoadProblem(version, type(exc).__name__, str(exc), _now())
        log.error("model %s: cannot load version %s (%s); still serving %s", self.name, version, exc,
                  self._stable.version if self._stable else "nothing")
        if (version, problem.error) not in self._alerted:  # once per version and kind, not every check
            self._alerted.add((version, problem.error))
            report_reload_problem(self.name, version, exc)
        return problem

    def _load_stable(self, pointer: Any) -> None:
        try:
            served = self._reuse(pointer.version, pointer.sha256) or self._load(None)
        except Exception as exc:  # noqa: BLE001 - whatever stops a load, the previous version stays
            self._problem = self._failed(pointer.version, exc)
            return
        previous = self._stable
        self._stable = served  # the swap: one reference assignment, after the model is completely built
        self._reloads += 1
        self._problem = None
        log.info("model %s: now serving version %s (was %s)", self.name, served.version,
                 previous.version if previous else "nothing")

    def _load_canary(self, version: str) -> None:
        try:
            self._canary = self._reuse(version) or self._load(version)
            self._canary_problem = None
        except Exception as exc:  # noqa: BLE001 - a canary that cannot load leaves everyone on stable
            self._canary_problem = self._failed(version, exc)

    def pinned(self, version: str) -> Served:
        """A version asked for by header: from memory, or loaded and verified now (LRU-cached)."""
        found = self._reuse(version)
        if found is not None:
            return found
        with self._pinned_lock:
            found = self._reuse(version)
            if found is not None:
                return found
            try:
                served = self._load(version)
            except ModelNotFound as exc:
                raise UnknownVersion(f"{self.name} has no version {version}", details={"version": version}) from exc
            except Exception as exc:  # noqa: BLE001 - StoreError and its kinds, or a library refusing the file
                raise ModelUnloadable(f"{self.name} version {version} cannot be loaded: {exc}",
                                      details={"version": version, "error": type(exc).__name__}) from exc
            self._pinned[version] = served
            while len(self._pinned) > self.config.pinned_cache_size:
                self._pinned.popitem(last=False)
            return served

    # -- answering -------------------------------------------------------------------------------------------------
    def answer(self, path: str, body: Any, *, user_id: str | None = None, version: str | None = None) -> Answer:
        """Validate ``body`` against the endpoint, choose the version, predict, apply the guard rails."""
        endpoint = self.definition.endpoint(path)
        try:
            cleaned = endpoint.validate(body)
        except InvalidModelInput as exc:
            self.counters.other("invalid_input")
            raise self._invalid(endpoint, exc) from None
        if version is not None:
            if not self.config.allow_version_header:
                self.counters.other("version_header_disabled")
                raise VersionHeaderDisabled("choosing a model version by header is disabled on this server")
            served, variant = self.pinned(version), routing.PINNED
        else:
            if self.kill_switch_on:
                self.counters.other("model_disabled")
                raise ModelDisabled(self._disabled_message(), details=self.kill_switch())
            stable, canary = self._stable, self._canary
            if stable is None:
                self.counters.other("model_unavailable")
                raise ModelUnavailable(f"{self.name}: no version is loaded yet",
                                       details={"last_problem": self._problem.describe() if self._problem else None})
            variant = routing.variant_for(self.name, user_id, self.config.canary_share) if canary else routing.STABLE
            served = canary if variant == routing.CANARY and canary is not None else stable
        self.counters.count(variant, "requests")
        try:
            guarded = self._predict(endpoint, served, cleaned, pinned=variant == routing.PINNED)
        except PredictionFailed:
            self.counters.count(variant, "errors")
            raise
        self.counters.predicted(variant, served.version)
        if guarded.clamped:
            self.counters.count(variant, "clamped")
        if guarded.change_limited:
            self.counters.count(variant, "change_limited")
        return Answer(self.name, served.version, variant, guarded, guarded.report(self.definition.guard_rails))

    def _predict(self, endpoint: Any, served: Served, cleaned: dict[str, Any], *, pinned: bool) -> Guarded:
        try:
            raw = self.definition.predict(served.model, cleaned)
        except Exception as exc:  # noqa: BLE001 - a model's bug is a 500 with its name, not a crashed worker
            log.exception("model %s version %s: predict raised", self.name, served.version)
            raise PredictionFailed(f"{self.name} version {served.version}: predict raised "
                                   f"{type(exc).__name__}: {exc}", details={"version": served.version}) from None
        if not isinstance(raw, Mapping):
            raise PredictionFailed(f"predict returned {type(raw).__name__}, not a mapping of the outputs",
                                   details={"version": served.version})
        missing = [name for name in endpoint.outputs if name not in raw]
        if missing:
            raise PredictionFailed(f"predict did not answer {', '.join(missing)} (declared outputs of "
                                   f"{endpoint.path})", details={"version": served.version, "missing": missing})
        outputs = {name: raw[name] for name in endpoint.outputs}  # only what the endpoint declares leaves
        return guard(self.definition.guard_rails, outputs, limiter=None if pinned else self.limiter,
                     key=input_key(endpoint.path, cleaned), scale_related=self.config.scale_related_outputs)

    def _invalid(self, endpoint: Any, exc: InvalidModelInput) -> InvalidInput:
        field_name = None if exc.field in (None, "", "input") else exc.field
        message = exc.message
        if exc.reason == "unknown_property":
            message = f"not an input of {endpoint.path}; its inputs are {', '.join(endpoint.inputs)}"
        where = f"{field_name}: " if field_name else "the body: "
        return InvalidInput(where + message, field=field_name, details={"reason": exc.reason})

    def _disabled_message(self) -> str:
        why = []
        if self._kill_store:
            why.append(f"the kill switch in the model store ({self.store.kill_switch_key(self.name)})")
        if self._kill_env:
            why.append(f"the environment variable {self.definition.guard_rails.kill_switch_env}")
        return f"{self.name} is switched off by {' and '.join(why)}; no predictions are served"

    # -- reporting -------------------------------------------------------------------------------------------------
    def kill_switch(self) -> dict[str, Any]:
        return {"on": self.kill_switch_on, "store": self._kill_store,
                "env": {"name": self.definition.guard_rails.kill_switch_env, "on": self._kill_env},
                "problem": self._kill_problem}

    def _pinned_versions(self) -> list[str]:
        with self._pinned_lock:
            return list(self._pinned)

    def health(self) -> dict[str, Any]:
        stable, canary = self._stable, self._canary
        status = ("disabled" if self.kill_switch_on else "no_model" if stable is None
                  else "kill_switch_invalid" if self._kill_problem else "ok")
        return {
            "status": status, "model": self.name,
            "served": {"stable": stable.describe() if stable else None,
                       "canary": canary.describe() if canary else None},
            "versions": sorted({s.version for s in (stable, canary) if s}),
            "canary": {"version": self.config.canary_version, "share": self.config.canary_share,
                       "loaded": canary is not None,
                       "problem": self._canary_problem.describe() if self._canary_problem else None},
            "kill_switch": self.kill_switch(),
            "reload": {"every_seconds": self.config.reload_seconds, "checks": self._checks,
                       "last_check_at": self._last_check_at, "reloads": self._reloads, "failures": self._failures,
                       "pointer": self._pointer, "problem": self._problem.describe() if self._problem else None},
            "pinned_versions": self._pinned_versions(),
            "counters": self.counters.snapshot(),
        }
