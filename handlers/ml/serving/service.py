"""The serving core of one model: which loaded version answers, what it may answer, keeping up with the store.

The Flask routes (:mod:`handlers.ml.serving.app`) are thin: they hand a decoded body and the user id to
:meth:`ModelService.answer` (users) or a version to :meth:`ModelService.answer_pinned` (the validator's signed
internal requests) and turn the :class:`Answer` or :class:`~handlers.ml.serving.errors.ServingError` into JSON.
Everything else is here, with the store, the change memory and the clocks injected, so it runs the same under
gunicorn, in the local stage and in tests.

**Keeping up.** A background thread (:meth:`start`) reads the live pointer and the kill switch every
``reload_seconds`` (5 s by default, with jitter so a fleet does not poll in step) — requests never wait for it and
idle workers follow too. When the pointer names another artefact, the version is checked to be **validated**
(its marker present, no rejection since) and only then loaded — through
:meth:`handlers.ml.store.ModelStore.load`, which verifies the sha256 against the pointer and the metadata and the
skops types against the definition's allow-list before building anything — and swapped in with one reference
assignment: a half-loaded model is never visible. Recently served versions stay loaded, so a rollback to the
previous version is a swap, not a download. A version that is not validated, or fails to load, leaves the
previous one in place, shows in ``/health`` and goes to Sentry once per version and problem.

**The bound.** After the live pointer moves (a promotion or a rollback), no user gets the old version later than
``reload_seconds`` + jitter (+ the load, when the target is not already in memory). A process that cannot read
the pointer does not know whether its version is still live: after ``stale_after_seconds`` without a successful
read it answers 503 ``model_stale`` instead (0 disables this).

**Variants.** ``stable`` is what the live pointer names. ``canary`` is a configured extra version — validated
ones only — answered to a sticky share of users (:mod:`handlers.ml.serving.routing`). ``pinned`` is a version
the validator asked for on the internal route: loaded with the same verification, kept in a small LRU cache,
**subject to the kill switch** like everyone, and exempt from the change limit (the validator must see what the
candidate really answers, and its requests must not move the users' memory). Output rails apply to every variant.

**Kill switch.** The store's switch (:mod:`handlers.ml.killswitch`) or the definition's environment variable.
A switch file out of its format fails safe: the model is treated as switched off, ``/health`` says
``kill_switch_invalid`` with the problem, Sentry hears once per problem.
"""
from __future__ import annotations

import logging
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from handlers.ml.definition_types import Endpoint, ModelDefinition
from handlers.ml.errors import (ChecksumMismatch, InvalidKillSwitch, InvalidModelInput, ModelNotFound, NotValidated,
                                StoreError)
from handlers.ml.serving import routing
from handlers.ml.serving.alerts import report_kill_switch_problem, report_reload_problem
from handlers.ml.serving.config import FALSE, Canary, ServingConfig
from handlers.ml.serving.errors import (InvalidInput, ModelDisabled, ModelStale, ModelUnavailable, ModelUnloadable,
                                        PredictionFailed, UnknownVersion)
from handlers.ml.serving.guards import Guarded, guard, input_key
from handlers.ml.store import VALIDATED

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 3600.0


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
                "change_limited": self.guarded.change_limited, "abstained": self.guarded.abstained}
        if self.guard_report:
            body["guard_rail"] = dict(self.guard_report)
        return body


@dataclass(frozen=True)
class Problem:
    """Why something could not be done (kept for /health until it is over)."""

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

    def __init__(self, definition: ModelDefinition, store: Any, config: ServingConfig, memory: Any) -> None:
        self.definition, self.store, self.config, self.memory = definition, store, config, memory
        self.name = definition.name
        self.rails = definition.guard_rails
        self.canary_config: Canary | None = config.canaries.get(self.name)
        self.text_features = tuple(c.name for c in definition.data.columns if c.kind == "text")
        self.counters = routing.Counters()
        self._stable: Served | None = None
        self._canary: Served | None = None
        self._warm: OrderedDict[str, Served] = OrderedDict()  # recently served and pinned versions, LRU
        self._warm_lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # one check/load at a time
        self._kill_store = self._kill_env = False
        self._kill_problem: str | None = None
        self._pointer: dict[str, Any] | None = None
        self._rejected: frozenset[str] = frozenset()
        self._last_ok: float | None = None  # clock of the last successful read of the live pointer
        self._last_check_at: str | None = None
        self._checks = self._reloads = self._failures = 0
        self._problem: Problem | None = None
        self._canary_problem: Problem | None = None
        self._alerted: set[tuple[str, str]] = set()
        self._housekeeping_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the background poll -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Poll the store in a daemon thread (one per model and process) until :meth:`stop`."""
        if self._thread is None and self.config.poll and self.config.reload_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name=f"poll-{self.name}-{os.getpid()}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _poll(self) -> None:
        interval = self.config.reload_seconds
        while not self._stop.wait(interval * random.uniform(0.8, 1.0)):  # jitter: a fleet does not poll in step
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poll thread must outlive any one bad check
                log.exception("model %s: the pointer check failed", self.name)

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

    def refresh(self) -> None:
        """Read the pointer and the kill switch; load a new live version when it is validated."""
        with self._refresh_lock:
            self._check()

    def _alert_once(self, version: str, kind: str, exc: Exception) -> None:
        if (version, kind) not in self._alerted:  # once per version and kind of problem, not every check
            self._alerted.add((version, kind))
            report_reload_problem(self.name, version, exc)

    def _check(self) -> None:
        self._checks += 1
        self._last_check_at = _now()
        self._kill_env = env_switch_on(self.config.environ.get(self.rails.kill_switch_env))
        try:
            pointer = self.store.current(self.name)
        except StoreError as exc:  # S3 down, an unreadable pointer: keep what is loaded (and say so)
            log.error("model %s: cannot read the live pointer (%s); serving %s unchanged", self.name, exc,
                      self._stable.version if self._stable else "nothing")
            self._problem = Problem("(pointer)", type(exc).__name__, str(exc), _now())
            self._alert_once("(pointer)", type(exc).__name__, exc)
            return
        self._last_ok = self.config.clock()
        self._read_kill_switch()
        if pointer is not None:
            self._pointer = pointer.to_dict()
            stable = self._stable
            if stable is None or (stable.version, stable.sha256) != (pointer.version, pointer.sha256):
                self._follow(pointer)
            elif self._problem is not None:  # serving what the pointer names: an older problem is over
                self._problem = None
        self._check_canary()
        self._housekeeping()

    def _read_kill_switch(self) -> None:
        try:
            on = self.store.kill_switch(self.name)
        except InvalidKillSwitch as exc:  # fail safe: a switch nobody can read means off
            if self._kill_problem != exc.problem:  # once per distinct problem, not every check
                log.error("model %s: %s", self.name, exc)
                report_kill_switch_problem(self.name, exc)
            self._kill_problem, self._kill_store = exc.problem, True
            return
        except StoreError as exc:  # unreachable (not malformed): the state last read stays
            log.error("model %s: cannot read the kill switch (%s); it stays %s", self.name, exc,
                      "on" if self._kill_store else "off")
            return
        self._kill_problem, self._kill_store = None, on

    def _follow(self, pointer: Any) -> None:
        """The live pointer names another artefact: refuse it unless validated, then load (or reuse) it."""
        try:
            rejected = frozenset(self.store.rejected_versions(self.name))
            verdict = self.store.verdict(self.name, pointer.version)
            if verdict != VALIDATED:
                raise NotValidated(self.name, pointer.version, verdict)
            served = self._reuse(pointer.version, pointer.sha256) or self._load(pointer.version)
            if served.sha256 != pointer.sha256:  # a pointer whose checksum is not its version's
                raise ChecksumMismatch(self.name, pointer.version, pointer.sha256, served.sha256,
                                       self.store.pointer_key(self.name))
        except Exception as exc:  # noqa: BLE001 - whatever stops it, the previous version stays
            self._failures += 1
            self._problem = Problem(pointer.version, type(exc).__name__, str(exc), _now())
            log.error("model %s: not following the pointer to %s (%s); still serving %s", self.name,
                      pointer.version, exc, self._stable.version if self._stable else "nothing")
            self._alert_once(pointer.version, type(exc).__name__, exc)
            return
        previous = self._stable
        self._stable = served  # the swap: one reference assignment, after the model is completely built
        self._rejected = rejected
        self._keep_warm(served)
        self._reloads += 1
        self._problem = None
        if pointer.is_rollback and self._rejected:
            self.memory.forget(self.name, self._rejected)  # what the rolled-back versions served is not an anchor
        log.info("model %s: now serving version %s (was %s; %s)", self.name, served.version,
                 previous.version if previous else "nothing", pointer.reason)

    def _check_canary(self) -> None:
        canary = self.canary_config
        if canary is None:
            return
        if self._canary is not None and self._canary.version in self._rejected:
            log.warning("model %s: canary %s was rejected; everyone back on stable", self.name, self._canary.version)
            self._canary = None
        if self._canary is not None:
            return
        try:
            verdict = self.store.verdict(self.name, canary.version)
            if verdict != VALIDATED:  # a canary is a validated version on a share of users, never a candidate
                raise NotValidated(self.name, canary.version, verdict)
            self._canary = self._reuse(canary.version) or self._load(canary.version)
            self._canary_problem = None
        except Exception as exc:  # noqa: BLE001 - a canary that cannot be served leaves everyone on stable
            self._canary_problem = Problem(canary.version, type(exc).__name__, str(exc), _now())
            self._alert_once(canary.version, type(exc).__name__, exc)

    def _housekeeping(self) -> None:
        now = self.config.clock()
        if self._housekeeping_at is not None and now - self._housekeeping_at < HOUSEKEEPING_SECONDS:
            return
        self._housekeeping_at = now
        if self.rails.max_change_relative is not None:
            self.memory.expire(self.name, self.config.wall_clock() - self.config.change_memory_retention_seconds)

    def _keep_warm(self, served: Served) -> None:
        with self._warm_lock:
            self._warm[served.version] = served
            self._warm.move_to_end(served.version)
            while len(self._warm) > self.config.pinned_cache_size + 2:
                self._warm.popitem(last=False)

    def _reuse(self, version: str, sha256: str | None = None) -> Served | None:
        """A version already loaded in this process (the previous live one, or the candidate just validated)."""
        with self._warm_lock:
            served = self._warm.get(version)
        if served is not None and (sha256 is None or served.sha256 == sha256):
            return served
        return None

    def _load(self, version: str) -> Served:
        """Load through the store (checksum against the metadata and allow-list verified)."""
        loaded = self.store.load(self.name, version, trusted_types=self.definition.trusted_types)
        return Served(loaded.version, loaded.metadata.sha256, _now(), loaded.model)

    def pinned(self, version: str) -> Served:
        """A version the validator asked for: from memory, or loaded and verified now (kept warm)."""
        found = self._reuse(version)
        if found is not None:
            return found
        with self._warm_lock:
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
            self._keep_warm(served)
            return served

    # -- answering -------------------------------------------------------------------------------------------------
    def validate(self, endpoint: Endpoint, body: Any) -> dict[str, Any]:
        try:
            return endpoint.validate(body)
        except InvalidModelInput as exc:
            self.counters.other("invalid_input")
            raise self._invalid(endpoint, exc) from None

    def _switched_off(self) -> None:
        if self.kill_switch_on:
            self.counters.other("model_disabled")
            raise ModelDisabled(self._disabled_message(), details=self.kill_switch())

    def answer(self, endpoint: Endpoint, cleaned: dict[str, Any], *, user_id: str | None = None) -> Answer:
        """A user's answer: the live version (or the canary for the user's share), within the guard rails."""
        self._switched_off()
        if self.stale():
            self.counters.other("model_stale")
            raise ModelStale(f"{self.name}: the live pointer could not be read for over "
                             f"{self.config.stale_after_seconds:g} s; not answering with a version that may have "
                             f"been rolled back", details={"last_problem": self._describe(self._problem)})
        stable, canary = self._stable, self._canary
        if stable is None:
            self.counters.other("model_unavailable")
            raise ModelUnavailable(f"{self.name}: no validated version is live yet",
                                   details={"last_problem": self._describe(self._problem)})
        share = self.canary_config.share if self.canary_config else 0.0
        variant = routing.variant_for(self.name, user_id, share) if canary else routing.STABLE
        served = canary if variant == routing.CANARY and canary is not None else stable
        return self._answer(endpoint, served, cleaned, variant)

    def answer_pinned(self, endpoint: Endpoint, cleaned: dict[str, Any], version: str) -> Answer:
        """The validator's answer from ``version`` (the kill switch applies; the change limit does not)."""
        self._switched_off()
        return self._answer(endpoint, self.pinned(version), cleaned, routing.PINNED)

    def _answer(self, endpoint: Endpoint, served: Served, cleaned: dict[str, Any], variant: str) -> Answer:
        self.counters.count(variant, "requests")
        try:
            guarded = self._predict(endpoint, served, cleaned, pinned=variant == routing.PINNED)
        except PredictionFailed:
            self.counters.count(variant, "errors")
            raise
        self.counters.predicted(variant, served.version)
        for flag in ("clamped", "change_limited", "abstained"):
            if getattr(guarded, flag):
                self.counters.count(variant, flag)
        return Answer(self.name, served.version, variant, guarded, guarded.report(self.rails))

    def _predict(self, endpoint: Endpoint, served: Served, cleaned: dict[str, Any], *, pinned: bool) -> Guarded:
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
        limit = None
        if not pinned and self.rails.max_change_relative is not None:
            key = input_key(endpoint.path, cleaned, self.definition.data.features, self.text_features)
            # what rejected versions served is no limit — but a request that raced a rollback and is answered by
            # the version just rejected must still be limited: never ignore the answering version's own entries
            options = dict(now=self.config.wall_clock(), factor=1.0 + self.rails.max_change_relative,
                           window=float(self.rails.max_change_window_seconds or 0),
                           ignore=self._rejected - {served.version})

            def limit(value: float) -> float:
                return self.memory.step(self.name, key, value, served.version, **options)[0]

        return guard(self.rails, outputs, limit=limit, scale_related=self.config.scale_related_outputs)

    def _invalid(self, endpoint: Endpoint, exc: InvalidModelInput) -> InvalidInput:
        field_name = None if exc.field in (None, "", "input") else exc.field
        message = exc.message
        if exc.reason == "unknown_property":
            message = f"not an input of {endpoint.path}; its inputs are {', '.join(endpoint.inputs)}"
        where = f"{field_name}: " if field_name else "the body: "
        return InvalidInput(where + message, field=field_name, details={"reason": exc.reason})

    def _disabled_message(self) -> str:
        why = []
        if self._kill_store:
            kind = "unreadable kill switch" if self._kill_problem else "kill switch"
            why.append(f"the {kind} in the model store ({self.store.kill_switch_key(self.name)})")
        if self._kill_env:
            why.append(f"the environment variable {self.rails.kill_switch_env}")
        return f"{self.name} is switched off by {' and '.join(why)}; no predictions are served"

    # -- reporting -------------------------------------------------------------------------------------------------
    def stale(self) -> bool:
        bound = self.config.stale_after_seconds
        return bool(bound) and self._last_ok is not None and self.config.clock() - self._last_ok > bound

    @staticmethod
    def _describe(problem: Problem | None) -> dict[str, Any] | None:
        return problem.describe() if problem else None

    def kill_switch(self) -> dict[str, Any]:
        return {"on": self.kill_switch_on, "store": self._kill_store,
                "env": {"name": self.rails.kill_switch_env, "on": self._kill_env}, "problem": self._kill_problem}

    def status(self) -> str:
        if self._kill_problem:
            return "kill_switch_invalid"
        if self.kill_switch_on:
            return "disabled"
        if self.stale():
            return "stale"
        return "no_model" if self._stable is None else "ok"

    def ready(self) -> bool:
        """Whether this process can answer for the model as the store says it should (for the load balancer):
        a model with nothing live yet does not make the instance unhealthy; one it failed to load does."""
        return self._stable is not None or self._pointer is None

    def health(self) -> dict[str, Any]:
        stable, canary = self._stable, self._canary
        with self._warm_lock:
            warm = list(self._warm)
        return {
            "status": self.status(), "model": self.name,
            "served": {"stable": stable.describe() if stable else None,
                       "canary": canary.describe() if canary else None},
            "versions": sorted({s.version for s in (stable, canary) if s}),
            "canary": {"version": self.canary_config.version if self.canary_config else None,
                       "share": self.canary_config.share if self.canary_config else 0.0,
                       "loaded": canary is not None, "problem": self._describe(self._canary_problem)},
            "kill_switch": self.kill_switch(),
            "reload": {"every_seconds": self.config.reload_seconds, "checks": self._checks,
                       "last_check_at": self._last_check_at, "reloads": self._reloads, "failures": self._failures,
                       "pointer": self._pointer, "problem": self._describe(self._problem),
                       "seconds_since_pointer_read": None if self._last_ok is None
                       else round(self.config.clock() - self._last_ok, 3)},
            "rejected_versions": sorted(self._rejected), "warm_versions": warm,
            "counters": self.counters.snapshot(),
        }
