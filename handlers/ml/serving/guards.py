"""The definition's guard rails applied to each answer, as plain functions over numbers (no Flask, no S3).

What :class:`handlers.ml.definition_types.GuardRails` asks of the serving wrapper, and how it is done here:

* **Output bounds** (``guard_rails.output``): the guarded field must lie in [min, max]. An answer outside is
  *clamped* to the nearest bound and the response says ``"clamped": true`` with the raw value. A value that
  is not a finite number is never served at all (:class:`~handlers.ml.serving.errors.PredictionFailed`).
* **Maximum change** (``guard_rails.max_change``: ``max_relative`` over ``window``): the definition's words
  are "within that window the answer to the same input may move by at most that fraction". So the first
  answer served for an input opens a window and becomes its *anchor*; until the window closes, every answer
  to the same input is capped to ``anchor ± max_relative × |anchor|`` (``"change_limited": true``). The
  anchor does not follow the capped answers, so a model cannot creep by the fraction on every request: over
  one window the served value moves at most ``max_relative`` in total. When the window closes, the next
  answer anchors a new one — a new model version reaches users in steps of at most ``max_relative`` per
  window. This is the per-input half of the rail; the population half (median shift on the holdout) is a
  training gate (:func:`handlers.ml.training.shift_gate`).

  The memory is per process and bounded (least recently used inputs are forgotten): it caps what repeated
  identical requests see (the app asking again for the same listing), not a fleet-wide consensus.
* **Related outputs**: the guarded field is usually one number among several in the same unit (the price
  model answers the price in euros, in the local currency and a low/high range). When the guarded value is
  limited, the other numeric outputs are scaled by the same factor, so the answer stays coherent
  (configurable: :attr:`~handlers.ml.serving.config.ServingConfig.scale_related_outputs`).
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from handlers.ml.definition_types import GuardRails
from handlers.ml.serving.errors import PredictionFailed


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def input_key(endpoint: str, cleaned: Mapping[str, Any]) -> bytes:
    """A compact identity of one request (endpoint + cleaned input, key order ignored) for the change memory."""
    return hashlib.blake2b(endpoint.encode() + b"\x00" + orjson.dumps(dict(cleaned), option=orjson.OPT_SORT_KEYS),
                           digest_size=16).digest()


@dataclass(frozen=True)
class Anchor:
    value: float
    at: float  # clock seconds when the window opened


class ChangeLimiter:
    """Caps answers to ``anchor ± max_relative × |anchor|`` within ``window_seconds`` of an input's first answer."""

    def __init__(self, max_relative: float, window_seconds: float, *, capacity: int,
                 clock: Callable[[], float]) -> None:
        self.max_relative, self.window_seconds, self.capacity, self.clock = (max_relative, window_seconds, capacity,
                                                                             clock)
        self._anchors: OrderedDict[bytes, Anchor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._anchors)

    def limit(self, key: bytes, value: float) -> tuple[float, float | None]:
        """(the value to serve, the anchor it was capped against — None when it was not capped)."""
        now = self.clock()
        with self._lock:
            anchor = self._anchors.get(key)
            if anchor is None or now - anchor.at >= self.window_seconds:
                self._anchors[key] = Anchor(value, now)
                self._anchors.move_to_end(key)
                while len(self._anchors) > self.capacity:
                    self._anchors.popitem(last=False)
                return value, None
            self._anchors.move_to_end(key)
        margin = self.max_relative * abs(anchor.value)
        served = clamp(value, anchor.value - margin, anchor.value + margin)
        return (served, anchor.value) if served != value else (value, None)


@dataclass(frozen=True)
class Guarded:
    """One answer after the guard rails: the outputs to serve and what (if anything) was changed."""

    outputs: Mapping[str, Any]
    field: str
    raw: float
    served: float
    clamped: bool  # the output bounds moved it
    change_limited: bool  # the max-change rail moved it
    anchor: float | None = None

    def report(self, rails: GuardRails) -> dict[str, Any] | None:
        """What the response says about the guard rails (None when the answer went through untouched)."""
        if not (self.clamped or self.change_limited):
            return None
        out: dict[str, Any] = {"field": self.field, "raw": self.raw, "served": self.served,
                               "bounds": [rails.output_min, rails.output_max]}
        if self.change_limited:
            out.update(anchor=self.anchor, max_relative=rails.max_change_relative,
                       window_seconds=rails.max_change_window_seconds)
        return out


def guard(rails: GuardRails, outputs: Mapping[str, Any], *, limiter: ChangeLimiter | None = None,
          key: bytes | None = None, scale_related: bool = True) -> Guarded:
    """Apply the output bounds, then (when ``limiter`` and ``key`` are given) the max-change rail.

    Raises :class:`PredictionFailed` when the guarded field is missing or not a finite number: such an answer
    is never served, whatever the bounds.
    """
    name = rails.output_field
    raw = outputs.get(name)
    if not is_number(raw):
        raise PredictionFailed(f"the model answered {name}={raw!r}, not a finite number: not served",
                               details={"field": name})
    bounded = clamp(float(raw), rails.output_min, rails.output_max)
    served, anchor = (limiter.limit(key, bounded) if limiter is not None and key is not None else (bounded, None))
    clamped, limited = bounded != raw, anchor is not None
    result = dict(outputs)
    if served != raw:
        result[name] = served
        if scale_related and raw != 0:
            factor = served / raw
            for other, value in outputs.items():
                if other != name and is_number(value):
                    result[other] = round(value * factor, 2)
    return Guarded(result, name, float(raw), served, clamped, limited, anchor)
