"""The marketplace's state during one generation: the seeded random source, the clock, the live listings,
and how new ids, listings and users are drawn. Every draw goes through ``rng`` in a fixed order."""
from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timezone
from typing import Any

from letgo.traffic.data import (APP_BUILDS, APP_VERSIONS, DEVICES, IP_FIRST_OCTETS, MARKET_WEIGHTS, MARKETS,
                                MOBILE_LIBRARY, OS_VERSIONS, SEGMENT_LIBRARY, TEMPLATES, Market, Template)
from letgo.traffic.model import Item, User

LISTINGS_PER_MARKET = 60  # listings already live before the window, per market


class Marketplace:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        self.now = now.timestamp()
        self.pool: dict[str, list[Item]] = {m.country: [] for m in MARKETS}
        self.by_category: dict[tuple[str, str], list[Item]] = {}
        self.too_large: dict[str, bytes] = {}  # language -> compressed filler record (costly: built once)
        for market in MARKETS:
            for _ in range(LISTINGS_PER_MARKET):
                self.publish(self.new_item(market, self.ident("usr"), self.now - self.rng.uniform(86400, 60 * 86400)))

    def publish(self, item: Item) -> None:
        self.pool[item.market.country].append(item)
        self.by_category.setdefault((item.market.country, item.category), []).append(item)

    # -- ids ---------------------------------------------------------------------------------------------------
    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 4):0{n}x}"

    def ident(self, prefix: str) -> str:
        return f"{prefix}_{self.hex(12)}"

    def uuid4(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def message_id(self) -> str:
        return self.uuid4()

    # -- listings ----------------------------------------------------------------------------------------------
    def price(self, low: float, high: float, market: Market) -> float:
        value = math.exp(self.rng.uniform(math.log(low), math.log(high))) * market.eur_rate
        step = 50 if value >= 2000 else 5 if value >= 100 else 1
        return float(max(step, round(value / step) * step))

    def new_item(self, market: Market, seller_id: str, epoch: float, template: Template | None = None) -> Item:
        rng = self.rng
        template = template or rng.choice(TEMPLATES)
        title = template.titles[market.language].format(brand=rng.choice(template.brands))
        if template.category == "cars":
            title = f"{title} {rng.randint(2012, 2022)}"
        return Item(self.ident("itm"), seller_id, title, template.category,
                    self.price(*template.price_eur, market), market, epoch)

    # -- users -------------------------------------------------------------------------------------------------
    def new_user(self, market: Market | None = None, logged_in: bool = True) -> User:
        rng = self.rng
        market = market or rng.choices(MARKETS, MARKET_WEIGHTS)[0]
        city, lat, lon = rng.choice(market.cities)
        lat = round(lat + rng.gauss(0, 0.025), 5)  # a few km around the centre
        lon = round(lon + rng.gauss(0, 0.035), 5)
        context = self._app_context(market, city, lat, lon)
        segment_context = {**context, "library": SEGMENT_LIBRARY}
        user_id = self.ident("usr") if logged_in else None
        anonymous_id = None if logged_in else self.uuid4()
        return User(user_id or anonymous_id or "", user_id, anonymous_id, market, city, lat, lon, context,
                    segment_context)

    def _app_context(self, market: Market, city: str, lat: float, lon: float) -> dict[str, Any]:
        """The context a mobile app's Segment library sends: app, OS, device, network, locale, IP, location."""
        rng = self.rng
        os_name = "iOS" if rng.random() < 0.45 else "Android"
        manufacturer, model = rng.choice(DEVICES[os_name])
        version = rng.choice(APP_VERSIONS)
        device_id = self.uuid4().upper() if os_name == "iOS" else self.hex(16)
        return {
            "app": {"name": "letgo", "version": version, "build": APP_BUILDS[version],
                    "namespace": "com.letgo.ar" if os_name == "iOS" else "com.abtnprojects.ambatana"},
            "os": {"name": os_name, "version": rng.choice(OS_VERSIONS[os_name])},
            "device": {"id": device_id, "manufacturer": manufacturer, "model": model, "type": os_name.lower()},
            "network": {"wifi": rng.random() < 0.6, "carrier": rng.choice(market.carriers)},
            "locale": market.locale, "timezone": market.timezone,
            "ip": f"{rng.choice(IP_FIRST_OCTETS)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "location": {"city": city, "country": market.country_name, "latitude": lat, "longitude": lon},
            "library": MOBILE_LIBRARY[os_name],
        }
