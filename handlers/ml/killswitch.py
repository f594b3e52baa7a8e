"""The operator's kill switch of a served model: switch it off (:func:`kill`), back on (:func:`revive`), or read it.

Why a switch in the model store, beside the definition's environment variable (``guard_rails.kill_switch.env``):
turning a model off must not wait for a redeploy. Every serving process reads ``<prefix><model>/kill_switch.json``
with the live pointer, every ``reload_seconds`` (5 s by default) in a background thread, and while it is on
answers 503 ``model_disabled`` to everyone — users, and the validator's internal requests too: a model switched
off changes nothing until an operator revives it (a candidate published meanwhile waits; :func:`revive`
announces it again so the validator looks at it then). ``/health`` shows the switch.

Write it only through these functions: they write the one format (:class:`~handlers.ml.store_types.KillSwitch`:
``on`` a JSON boolean, a reason, the time) and refuse a model the store has never heard of, so a misspelt name
cannot look like a model switched off. A file written by hand that is not in the format **fails safe**: every
serving process treats the model as switched off, says ``"status": "kill_switch_invalid"`` with the problem in
``/health``, and reports it to Sentry; :func:`status` raises :class:`~handlers.ml.errors.InvalidKillSwitch`.
Writing the switch again (kill or revive) repairs it.

    from handlers.ml import killswitch
    from handlers.ml.store import ModelStore

    store = ModelStore("letgo-models-prod")
    killswitch.kill(store, "price_suggestion", reason="suggestions in TR are 40x too high")
    killswitch.status(store, "price_suggestion")  # KillSwitch(model=..., on=True, reason=..., updated_at=...)
    killswitch.revive(store, "price_suggestion", reason="fixed by version 20261126T...")

On the command line: ``letgo ml kill|revive <model> --reason "…" [--stage PROD]``, ``letgo ml status <model>``.
"""
from __future__ import annotations

from dataclasses import dataclass

from handlers.ml.errors import NoCurrentModel
from handlers.ml.store import UNVALIDATED, ModelStore
from handlers.ml.store_types import KillSwitch


@dataclass(frozen=True)
class Revived:
    """What :func:`revive` wrote, and the candidate it announced again to the validator (if one was waiting)."""

    switch: KillSwitch
    announced: str | None = None


def _known(store: ModelStore, model: str) -> None:
    """Refuse a model the store has never published (most likely a typo)."""
    if store.current(model) is None and store.candidate(model) is None and not store.versions(model):
        raise NoCurrentModel(model, store.pointer_key(model))


def kill(store: ModelStore, model: str, *, reason: str = "") -> KillSwitch:
    """Switch ``model`` off for everyone; returns what was written.

    Raises :class:`~handlers.ml.errors.NoCurrentModel` when the store never heard of ``model`` and
    :class:`~handlers.ml.errors.StoreError` when S3 refuses the write.
    """
    _known(store, model)
    return store.set_kill_switch(model, True, reason=reason)


def revive(store: ModelStore, model: str, *, reason: str = "") -> Revived:
    """Switch ``model`` back on; a candidate that waited unvalidated meanwhile is announced to the validator
    again (its ``candidate.json`` rewritten: the store's write event is what starts a validation)."""
    _known(store, model)
    switch = store.set_kill_switch(model, False, reason=reason)
    candidate = store.candidate(model)
    if candidate is None or store.verdict(model, candidate.version) != UNVALIDATED:
        return Revived(switch)
    store.announce_candidate(model, reason="announced again: the model was revived")
    return Revived(switch, candidate.version)


def status(store: ModelStore, model: str) -> KillSwitch:
    """What the store says (off when nothing was ever written); :class:`~handlers.ml.errors.InvalidKillSwitch`
    when the file is malformed. The definition's environment variable is per deployment: ``/health`` shows both."""
    return store.kill_switch_state(model)
