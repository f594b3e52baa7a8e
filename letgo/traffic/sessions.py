"""Sessions: what a seller and a buyer do in the app, as units in time order.

A session is a user and a clock: each unit is stamped with the clock, which then moves on by a random gap
(``Session.add``). Sellers open the app (and sign up), list items, lower a price, sell or delete; buyers search,
view results and contact sellers.
"""
from __future__ import annotations

import unicodedata
from typing import Any

from letgo.traffic.data import DESCRIPTIONS, STOP_WORDS
from letgo.traffic.marketplace import Marketplace
from letgo.traffic.model import Item, Unit, User
from letgo.traffic.wire import iso_z


class Session:
    def __init__(self, place: Marketplace, user: User, start: float, gap: tuple[float, float], *,
                 segment_allowed: bool = True) -> None:
        self.place, self.user, self.t, self.gap = place, user, start, gap
        self.segment_allowed = segment_allowed  # logged-out visitors' units always use the platform envelope
        self.units: list[Unit] = []

    def add(self, kind: str, props: dict[str, Any], segment: bool = False) -> None:
        self.units.append(Unit(kind, self.t, props, self.user, segment and self.segment_allowed))
        self.t += self.place.rng.uniform(*self.gap)


# -- sellers -----------------------------------------------------------------------------------------------
def seller_session(place: Marketplace, start: float) -> list[Unit]:
    rng = place.rng
    new = rng.random() < 0.25
    session = Session(place, place.new_user(), start, (3, 45))
    user = session.user
    assert user.user_id is not None
    session.add("AppOpened", {"source": "cold_start", "first_open": True} if new else
                {"source": rng.choice(("cold_start", "background", "push", "deeplink"))})
    if new:
        _sign_up(session)
    own: list[Item] = [] if new else [place.new_item(user.market, user.user_id, place.now - rng.uniform(2, 90) * 86400)
                                      for _ in range(rng.randint(1, 3))]
    for _ in range(rng.choices((1, 2, 3), (0.65, 0.25, 0.1))[0]):
        _list_item(session)
    _manage_own_items(session, own)
    return session.units


def _sign_up(session: Session) -> None:
    rng, market = session.place.rng, session.user.market
    first, last = rng.choice(market.first_names), rng.choice(market.last_names)
    local = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace(" ", "").replace("ı", "i"))
    email = f"{local.encode('ascii', 'ignore').decode()}{rng.randint(1, 99)}@{rng.choice(market.email_domains)}"
    session.add("UserSignedUp", {"method": rng.choice(("email", "google", "facebook", "apple", "phone")),
                                 "email": email, "country": market.country, "language": market.language,
                                 "marketing_opt_in": rng.random() < 0.4})
    session.add("Identify", {"email": email, "name": f"{first} {last}", "country": market.country,
                             "language": market.language, "created_at": iso_z(session.t)}, True)


def _list_item(session: Session) -> None:
    rng, user = session.place.rng, session.user
    market = user.market
    assert user.user_id is not None
    if rng.random() < 0.2:
        session.add("Screen", {"name": "Sell"}, True)
    item = session.place.new_item(market, user.user_id, session.t)
    lat = round(user.lat + rng.gauss(0, 0.005), 5)
    lon = round(user.lon + rng.gauss(0, 0.005), 5)
    props: dict[str, Any] = {
        "item_id": item.item_id, "seller_id": user.user_id, "title": item.title,
        "category": item.category, "price": item.price, "currency": market.currency,
        "condition": rng.choice(("new", "like_new", "good", "good", "fair")),
        "location": {"lat": lat, "lon": lon}, "city": user.city, "country": market.country,
        "language": market.language, "image_count": rng.randint(1, 12),
        "shipping_available": rng.random() < 0.5,
    }
    if rng.random() < 0.7:
        props["description"] = " ".join(rng.sample(DESCRIPTIONS[market.language], 2))
    session.add("ItemListed", props)
    session.place.publish(item)


def _manage_own_items(session: Session, own: list[Item]) -> None:
    """Items listed before the session: a lower price, a sale, a deletion (each draw only while some are left)."""
    rng, user = session.place.rng, session.user
    currency = user.market.currency
    if own and rng.random() < 0.35:
        item = rng.choice(own)
        new_price = float(max(1, round(item.price * rng.uniform(0.75, 0.95))))
        session.add("ItemUpdated", {"item_id": item.item_id, "seller_id": user.user_id, "price": new_price,
                                    "previous_price": item.price, "currency": currency})
        item.price = new_price
    if own and rng.random() < 0.2:
        item = own.pop(rng.randrange(len(own)))
        session.add("ItemSold", {"item_id": item.item_id, "seller_id": user.user_id,
                                 "buyer_id": session.place.ident("usr"), "category": item.category,
                                 "sold_price": item.price, "currency": currency,
                                 "days_listed": round((session.t - item.listed_epoch) / 86400, 1)})
    if own and rng.random() < 0.12:
        item = own.pop(rng.randrange(len(own)))
        session.add("ItemDeleted", {"item_id": item.item_id, "seller_id": user.user_id,
                                    "reason": rng.choice(("sold_elsewhere", "no_longer_available", "expired",
                                                          "other"))})


# -- buyers ------------------------------------------------------------------------------------------------
def buyer_session(place: Marketplace, start: float) -> list[Unit]:
    rng = place.rng
    user = place.new_user(logged_in=rng.random() < 0.8)
    logged_in = user.user_id is not None
    session = Session(place, user, start, (2, 40), segment_allowed=logged_in)
    pool = place.pool[user.market.country]
    session.add("AppOpened", {"source": rng.choice(("cold_start", "cold_start", "background", "push", "deeplink"))})
    if logged_in and rng.random() < 0.5:
        session.add("Screen", {"name": "Home"}, True)
    for _ in range(rng.choices((1, 2, 3), (0.55, 0.3, 0.15))[0]):
        _search_and_view(session, rng.choice(pool))
    if rng.random() < 0.25:
        item = rng.choice(pool)
        session.add("ItemViewed", {"item_id": item.item_id, "seller_id": item.seller_id, "category": item.category,
                                   "price": item.price, "currency": user.market.currency,
                                   "source": rng.choice(("feed", "notification", "share", "profile"))})
    return session.units


def _search_and_view(session: Session, wanted: Item) -> None:
    """A search for something like ``wanted``, then a few of its results viewed, some contacted."""
    rng, market = session.place.rng, session.user.market
    matches = session.place.by_category[(market.country, wanted.category)][-40:]
    search_id, results = _search(session, wanted, matches)
    if results == 0 or not matches:
        return
    for position, item in enumerate(rng.sample(matches, min(len(matches), rng.randint(1, 3)))):
        session.add("ItemViewed", {"item_id": item.item_id, "seller_id": item.seller_id, "category": item.category,
                                   "price": item.price, "currency": market.currency, "source": "search",
                                   "position": position + rng.randint(0, 8), "search_id": search_id})
        if rng.random() < 0.3:
            _lead(session, item)


def _search(session: Session, wanted: Item, matches: list[Item]) -> tuple[str, int]:
    rng, user = session.place.rng, session.user
    words = [w for w in wanted.title.lower().split() if len(w) > 2 and w not in STOP_WORDS]
    query = " ".join(rng.sample(words, min(len(words), rng.randint(1, 2)))) if words else ""
    results = 0 if rng.random() < 0.08 else rng.randint(len(matches), len(matches) + 240)
    search_id = session.place.ident("srch")
    props: dict[str, Any] = {"search_id": search_id, "query": query, "language": user.market.language,
                             "results_count": results, "page": 0}
    if rng.random() < 0.5:
        props["category"] = wanted.category
    if rng.random() < 0.6:
        props["location"] = {"lat": user.lat, "lon": user.lon}
        props["max_distance_km"] = rng.choice((5, 10, 25, 50, 100))
    if rng.random() < 0.3:
        props["filters"] = {"max_price": float(round(wanted.price * 1.3)),
                            "condition": rng.sample(["new", "like_new", "good"], rng.randint(1, 2)),
                            "shipping_available": rng.random() < 0.5}
    session.add("Search", props)
    return search_id, results


def _lead(session: Session, item: Item) -> None:
    rng = session.place.rng
    channel = rng.choices(("chat", "offer", "call"), (0.6, 0.3, 0.1))[0]
    lead: dict[str, Any] = {"item_id": item.item_id, "seller_id": item.seller_id, "category": item.category,
                            "channel": channel, "price": item.price, "currency": session.user.market.currency,
                            "conversation_id": session.place.ident("conv")}
    if channel == "offer":
        lead["offer_amount"] = float(max(1, round(item.price * rng.uniform(0.65, 0.95))))
    if channel != "call":
        lead["message_length"] = rng.randint(8, 280)
    session.add("Lead", lead, rng.random() < 0.35)
