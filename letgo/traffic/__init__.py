"""Deterministic synthetic marketplace traffic for the local stage.

Why: the local stage (``letgo demo``) and the tests need a stream that looks like production - sellers in
real cities listing items in their own language and currency, buyers searching for those items, viewing
them and making offers, a few payloads straight from the unmodified Segment SDK, Segment batch records,
gzip-compressed records - *and* a known share of every kind of bad input, each labelled with the exact
reason the processing core gives it. Because every record says what should become of it, a run can be
checked end to end: ``sent == valid + duplicates + rejected`` and the rejections by reason must match.

Pure generation: no I/O, no clock, no global randomness. The same ``seed`` and ``now`` give the same
bytes, so a failing run can be replayed exactly (tests/unit/test_traffic.py pins them).

=================  ==================================================================================
``data``           the marketplace as plain tables: markets, item templates, descriptions, devices
``model``          units, records, the plan; users and listings
``marketplace``    the seeded random source, the clock, the live listings; new ids, listings, users
``sessions``       what a seller and a buyer do, as units in time order
``wire``           a unit as the platform's envelope or an unmodified Segment call; gzip
``malformed``      bad records of every reason the core gives
``plan``           :func:`generate`: sessions + malformed records + re-sends, sorted by arrival
=================  ==================================================================================
"""
from letgo.traffic.data import DESCRIPTIONS, MARKETS, TEMPLATES, Market, Template
from letgo.traffic.malformed import MALFORMED_REASONS
from letgo.traffic.model import TrafficPlan, TrafficRecord, Unit
from letgo.traffic.plan import WINDOW_SECONDS, generate

__all__ = ["DESCRIPTIONS", "MALFORMED_REASONS", "MARKETS", "Market", "TEMPLATES", "Template", "TrafficPlan",
           "TrafficRecord", "Unit", "WINDOW_SECONDS", "generate"]
