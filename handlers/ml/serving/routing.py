"""Canary / A-B routing: which variant answers a user, and counters per variant.

A user's variant is a pure function of (model name, user id): the first 8 bytes of
``sha256(model + NUL + user id)`` read as a number in [0, 1) — the user's *bucket* — compared with the
canary share. So the same user always gets the same variant on every instance and every process, with no
shared state; buckets are uniform, so a share of 5 % sends about 5 % of users; and raising the share only
adds users (everyone in the canary at 5 % is still in it at 10 %), so nobody flips back and forth during a
ramp-up. The model name is in the hash so that two models' canaries do not hit the same users.

A request without a user id goes to the stable version: an anonymous request cannot be kept sticky.
"""
from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from typing import Any

STABLE, CANARY, PINNED = "stable", "canary", "pinned"
VARIANTS = (STABLE, CANARY, PINNED)
COUNTERS = ("requests", "predictions", "errors", "clamped", "change_limited", "abstained")


def bucket(model: str, user_id: str) -> float:
    """The user's fixed place in [0, 1) for this model."""
    digest = hashlib.sha256(f"{model}\x00{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def variant_for(model: str, user_id: str | None, share: float) -> str:
    """``canary`` for users whose bucket is below ``share``; ``stable`` otherwise and for anonymous requests."""
    if not user_id or share <= 0.0:
        return STABLE
    return CANARY if bucket(model, user_id) < share else STABLE


class Counters:
    """Requests and predictions per variant and per version, since the process started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._variants: dict[str, dict[str, int]] = {v: dict.fromkeys(COUNTERS, 0) for v in VARIANTS}
        self._versions: dict[str, int] = defaultdict(int)
        self._other: dict[str, int] = defaultdict(int)

    def count(self, variant: str, name: str, n: int = 1) -> None:
        with self._lock:
            self._variants[variant][name] += n

    def predicted(self, variant: str, version: str) -> None:
        with self._lock:
            self._variants[variant]["predictions"] += 1
            self._versions[version] += 1

    def other(self, name: str) -> None:
        """Requests answered before a variant was chosen (``invalid_input``, ``model_disabled``...)."""
        with self._lock:
            self._other[name] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"variants": {v: dict(c) for v, c in self._variants.items()},
                    "predictions_by_version": dict(self._versions), "refused": dict(self._other)}
