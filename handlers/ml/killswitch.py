"""The operator's kill switch of a served model: switch it off, back on, or ask what the store says.

Why a switch in the model store, beside the definition's environment variable (``guard_rails.kill_switch.env``):
turning a model off must not wait for a redeploy. Every serving process reads ``<prefix><model>/kill_switch.json``
with the pointer, at most every ``reload_seconds`` (30 s by default), and while it is on answers 503
``model_disabled`` to users — requests pinned with ``X-Model-Version`` (the validator's, an operator's checks)
still answer, so a version can be examined while users are switched off. ``/health`` shows the switch.

Write it only through :func:`switch`: it writes the one format (:class:`~handlers.ml.store.KillSwitch`: ``on`` a
JSON boolean, a reason, the time) and refuses a model the store has never published, so a misspelt name cannot
look like a model switched off. A file written by hand that is not in the format is refused by every reader
(:class:`~handlers.ml.errors.InvalidKillSwitch`): the serving processes keep the state they last read, say
``"status": "kill_switch_invalid"`` and the problem under ``kill_switch.problem`` in ``/health``, and report it
to Sentry; :func:`status` raises it. Writing the switch again with :func:`switch` repairs it.

    from handlers.ml.killswitch import status, switch
    from handlers.ml.store import ModelStore

    store = ModelStore("letgo-models-prod")
    switch(store, "price_suggestion", True, reason="suggestions in TR are 40x too high")
    status(store, "price_suggestion")  # KillSwitch(model=..., on=True, reason=..., updated_at=...)
    switch(store, "price_suggestion", False, reason="fixed by version 20261126T...")
"""
from __future__ import annotations

from handlers.ml.errors import NoCurrentModel
from handlers.ml.store import KillSwitch, ModelStore


def switch(store: ModelStore, model: str, on: bool, *, reason: str = "") -> KillSwitch:
    """Switch ``model`` off (``on=True``) or back on (``on=False``); returns what was written.

    Raises :class:`~handlers.ml.errors.NoCurrentModel` when the store has never published ``model`` (nothing
    is served under that name: most likely a typo), :class:`TypeError` when ``on`` is not a bool, and
    :class:`~handlers.ml.errors.StoreError` when S3 refuses the write.
    """
    if store.current(model) is None:
        raise NoCurrentModel(model)
    return store.set_kill_switch(model, on, reason=reason)


def status(store: ModelStore, model: str) -> KillSwitch:
    """What the store says (off when nothing was ever written); :class:`~handlers.ml.errors.InvalidKillSwitch`
    when the file is malformed. The definition's environment variable is per deployment: ``/health`` shows both."""
    return store.kill_switch_state(model)
