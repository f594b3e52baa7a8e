"""A plan: sessions rendered as records (single events, Segment batches, some gzipped), malformed records of
every reason at random places, exact re-sends of earlier records — sorted by when they reach the stream."""
from __future__ import annotations

from datetime import datetime

import orjson

from letgo.traffic.malformed import MALFORMED_REASONS, malformed
from letgo.traffic.marketplace import Marketplace
from letgo.traffic.model import TrafficPlan, TrafficRecord, Unit
from letgo.traffic.sessions import buyer_session, seller_session
from letgo.traffic.wire import gzip, iso_offset, render

WINDOW_SECONDS = 3600.0  # events are stamped within the last hour before ``now``

Keyed = list[tuple[float, int, TrafficRecord]]  # (arrival, insertion order, record): the sort key keeps ties stable
Singles = list[tuple[float, TrafficRecord]]  # valid single-event records: candidates for a duplicate re-send


def generate(n_events: int, *, seed: int = 7, now: datetime, malformed_share: float = 0.02,
             duplicate_share: float = 0.01, batch_share: float = 0.1, gzip_share: float = 0.05) -> TrafficPlan:
    """A plan of ``n_events`` input units (events and would-be events) spread over records.

    Every record says what the consumer should make of it; ``plan.sent == plan.expected_valid +
    plan.expected_duplicates + sum(plan.expected_rejected_by_reason.values())``.
    """
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    for name, share in (("malformed_share", malformed_share), ("duplicate_share", duplicate_share),
                        ("batch_share", batch_share), ("gzip_share", gzip_share)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be within [0, 1]")
    place = Marketplace(seed, now)
    n_malformed = round(n_events * malformed_share)
    n_duplicates = min(round(n_events * duplicate_share), n_events - n_malformed)
    keyed: Keyed = []
    singles: Singles = []
    _sessions(place, n_events - n_malformed - n_duplicates, batch_share, gzip_share, keyed, singles)
    _malformed(place, n_malformed, keyed)
    _duplicates(place, n_duplicates, singles, keyed)
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return TrafficPlan([record for _, _, record in keyed])


def _sessions(place: Marketplace, n_valid: int, batch_share: float, gzip_share: float, keyed: Keyed,
              singles: Singles) -> None:
    """1. Sessions until there are ``n_valid`` events; each session goes out as single records or as batches."""
    rng = place.rng
    produced = 0
    while produced < n_valid:
        start = rng.uniform(place.now - WINDOW_SECONDS, place.now - 600)
        session = seller_session(place, start) if rng.random() < 0.3 else buyer_session(place, start)
        session = session[: n_valid - produced]
        produced += len(session)
        if len(session) >= 2 and rng.random() < batch_share:
            _batches(place, session, gzip_share, keyed, singles)
        else:
            for unit in session:
                _single(place, unit, gzip_share, keyed, singles)


def _batches(place: Marketplace, session: list[Unit], gzip_share: float, keyed: Keyed, singles: Singles) -> None:
    """A session cut into Segment batch records of 2-20 events (a last event alone goes out single)."""
    rng = place.rng
    key = session[0].user.key
    i = 0
    while i < len(session):
        size = min(rng.randint(2, 20), len(session) - i)
        chunk = session[i:i + size]
        i += size
        if len(chunk) == 1:
            _single(place, chunk[0], gzip_share, keyed, singles)
            continue
        sent_at = chunk[-1].epoch + rng.uniform(0.5, 20)
        data = orjson.dumps({"batch": [render(place, u, in_batch=True) for u in chunk], "sentAt": iso_offset(sent_at)})
        if rng.random() < gzip_share:
            data = gzip(data)
        keyed.append((sent_at, len(keyed), TrafficRecord(key, data, len(chunk), {"valid": len(chunk)})))


def _single(place: Marketplace, unit: Unit, gzip_share: float, keyed: Keyed, singles: Singles) -> None:
    data = orjson.dumps(render(place, unit))
    if place.rng.random() < gzip_share:
        data = gzip(data)
    epoch = unit.epoch + place.rng.uniform(0.05, 3.0)
    record = TrafficRecord(unit.user.key, data, 1, {"valid": 1})
    keyed.append((epoch, len(keyed), record))
    singles.append((epoch, record))


def _malformed(place: Marketplace, n_malformed: int, keyed: Keyed) -> None:
    """2. Malformed units, round-robin over every reason, each its own record at a random place in the stream."""
    for i in range(n_malformed):
        epoch = place.rng.uniform(place.now - WINDOW_SECONDS, place.now)
        reason = MALFORMED_REASONS[i % len(MALFORMED_REASONS)]
        key, data = malformed(place, reason, epoch)
        keyed.append((epoch, len(keyed), TrafficRecord(key, data, 1, {f"rejected:{reason}": 1})))


def _duplicates(place: Marketplace, n_duplicates: int, singles: Singles, keyed: Keyed) -> None:
    """3. Exact re-sends of earlier valid single-event records: half right behind the original, half far later."""
    rng = place.rng
    for i, (epoch, original) in enumerate(rng.sample(singles, min(n_duplicates, len(singles)))):
        later = rng.uniform(0.001, 2.0) if i % 2 == 0 else rng.uniform(600, 3600)
        keyed.append((epoch + later, len(keyed),
                      TrafficRecord(original.partition_key, original.data, 1, {"duplicate": 1})))
