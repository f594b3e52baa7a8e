"""Bad input of every kind the processing core refuses, each labelled with the exact reason it will give.

Every malformed record starts as a valid listing by a new user (``_base``) and is then broken one way;
``MALFORMED_REASONS`` is the order in which a plan cycles through them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from letgo.traffic.data import DESCRIPTIONS, MARKET_WEIGHTS, MARKETS, TEMPLATES
from letgo.traffic.marketplace import Marketplace
from letgo.traffic.model import Item, Unit, User
from letgo.traffic.wire import iso_z, render

# Reason codes of handlers.tracking.errors.Reason, in the order the malformed units cycle through them.
MALFORMED_REASONS = (
    "not_json", "invalid_utf8", "not_an_object", "missing_field", "unknown_event_type", "invalid_type",
    "out_of_range", "too_long", "record_too_large", "timestamp_in_future", "non_finite_number", "too_deep",
    "timestamp_too_old",
)
MAX_RECORD_BYTES = 1048576  # the consumer's default limits.max_record_bytes


@dataclass
class _Broken:
    """A valid ItemListed event about to be broken: its JSON object, its properties, the item and the user."""

    place: Marketplace
    obj: dict[str, Any]
    props: dict[str, Any]
    item: Item
    user: User
    epoch: float

    @property
    def key(self) -> str:
        return self.user.key


def malformed(place: Marketplace, reason: str, epoch: float) -> tuple[str, bytes]:
    """(partition key, record bytes) that the core refuses with ``reason``."""
    broken = _base(place, reason, epoch)
    if reason in _WHOLE_RECORD:
        return broken.key, _WHOLE_RECORD[reason](broken)
    if reason not in _EDITS:  # pragma: no cover - MALFORMED_REASONS and this module are kept in step
        raise ValueError(reason)
    _EDITS[reason](broken)
    return broken.key, orjson.dumps(broken.obj)


def _base(place: Marketplace, reason: str, epoch: float) -> _Broken:
    rng = place.rng
    market = rng.choices(MARKETS, MARKET_WEIGHTS)[0]
    if reason == "invalid_utf8":  # a title with non-ASCII letters, in Spanish
        market = MARKETS[0]
    user = place.new_user(market)
    template = rng.choice([t for t in TEMPLATES if not t.titles[market.language].isascii()]) \
        if reason == "invalid_utf8" else None
    item = place.new_item(market, user.user_id or user.key, epoch, template)
    props: dict[str, Any] = {
        "item_id": item.item_id, "seller_id": user.key, "title": item.title, "category": item.category,
        "price": item.price, "currency": market.currency, "location": {"lat": user.lat, "lon": user.lon},
        "city": user.city, "country": market.country, "language": market.language,
    }
    obj = render(place, Unit("ItemListed", epoch, props, user, False))
    return _Broken(place, obj, props, item, user, epoch)


# -- records broken as a whole (their bytes, not a field) ----------------------------------------------------
def _not_json(b: _Broken) -> bytes:
    """Cut off mid-object (a truncated write); cut on a character boundary."""
    text = orjson.dumps(b.obj).decode()
    return text[: b.place.rng.randint(20, len(text) // 2)].encode()


def _invalid_utf8(b: _Broken) -> bytes:
    """The title encoded as Latin-1 by a misbehaving client."""
    return orjson.dumps(b.obj).replace(b.item.title.encode(), b.item.title.encode("latin-1", "replace"))


def _not_an_object(b: _Broken) -> bytes:
    """Several events sent as a bare array instead of a batch object."""
    opened = render(b.place, Unit("AppOpened", b.epoch - 5, {"source": "background"}, b.user, False))
    return orjson.dumps([b.obj, opened])


def _non_finite_number(b: _Broken) -> bytes:
    b.props["price"] = "__NAN__"
    return orjson.dumps(b.obj).replace(b'"__NAN__"', b"NaN")


def _record_too_large(b: _Broken) -> bytes:
    """Over the consumer's limit once gunzipped: a description of repeated filler, compressed (built once per
    language: identical bytes are fine, a rejected record is never de-duplicated)."""
    language = b.props["language"]
    cached = b.place.too_large.get(language)
    if cached is not None:
        return cached
    b.props["description"] = "PLACEHOLDER"
    head, tail = orjson.dumps(b.obj).split(b"PLACEHOLDER")
    filler = (DESCRIPTIONS[language][0] + " ").encode()
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = filler * (65536 // len(filler))
    parts = [packer.compress(head)]
    written = len(head)
    while written <= MAX_RECORD_BYTES + 65536:
        parts.append(packer.compress(chunk))
        written += len(chunk)
    parts += [packer.compress(tail), packer.flush()]
    data = b.place.too_large[language] = b"".join(parts)
    return data


# -- one field broken ------------------------------------------------------------------------------------------
def _missing_field(b: _Broken) -> None:
    del b.obj["messageId"]


def _unknown_event_type(b: _Broken) -> None:
    b.obj["type"] = b.place.rng.choice(("ItemFavorited", "ItemShared", "ChatOpened", "ProfileViewed"))


def _invalid_type(b: _Broken) -> None:
    b.props["price"] = b.place.rng.choice(("abc", "12,50 €", "gratis", "n/a"))


def _out_of_range(b: _Broken) -> None:
    b.props["price"] = -b.item.price


def _too_long(b: _Broken) -> None:
    title = b.item.title
    b.props["title"] = ((title + " ") * (500 // (len(title) + 1)) + "x" * (500 % (len(title) + 1)))[:499] + "!"


def _timestamp_in_future(b: _Broken) -> None:
    b.obj["timestamp"] = iso_z(b.place.now + 2 * 86400 + b.place.rng.uniform(0, 3600))


def _timestamp_too_old(b: _Broken) -> None:
    b.obj["timestamp"] = iso_z(b.place.now - 40 * 86400 - b.place.rng.uniform(0, 3600))


def _too_deep(b: _Broken) -> None:
    nested: dict[str, Any] = {"a": "deep"}
    for _ in range(11):
        nested = {"a": nested}
    b.obj["context"] = {**b.obj["context"], "custom": nested}


_WHOLE_RECORD: dict[str, Callable[[_Broken], bytes]] = {
    "not_json": _not_json, "invalid_utf8": _invalid_utf8, "not_an_object": _not_an_object,
    "non_finite_number": _non_finite_number, "record_too_large": _record_too_large,
}
_EDITS: dict[str, Callable[[_Broken], None]] = {
    "missing_field": _missing_field, "unknown_event_type": _unknown_event_type, "invalid_type": _invalid_type,
    "out_of_range": _out_of_range, "too_long": _too_long, "timestamp_in_future": _timestamp_in_future,
    "timestamp_too_old": _timestamp_too_old, "too_deep": _too_deep,
}
