"""The definition's guard rails applied to each answer: plain functions over the outputs (no Flask, no S3).

What :class:`handlers.ml.definition_types.GuardRails` asks of the serving wrapper, and how it is done here:

* **Output bounds** (a numeric ``guard_rails.output``: ``min``/``max``): an answer outside is *clamped* to the
  nearest bound and the response says ``"clamped": true`` with the raw value. A value that is not a finite
  number is never served (:class:`~handlers.ml.serving.errors.PredictionFailed`).
* **Allowed answers and abstaining** (a categorical ``output``: ``values``; ``min_confidence``): a classifier's
  answer outside the declared values, or less confident than the minimum, is not served as an answer — the
  wrapper *abstains*: the field is ``null`` and the response says ``"abstained": true`` (the confidence and any
  other outputs stay, so the caller can show alternatives). Abstaining is the honest answer of a model that
  does not know; a wrong category filled in for the seller is worse than none.
* **Maximum change** (numeric only, ``max_change``: ``max_relative`` per ``window``): the answer for the same
  *normalised* input may move from what was last served by at most a factor ``1 + max_relative`` per window,
  sliding (:func:`handlers.ml.serving.memory.slew`), in a memory every serving process shares
  (:mod:`handlers.ml.serving.memory`). The input is normalised first (:func:`normalise_text`: Unicode NFKC,
  accents and case folded, punctuation dropped, whitespace collapsed) and only the model's *features* key it:
  ``"iPhone 13!"``, ``"IPHONE 13"`` and ``"iphone  13"`` in any currency are one input, so adding a "!" or
  changing case does not reset the limit. This is the per-input half of the rail; the population half (the
  median shift on the holdout) is a training gate (:func:`handlers.ml.training.shift_gate`).
* **Related outputs**: the guarded field is usually one number among several in the same unit (the price
  model answers the price in euros, in the local currency and a low/high range). When the guarded value is
  limited, the other numeric outputs are scaled by the same factor, so the answer stays coherent.
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from handlers.ml.definition_types import GuardRails
from handlers.ml.serving.errors import PredictionFailed

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def normalise_text(text: str) -> str:
    """What two spellings of one title share: NFKC, no accents, case-folded, words only, single spaces."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_NOT_WORD.sub(" ", plain).split())


def input_key(endpoint: str, cleaned: Mapping[str, Any], features: Sequence[str],
              text_features: Sequence[str] = ()) -> bytes:
    """The change memory's key of one request: the endpoint and the model's features only (inputs the model
    does not read, like the answer's currency, cannot tell two inputs apart), text features normalised."""
    parts = [endpoint]
    for name in sorted(features):
        value = cleaned.get(name)
        if name in text_features and isinstance(value, str):
            value = normalise_text(value)
        parts.append(f"{name}={value!r}")
    return hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True)
class Guarded:
    """One answer after the guard rails: the outputs to serve and what (if anything) was changed."""

    outputs: Mapping[str, Any]
    field: str
    raw: Any
    served: Any
    clamped: bool = False  # the output bounds moved it
    change_limited: bool = False  # the max-change rail moved it
    abstained: bool = False  # a classifier's answer withheld (not an allowed value, or not confident enough)
    why: str | None = None  # why it abstained

    def report(self, rails: GuardRails) -> dict[str, Any] | None:
        """What the response says about the guard rails (None when the answer went through untouched)."""
        if not (self.clamped or self.change_limited or self.abstained):
            return None
        out: dict[str, Any] = {"field": self.field, "raw": self.raw, "served": self.served}
        if rails.output_values is None:
            out["bounds"] = [rails.output_min, rails.output_max]
        if self.change_limited:
            out.update(max_relative=rails.max_change_relative, window_seconds=rails.max_change_window_seconds)
        if self.abstained:
            out["abstained_because"] = self.why
        return out


def guard_category(rails: GuardRails, outputs: Mapping[str, Any]) -> Guarded:
    """A classifier's answer: served when it is an allowed value and confident enough; else withheld."""
    name = rails.output_field
    raw = outputs.get(name)
    why = None
    if not isinstance(raw, str) or raw not in (rails.output_values or ()):
        why = f"{raw!r} is not one of the declared values of {name}"
    elif rails.min_confidence is not None:
        confidence = outputs.get(rails.min_confidence_field or "")
        if not is_number(confidence):
            raise PredictionFailed(f"the model answered {rails.min_confidence_field}={confidence!r}, not a finite "
                                   f"number: not served", details={"field": rails.min_confidence_field})
        if confidence < rails.min_confidence:
            why = f"confidence {confidence:.3g} is below the minimum {rails.min_confidence:g}"
    if why is None:
        return Guarded(dict(outputs), name, raw, raw)
    return Guarded({**outputs, name: None}, name, raw, None, abstained=True, why=why)


def guard(rails: GuardRails, outputs: Mapping[str, Any], *, limit: Any = None, scale_related: bool = True) -> Guarded:
    """Apply the output rail, then (numeric, when ``limit`` is given) the max-change rail.

    ``limit`` is a function of the bounded value returning the value to serve (the change memory's step for
    this request). Raises :class:`PredictionFailed` when a numeric guarded field is missing or not a finite
    number: such an answer is never served, whatever the bounds.
    """
    if rails.output_values is not None:
        return guard_category(rails, outputs)
    name = rails.output_field
    raw = outputs.get(name)
    if not is_number(raw):
        raise PredictionFailed(f"the model answered {name}={raw!r}, not a finite number: not served",
                               details={"field": name})
    bounded = clamp(float(raw), rails.output_min, rails.output_max)  # type: ignore[arg-type]
    served = float(limit(bounded)) if limit is not None else bounded
    clamped, limited = bounded != raw, served != bounded
    result = dict(outputs)
    if served != raw:
        result[name] = served
        if scale_related and raw != 0:
            factor = served / raw
            for other, value in outputs.items():
                if other != name and is_number(value):
                    result[other] = round(value * factor, 2)
    return Guarded(result, name, float(raw), served, clamped, limited)
