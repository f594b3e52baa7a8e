"""A listing's state as a merge of its events by version, so the order events arrive in does not matter.

Why: a listing's events do not share a shard. The seller's ``ItemListed`` is keyed by the seller, a
moderator's ``ItemDeleted`` by the moderator, a gzipped body by the request id — so a delete can arrive
before a late ``ItemListed``, an ``ItemUpdated`` before its listing, and a replay from the archive long
after both. Trusting arrival order revived sold ads and dropped updates. Instead every event carries a
**version** (:func:`event_version`: its timestamp in milliseconds, then a hash of its messageId as the
tie-break) and a listing's state is a merge that any order of the same events ends in:

* every field is last-writer-wins by version: ``ItemListed`` sets *all* fields of the ad (absent optional
  ones to their defaults, as a new listing is), ``ItemUpdated`` sets the fields it carries;
* ``listed`` / ``gone`` are the versions of the latest ``ItemListed`` and ``ItemSold``/``ItemDeleted``: the
  listing is live when it was listed after it was last sold or deleted. A sale or delete leaves a
  **tombstone** (the state with ``gone``), so an older ``ItemListed`` or ``ItemUpdated`` arriving later
  cannot revive it; a newer ``ItemListed`` (a re-listing) can;
* an update whose listing has not arrived stays a **partial** state (fields with their versions, no
  ``listed``) and is merged when the listing arrives.

That is exactly what applying the events one by one in version order gives (an update to a listing not
live at that moment is overwritten by the next ``ItemListed`` anyway): a property test delivers random
histories in every order, split into batches and replayed, on both engines, and compares with that fold.

Tombstones and partials are kept for :data:`DEFAULT_RETENTION_DAYS` after their last event (configurable;
it must exceed the stream's retention plus how far back anyone replays from the raw archive), then purged.

Pure values and functions: the engines store :meth:`ListingState.to_dict` and guard concurrent writers
their own way (:mod:`.backend`).
"""
from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

import orjson

from handlers.search.errors import InvalidAd
from handlers.search.model import Ad

TIEBREAK_BITS = 21  # ms << 21 fits a signed 64-bit version (OpenSearch's limit) until the year 2109
DEFAULT_RETENTION_DAYS = 30.0  # > 7 days of stream retention + 3 weeks of archive replays
LISTED, UPDATED, SOLD, DELETED = "ItemListed", "ItemUpdated", "ItemSold", "ItemDeleted"
LISTING_TYPES = frozenset({LISTED, UPDATED, SOLD, DELETED})

# What an ItemListed sets when a property is absent (what Ad.from_item_listed gives a new listing).
LISTED_DEFAULTS: dict[str, Any] = {"seller_id": "", "description": "", "condition": None, "city": None,
                                   "image_count": 0, "shipping_available": None}
LISTED_REQUIRED = ("title", "category", "price", "currency", "country", "language")
UPDATABLE = ("title", "description", "category", "price", "currency", "condition", "city", "country", "language",
             "image_count")


def epoch_seconds(timestamp: Any) -> float:
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return float(timestamp)
    return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()


def event_version(timestamp: Any, message_id: str) -> int:
    """The version of an event: its time in milliseconds, then a hash of its messageId (a deterministic tie-break
    between events of the same millisecond; the same event always gets the same version)."""
    ms = int(math.floor(epoch_seconds(timestamp) * 1000 + 0.5))
    tie = int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=4).digest(), "big")
    return (ms << TIEBREAK_BITS) | (tie & ((1 << TIEBREAK_BITS) - 1))


class Kind(str, enum.Enum):
    LISTED = "listed"
    UPDATED = "updated"
    GONE = "gone"  # sold or deleted


@dataclass(frozen=True, slots=True)
class Change:
    """One listing event reduced to what the state needs."""

    item_id: str
    kind: Kind
    version: int
    at: float  # the event's time, epoch seconds
    fields: Mapping[str, Any] = field(default_factory=dict)  # Ad field names -> values
    message_id: str = ""

    @classmethod
    def from_event(cls, event: Any) -> "Change":
        """From a validated listing event (``type``, ``timestamp``, ``message_id``, ``properties``).

        Raises :class:`InvalidAd` for an ``ItemListed`` that lacks what an ad needs."""
        properties = event.properties
        item_id = properties.get("item_id")
        at = epoch_seconds(event.timestamp)
        version = event_version(event.timestamp, event.message_id)
        if event.type in (SOLD, DELETED):
            return cls(item_id, Kind.GONE, version, at, {}, event.message_id)
        names = LISTED_REQUIRED + tuple(LISTED_DEFAULTS) if event.type == LISTED else UPDATABLE
        values = {name: properties[name] for name in names if name in properties}
        location = properties.get("location")
        if location is not None:
            values["lat"], values["lon"] = location.get("lat"), location.get("lon")
        if event.type == UPDATED:
            return cls(item_id, Kind.UPDATED, version, at, values, event.message_id)
        for name in LISTED_REQUIRED + ("lat",):
            if values.get(name) is None:
                raise InvalidAd(item_id, "location" if name == "lat" else name, "is required")
        values = {**LISTED_DEFAULTS, **values, "listed_at": at}
        return cls(item_id, Kind.LISTED, version, at, values, event.message_id)


def _newer(version: int, value: Any, current: list[Any] | None) -> bool:
    """Last writer wins; equal versions (the same event, or a tie-break collision) keep the larger value."""
    if current is None or version > current[1]:
        return True
    return version == current[1] and orjson.dumps(value) > orjson.dumps(current[0])


@dataclass(frozen=True, slots=True)
class ListingState:
    """What is known of one listing: fields with their versions, the latest listed / gone versions."""

    item_id: str
    fields: Mapping[str, list[Any]] = field(default_factory=dict)  # name -> [value, version]
    listed: int | None = None
    gone: int | None = None
    last_at: float = 0.0  # the latest event time merged: tombstones and partials expire from it
    placed: str | None = None  # engine bookkeeping: where its search document was written (an index alias)

    @property
    def version(self) -> int:
        """The highest version merged: the version of the search document derived from this state."""
        versions = [v for v in (self.listed, self.gone) if v is not None] + [v for _, v in self.fields.values()]
        return max(versions, default=0)

    @property
    def live(self) -> bool:
        return self.listed is not None and (self.gone is None or self.listed > self.gone)

    def merge(self, change: Change) -> "ListingState":
        fields = dict(self.fields)
        for name, value in change.fields.items():
            if _newer(change.version, value, fields.get(name)):
                fields[name] = [value, change.version]
        listed, gone = self.listed, self.gone
        if change.kind is Kind.LISTED and (listed is None or change.version > listed):
            listed = change.version
        if change.kind is Kind.GONE and (gone is None or change.version > gone):
            gone = change.version
        return ListingState(self.item_id, fields, listed, gone, max(self.last_at, change.at), self.placed)

    def merge_all(self, changes: Iterable[Change]) -> "ListingState":
        state = self
        for change in changes:
            state = state.merge(change)
        return state

    def same(self, other: "ListingState") -> bool:
        """Equal in everything the events decide (``placed`` is bookkeeping)."""
        return (self.fields, self.listed, self.gone, self.last_at) == (other.fields, other.listed, other.gone,
                                                                      other.last_at)

    def ad(self) -> Ad | None:
        """The searchable ad, or None (gone, or only partial). Raises :class:`InvalidAd` if the merge is unusable."""
        if not self.live:
            return None
        values = {name: value for name, (value, _) in self.fields.items()}
        return Ad.from_dict({**values, "item_id": self.item_id})

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "fields": {k: list(v) for k, v in self.fields.items()},
                "listed": self.listed, "gone": self.gone, "last_at": self.last_at, "placed": self.placed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ListingState":
        return cls(data["item_id"], {k: list(v) for k, v in (data.get("fields") or {}).items()}, data.get("listed"),
                   data.get("gone"), float(data.get("last_at") or 0.0), data.get("placed"))


def fold(changes: Iterable[Change], known: Mapping[str, ListingState] | None = None) -> dict[str, ListingState]:
    """Every listing's state after merging ``changes`` into what is ``known`` (any order gives the same)."""
    states: dict[str, ListingState] = dict(known or {})
    for change in changes:
        state = states.get(change.item_id) or ListingState(change.item_id)
        states[change.item_id] = state.merge(change)
    return states
