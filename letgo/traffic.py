"""Deterministic synthetic marketplace traffic for the local stage.

Why: the local stage (``letgo demo``) and the tests need a stream that looks like production - sellers in
real cities listing items in their own language and currency, buyers searching for those items, viewing
them and making offers, a few payloads straight from the unmodified Segment SDK, Segment batch records,
gzip-compressed records - *and* a known share of every kind of bad input, each labelled with the exact
reason the processing core gives it. Because every record says what should become of it, a run can be
checked end to end: ``sent == valid + duplicates + rejected`` and the rejections by reason must match.

Pure generation: no I/O, no clock, no global randomness. The same ``seed`` and ``now`` give the same
bytes, so a failing run can be replayed exactly.
"""
from __future__ import annotations

import math
import random
import unicodedata
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

_UTC = timezone.utc
WINDOW_SECONDS = 3600.0  # events are stamped within the last hour before ``now``
SEGMENT_LIBRARY = {"name": "analytics-python", "version": "2.4.0"}
APP_VERSIONS = ("4.12.0", "4.12.3", "4.13.1", "4.14.0")
APP_BUILDS = {"4.12.0": "41200", "4.12.3": "41203", "4.13.1": "41301", "4.14.0": "41400"}

# Reason codes of handlers.tracking.errors.Reason, in the order the malformed units cycle through them.
MALFORMED_REASONS = (
    "not_json", "invalid_utf8", "not_an_object", "missing_field", "unknown_event_type", "invalid_type",
    "out_of_range", "too_long", "record_too_large", "timestamp_in_future", "non_finite_number", "too_deep",
    "timestamp_too_old",
)
MAX_RECORD_BYTES = 1048576  # the consumer's default limits.max_record_bytes


# -- the marketplace ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Market:
    country: str  # ISO 3166-1 alpha-2
    country_name: str
    language: str
    locale: str
    currency: str
    eur_rate: float  # local currency units per euro
    timezone: str
    carriers: tuple[str, ...]
    cities: tuple[tuple[str, float, float], ...]  # (name, lat, lon)
    email_domains: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    weight: float


MARKETS: tuple[Market, ...] = (
    Market("ES", "Spain", "es", "es-ES", "EUR", 1.0, "Europe/Madrid", ("Movistar", "Vodafone ES", "Orange"),
           (("Madrid", 40.4168, -3.7038), ("Barcelona", 41.3874, 2.1686), ("Valencia", 39.4699, -0.3763),
            ("Sevilla", 37.3891, -5.9845)),
           ("gmail.com", "hotmail.es", "yahoo.es"),
           ("Lucía", "Javier", "María", "Pablo", "Carmen", "Alejandro", "Laura", "Sergio"),
           ("García", "Martínez", "López", "Sánchez", "Romero", "Navarro"), 0.34),
    Market("NL", "Netherlands", "nl", "nl-NL", "EUR", 1.0, "Europe/Amsterdam", ("KPN", "Vodafone NL", "Odido"),
           (("Amsterdam", 52.3676, 4.9041), ("Rotterdam", 51.9244, 4.4777), ("Utrecht", 52.0907, 5.1214)),
           ("gmail.com", "ziggo.nl", "outlook.com"),
           ("Daan", "Sanne", "Lars", "Emma", "Bram", "Fleur", "Thijs", "Lotte"),
           ("de Vries", "Jansen", "van Dijk", "Bakker", "Visser", "Smit"), 0.2),
    Market("GB", "United Kingdom", "en", "en-GB", "GBP", 0.86, "Europe/London", ("EE", "Vodafone UK", "O2"),
           (("London", 51.5072, -0.1276), ("Manchester", 53.4808, -2.2426)),
           ("gmail.com", "outlook.com", "btinternet.com"),
           ("Oliver", "Amelia", "George", "Isla", "Harry", "Sophie", "Jack", "Grace"),
           ("Smith", "Jones", "Taylor", "Brown", "Evans", "Wilson"), 0.22),
    Market("TR", "Türkiye", "tr", "tr-TR", "TRY", 35.0, "Europe/Istanbul", ("Turkcell", "Vodafone TR"),
           (("Istanbul", 41.0082, 28.9784),),
           ("gmail.com", "hotmail.com"),
           ("Mehmet", "Ayşe", "Emre", "Zeynep", "Burak", "Elif"),
           ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik"), 0.14),
    Market("PT", "Portugal", "pt", "pt-PT", "EUR", 1.0, "Europe/Lisbon", ("MEO", "NOS", "Vodafone PT"),
           (("Lisbon", 38.7223, -9.1393),),
           ("gmail.com", "sapo.pt"),
           ("João", "Beatriz", "Tiago", "Inês", "Rui", "Mariana"),
           ("Silva", "Santos", "Ferreira", "Costa", "Oliveira"), 0.1),
)
_MARKET_WEIGHTS = [m.weight for m in MARKETS]


@dataclass(frozen=True)
class Template:
    category: str
    titles: dict[str, str]  # language -> title with {brand}
    brands: tuple[str, ...]
    price_eur: tuple[float, float]


def _t(category: str, brands: tuple[str, ...], low: float, high: float, es: str, nl: str, en: str, tr: str,
       pt: str) -> Template:
    return Template(category, {"es": es, "nl": nl, "en": en, "tr": tr, "pt": pt}, brands, (low, high))


TEMPLATES: tuple[Template, ...] = (
    _t("bikes", ("Trek", "Specialized", "Giant", "Orbea", "Cube"), 150, 1500,
       "Bicicleta de montaña {brand}", "Mountainbike {brand}", "{brand} mountain bike", "{brand} dağ bisikleti",
       "Bicicleta de montanha {brand}"),
    _t("bikes", ("Gazelle", "Batavus", "Cortina", "Sparta"), 60, 700,
       "Bicicleta de paseo {brand}", "Stadsfiets {brand}", "{brand} city bike", "{brand} şehir bisikleti",
       "Bicicleta de cidade {brand}"),
    _t("phones", ("11 64GB", "12 128GB", "13 128GB", "14 Pro 256GB", "15 128GB"), 180, 950,
       "iPhone {brand} como nuevo", "iPhone {brand} zo goed als nieuw", "iPhone {brand} like new",
       "iPhone {brand} temiz", "iPhone {brand} como novo"),
    _t("phones", ("S21 128GB", "S22 256GB", "A54 128GB", "S23 Ultra 256GB"), 120, 800,
       "Samsung Galaxy {brand} libre", "Samsung Galaxy {brand} simlockvrij", "Samsung Galaxy {brand} unlocked",
       "Samsung Galaxy {brand} kutulu", "Samsung Galaxy {brand} desbloqueado"),
    _t("furniture", ("IKEA", "Kave Home", "Maisons du Monde"), 60, 700,
       "Sofá de 3 plazas {brand}", "Driezitsbank {brand}", "{brand} 3-seater sofa", "{brand} üçlü koltuk",
       "Sofá de 3 lugares {brand}"),
    _t("furniture", ("IKEA", "Kave Home", "Habitat"), 40, 450,
       "Mesa de comedor extensible {brand}", "Uitschuifbare eettafel {brand}", "{brand} extendable dining table",
       "{brand} açılır yemek masası", "Mesa de jantar extensível {brand}"),
    _t("furniture", ("IKEA", "Herman Miller", "Flexispot"), 25, 600,
       "Silla de escritorio {brand}", "Bureaustoel {brand}", "{brand} office chair", "{brand} ofis sandalyesi",
       "Cadeira de escritório {brand}"),
    _t("games_consoles", ("PlayStation 5", "Nintendo Switch OLED", "Xbox Series X"), 180, 480,
       "{brand} con 2 mandos", "{brand} met 2 controllers", "{brand} with 2 controllers", "{brand} 2 kollu",
       "{brand} com 2 comandos"),
    _t("electronics", ("Samsung", "LG", "Sony"), 150, 750,
       "Televisor {brand} 55 pulgadas 4K", "{brand} 55 inch 4K televisie", "{brand} 55 inch 4K TV",
       "{brand} 55 inç 4K televizyon", "Televisão {brand} 55 polegadas 4K"),
    _t("electronics", ("Sony WH-1000XM4", "Bose QC45", "AirPods Pro"), 70, 260,
       "Auriculares {brand}", "{brand} koptelefoon", "{brand} headphones", "{brand} kulaklık",
       "Auscultadores {brand}"),
    _t("computers", ("MacBook Air M1", "MacBook Pro M2", "Lenovo ThinkPad T480", "Dell XPS 13"), 250, 1400,
       "Portátil {brand}", "{brand} laptop", "{brand} laptop", "{brand} dizüstü bilgisayar", "Portátil {brand}"),
    _t("cars", ("Volkswagen Golf 1.6 TDI", "Seat Ibiza 1.0 TSI", "Toyota Corolla Hybrid", "Renault Clio dCi"),
       3500, 24000,
       "{brand} pocos kilómetros", "{brand} weinig kilometers", "{brand} low mileage", "{brand} az kilometrede",
       "{brand} poucos quilómetros"),
    _t("motorbikes", ("Honda PCX 125", "Yamaha MT-07", "Vespa Primavera 125"), 1200, 6500,
       "Moto {brand} con ITV", "Motor {brand} met APK", "{brand} motorbike with MOT", "{brand} motosiklet",
       "Mota {brand} com inspeção"),
    _t("fashion", ("Zara", "Mango", "Massimo Dutti"), 15, 120,
       "Chaqueta de cuero {brand} talla M", "Leren jas {brand} maat M", "{brand} leather jacket size M",
       "{brand} deri ceket M beden", "Casaco de pele {brand} tamanho M"),
    _t("fashion", ("Nike Air Max", "Adidas Samba", "New Balance 574"), 25, 130,
       "Zapatillas {brand} talla 42", "{brand} sneakers maat 42", "{brand} trainers size 8",
       "{brand} spor ayakkabı 42 numara", "Sapatilhas {brand} tamanho 42"),
    _t("baby_kids", ("Bugaboo Fox", "Joolz Day", "Cybex Priam"), 150, 850,
       "Carrito de bebé {brand}", "Kinderwagen {brand}", "{brand} pushchair", "{brand} bebek arabası",
       "Carrinho de bebé {brand}"),
    _t("sports_leisure", ("Decathlon", "Torq", "NSP"), 80, 420,
       "Tabla de surf {brand} 6'2", "Surfplank {brand} 6'2", "{brand} surfboard 6'2", "{brand} sörf tahtası",
       "Prancha de surf {brand} 6'2"),
    _t("home_garden", ("Bosch", "Einhell", "Makita"), 50, 320,
       "Cortacésped {brand}", "Grasmaaier {brand}", "{brand} lawn mower", "{brand} çim biçme makinesi",
       "Corta-relva {brand}"),
    _t("books_music", ("Yamaha", "Fender", "Casio"), 60, 900,
       "Guitarra {brand}", "Gitaar {brand}", "{brand} guitar", "{brand} gitar", "Guitarra {brand}"),
)

DESCRIPTIONS = {
    "es": ("En perfecto estado, apenas usado.", "Entrego en mano en el centro.", "Precio negociable.",
           "Con factura y caja original."),
    "nl": ("In perfecte staat, nauwelijks gebruikt.", "Ophalen in het centrum.", "Prijs is bespreekbaar.",
           "Met bon en originele doos."),
    "en": ("Excellent condition, barely used.", "Collection only from the city centre.", "Open to offers.",
           "Comes with receipt and original box."),
    "tr": ("Çok temiz, az kullanıldı.", "Elden teslim.", "Pazarlık payı var.", "Faturası ve kutusu mevcut."),
    "pt": ("Em perfeito estado, pouco usado.", "Entrego em mão no centro.", "Preço negociável.",
           "Com fatura e caixa original."),
}
_STOP_WORDS = frozenset({"de", "con", "met", "with", "size", "talla", "maat", "tamanho", "com", "como", "new",
                         "nieuw", "zo", "goed", "als", "like", "pocos", "weinig", "low", "az", "the", "libre"})
DEVICES = {
    "iOS": (("Apple", "iPhone12,1"), ("Apple", "iPhone14,5"), ("Apple", "iPhone15,2"), ("Apple", "iPhone16,1")),
    "Android": (("samsung", "SM-G991B"), ("samsung", "SM-A546B"), ("Xiaomi", "2201117TG"), ("Google", "Pixel 7"),
                ("OnePlus", "CPH2449")),
}
OS_VERSIONS = {"iOS": ("16.7.2", "17.4.1", "17.5.1"), "Android": ("12", "13", "14")}
MOBILE_LIBRARY = {"iOS": {"name": "analytics-ios", "version": "4.1.8"},
                  "Android": {"name": "analytics-android", "version": "4.11.3"}}
SCREENS = ("Home", "Search", "ItemDetail", "Chat", "Profile", "Sell")


# -- public types ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One event before rendering: what happened, when, to whom, and in which wire format."""

    event_type: str
    epoch: float
    properties: dict[str, Any]
    user: _User
    segment: bool  # render as an unmodified Segment SDK call instead of the platform envelope


@dataclass(frozen=True)
class TrafficRecord:
    """One Kinesis record and what the consumer must make of it."""

    partition_key: str
    data: bytes  # exactly the bytes to put on the stream
    units: int  # input units it carries: events of a Segment batch, 1 otherwise
    expected: dict[str, int]  # {"valid": n} | {"duplicate": 1} | {"rejected:<reason>": 1}


@dataclass
class TrafficPlan:
    records: list[TrafficRecord] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(r.units for r in self.records)

    @property
    def expected_valid(self) -> int:
        return sum(r.expected.get("valid", 0) for r in self.records)

    @property
    def expected_duplicates(self) -> int:
        return sum(r.expected.get("duplicate", 0) for r in self.records)

    @property
    def expected_rejected_by_reason(self) -> dict[str, int]:
        """Reason code (as ``Reason.value``) -> count."""
        counts: Counter[str] = Counter()
        for record in self.records:
            for key, n in record.expected.items():
                if key.startswith("rejected:"):
                    counts[key[len("rejected:"):]] += n
        return dict(sorted(counts.items()))


# -- generation --------------------------------------------------------------------------------------------
@dataclass
class _User:
    key: str  # partition key: userId, or anonymousId for a logged-out visitor
    user_id: str | None
    anonymous_id: str | None
    market: Market
    city: str
    lat: float
    lon: float
    context: dict[str, Any]
    segment_context: dict[str, Any]


@dataclass
class _Item:
    item_id: str
    seller_id: str
    title: str
    category: str
    price: float
    market: Market
    listed_epoch: float


def _iso_z(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, _UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_offset(epoch: float) -> str:
    """Segment analytics-python: ``datetime.isoformat()`` - microseconds and ``+00:00``."""
    return datetime.fromtimestamp(epoch, _UTC).isoformat(timespec="microseconds")


def _gzip(data: bytes) -> bytes:
    """gzip with a zero mtime (deterministic bytes), as the consumer accepts it."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


class _Generator:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        if now.tzinfo is None:
            now = now.replace(tzinfo=_UTC)
        self.now = now.timestamp()
        self.pool: dict[str, list[_Item]] = {m.country: [] for m in MARKETS}
        self.by_category: dict[tuple[str, str], list[_Item]] = {}
        self.too_large: dict[str, bytes] = {}  # language -> compressed filler record (costly: built once)
        for market in MARKETS:  # listings already live before the window
            for _ in range(60):
                self.publish(self._new_item(market, self._ident("usr"), self.now - self.rng.uniform(86400, 60 * 86400)))

    def publish(self, item: _Item) -> None:
        self.pool[item.market.country].append(item)
        self.by_category.setdefault((item.market.country, item.category), []).append(item)

    # ids
    def _hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 4):0{n}x}"

    def _ident(self, prefix: str) -> str:
        return f"{prefix}_{self._hex(12)}"

    def message_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # catalogue
    def _price(self, low: float, high: float, market: Market) -> float:
        value = math.exp(self.rng.uniform(math.log(low), math.log(high))) * market.eur_rate
        step = 50 if value >= 2000 else 5 if value >= 100 else 1
        return float(max(step, round(value / step) * step))

    def _new_item(self, market: Market, seller_id: str, epoch: float, template: Template | None = None) -> _Item:
        rng = self.rng
        template = template or rng.choice(TEMPLATES)
        title = template.titles[market.language].format(brand=rng.choice(template.brands))
        if template.category == "cars":
            title = f"{title} {rng.randint(2012, 2022)}"
        return _Item(self._ident("itm"), seller_id, title, template.category,
                     self._price(*template.price_eur, market), market, epoch)

    def new_user(self, market: Market | None = None, logged_in: bool = True) -> _User:
        rng = self.rng
        market = market or rng.choices(MARKETS, _MARKET_WEIGHTS)[0]
        city, lat, lon = rng.choice(market.cities)
        lat = round(lat + rng.gauss(0, 0.025), 5)  # a few km around the centre
        lon = round(lon + rng.gauss(0, 0.035), 5)
        os_name = "iOS" if rng.random() < 0.45 else "Android"
        manufacturer, model = rng.choice(DEVICES[os_name])
        version = rng.choice(APP_VERSIONS)
        device_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() if os_name == "iOS" else self._hex(16)
        context: dict[str, Any] = {
            "app": {"name": "letgo", "version": version, "build": APP_BUILDS[version],
                    "namespace": "com.letgo.ar" if os_name == "iOS" else "com.abtnprojects.ambatana"},
            "os": {"name": os_name, "version": rng.choice(OS_VERSIONS[os_name])},
            "device": {"id": device_id, "manufacturer": manufacturer, "model": model, "type": os_name.lower()},
            "network": {"wifi": rng.random() < 0.6, "carrier": rng.choice(market.carriers)},
            "locale": market.locale, "timezone": market.timezone,
            "ip": f"{rng.choice((31, 37, 46, 77, 81, 88, 92, 151, 176, 213))}.{rng.randint(0, 255)}."
                  f"{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "location": {"city": city, "country": market.country_name, "latitude": lat, "longitude": lon},
            "library": MOBILE_LIBRARY[os_name],
        }
        segment_context = {**context, "library": SEGMENT_LIBRARY}
        user_id = self._ident("usr") if logged_in else None
        anonymous_id = None if logged_in else str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return _User(user_id or anonymous_id or "", user_id, anonymous_id, market, city, lat, lon, context,
                     segment_context)

    # sessions
    def seller_session(self, start: float) -> list[Unit]:
        rng = self.rng
        new = rng.random() < 0.25
        user = self.new_user()
        market = user.market
        t = start
        units: list[Unit] = []

        def add(kind: str, props: dict[str, Any], segment: bool = False) -> None:
            nonlocal t
            units.append(Unit(kind, t, props, user, segment))
            t += rng.uniform(3, 45)

        assert user.user_id is not None
        add("AppOpened", {"source": "cold_start", "first_open": True} if new else
            {"source": rng.choice(("cold_start", "background", "push", "deeplink"))})
        if new:
            first, last = rng.choice(market.first_names), rng.choice(market.last_names)
            local = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace(" ", "").replace("ı", "i"))
            email = f"{local.encode('ascii', 'ignore').decode()}{rng.randint(1, 99)}@{rng.choice(market.email_domains)}"
            add("UserSignedUp", {"method": rng.choice(("email", "google", "facebook", "apple", "phone")),
                                 "email": email, "country": market.country, "language": market.language,
                                 "marketing_opt_in": rng.random() < 0.4})
            add("Identify", {"email": email, "name": f"{first} {last}", "country": market.country,
                             "language": market.language, "created_at": _iso_z(t)}, True)
        own: list[_Item] = [] if new else [self._new_item(market, user.user_id, self.now - rng.uniform(2, 90) * 86400)
                                           for _ in range(rng.randint(1, 3))]
        for _ in range(rng.choices((1, 2, 3), (0.65, 0.25, 0.1))[0]):
            if rng.random() < 0.2:
                add("Screen", {"name": "Sell"}, True)
            item = self._new_item(market, user.user_id, t)
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
            add("ItemListed", props)
            self.publish(item)
        if own and rng.random() < 0.35:
            item = rng.choice(own)
            new_price = float(max(1, round(item.price * rng.uniform(0.75, 0.95))))
            add("ItemUpdated", {"item_id": item.item_id, "seller_id": user.user_id, "price": new_price,
                                "previous_price": item.price, "currency": market.currency})
            item.price = new_price
        if own and rng.random() < 0.2:
            item = own.pop(rng.randrange(len(own)))
            add("ItemSold", {"item_id": item.item_id, "seller_id": user.user_id, "buyer_id": self._ident("usr"),
                             "category": item.category, "sold_price": item.price, "currency": market.currency,
                             "days_listed": round((t - item.listed_epoch) / 86400, 1)})
        if own and rng.random() < 0.12:
            item = own.pop(rng.randrange(len(own)))
            add("ItemDeleted", {"item_id": item.item_id, "seller_id": user.user_id,
                                "reason": rng.choice(("sold_elsewhere", "no_longer_available", "expired", "other"))})
        return units

    def buyer_session(self, start: float) -> list[Unit]:
        rng = self.rng
        user = self.new_user(logged_in=rng.random() < 0.8)
        market = user.market
        logged_in = user.user_id is not None
        pool = self.pool[market.country]
        t = start
        units: list[Unit] = []

        def add(kind: str, props: dict[str, Any], segment: bool = False) -> None:
            nonlocal t
            units.append(Unit(kind, t, props, user, segment and logged_in))
            t += rng.uniform(2, 40)

        add("AppOpened", {"source": rng.choice(("cold_start", "cold_start", "background", "push", "deeplink"))})
        if logged_in and rng.random() < 0.5:
            add("Screen", {"name": "Home"}, True)
        for _ in range(rng.choices((1, 2, 3), (0.55, 0.3, 0.15))[0]):
            wanted = rng.choice(pool)
            words = [w for w in wanted.title.lower().split() if len(w) > 2 and w not in _STOP_WORDS]
            query = " ".join(rng.sample(words, min(len(words), rng.randint(1, 2)))) if words else ""
            matches = self.by_category[(market.country, wanted.category)][-40:]
            results = 0 if rng.random() < 0.08 else rng.randint(len(matches), len(matches) + 240)
            search_id = self._ident("srch")
            props: dict[str, Any] = {"search_id": search_id, "query": query, "language": market.language,
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
            add("Search", props)
            if results == 0 or not matches:
                continue
            for position, item in enumerate(rng.sample(matches, min(len(matches), rng.randint(1, 3)))):
                add("ItemViewed", {"item_id": item.item_id, "seller_id": item.seller_id, "category": item.category,
                                   "price": item.price, "currency": market.currency, "source": "search",
                                   "position": position + rng.randint(0, 8), "search_id": search_id})
                if rng.random() < 0.3:
                    channel = rng.choices(("chat", "offer", "call"), (0.6, 0.3, 0.1))[0]
                    lead: dict[str, Any] = {"item_id": item.item_id, "seller_id": item.seller_id,
                                            "category": item.category, "channel": channel, "price": item.price,
                                            "currency": market.currency, "conversation_id": self._ident("conv")}
                    if channel == "offer":
                        lead["offer_amount"] = float(max(1, round(item.price * rng.uniform(0.65, 0.95))))
                    if channel != "call":
                        lead["message_length"] = rng.randint(8, 280)
                    add("Lead", lead, rng.random() < 0.35)
        if rng.random() < 0.25:
            item = rng.choice(pool)
            add("ItemViewed", {"item_id": item.item_id, "seller_id": item.seller_id, "category": item.category,
                               "price": item.price, "currency": market.currency,
                               "source": rng.choice(("feed", "notification", "share", "profile"))})
        return units

    # rendering
    def render(self, unit: Unit, *, in_batch: bool = False) -> dict[str, Any]:
        user = unit.user
        if unit.segment or in_batch:
            obj: dict[str, Any] = {"integrations": {}, "anonymousId": user.anonymous_id,
                                   "timestamp": _iso_offset(unit.epoch), "context": user.segment_context,
                                   "userId": user.user_id, "messageId": self.message_id()}
            if unit.event_type == "Screen":
                obj.update(type="screen", name=unit.properties["name"],
                           properties={k: v for k, v in unit.properties.items() if k != "name"})
            elif unit.event_type == "Identify":
                obj.update(type="identify", traits=unit.properties)
            else:
                obj.update(type="track", event=unit.event_type, properties=unit.properties)
            return obj
        obj = {"messageId": self.message_id(), "type": unit.event_type, "timestamp": _iso_z(unit.epoch),
               "sentAt": _iso_z(unit.epoch + self.rng.uniform(0.05, 3.0)), "context": user.context,
               "properties": unit.properties}
        if user.user_id is not None:
            obj["userId"] = user.user_id
        else:
            obj["anonymousId"] = user.anonymous_id
        return obj

    # malformed
    def malformed(self, reason: str, epoch: float) -> tuple[str, bytes]:
        rng = self.rng
        market = rng.choices(MARKETS, _MARKET_WEIGHTS)[0]
        if reason == "invalid_utf8":
            market = MARKETS[0]
        user = self.new_user(market)
        template = rng.choice([t for t in TEMPLATES if not t.titles[market.language].isascii()]) \
            if reason == "invalid_utf8" else None
        item = self._new_item(market, user.user_id or user.key, epoch, template)
        props: dict[str, Any] = {
            "item_id": item.item_id, "seller_id": user.key, "title": item.title, "category": item.category,
            "price": item.price, "currency": market.currency, "location": {"lat": user.lat, "lon": user.lon},
            "city": user.city, "country": market.country, "language": market.language,
        }
        obj = self.render(Unit("ItemListed", epoch, props, user, False))
        key = user.key
        if reason == "not_json":  # cut off mid-object (a truncated write); cut on a character boundary
            text = orjson.dumps(obj).decode()
            return key, text[: rng.randint(20, len(text) // 2)].encode()
        if reason == "invalid_utf8":  # the title encoded as Latin-1 by a misbehaving client
            data = orjson.dumps(obj)
            return key, data.replace(item.title.encode(), item.title.encode("latin-1", "replace"))
        if reason == "not_an_object":  # several events sent as a bare array instead of a batch object
            return key, orjson.dumps([obj, self.render(Unit("AppOpened", epoch - 5, {"source": "background"},
                                                            user, False))])
        if reason == "missing_field":
            del obj["messageId"]
        elif reason == "unknown_event_type":
            obj["type"] = rng.choice(("ItemFavorited", "ItemShared", "ChatOpened", "ProfileViewed"))
        elif reason == "invalid_type":
            props["price"] = rng.choice(("abc", "12,50 €", "gratis", "n/a"))
        elif reason == "out_of_range":
            props["price"] = -item.price
        elif reason == "too_long":
            props["title"] = (item.title + " ") * (500 // (len(item.title) + 1)) + "x" * (500 % (len(item.title) + 1))
            props["title"] = props["title"][:499] + "!"
        elif reason == "record_too_large":
            cached = self.too_large.get(market.language)
            if cached is not None:  # identical bytes are fine: a rejected record is never de-duplicated
                return key, cached
            props["description"] = "PLACEHOLDER"
            text = orjson.dumps(obj)
            head, tail = text.split(b"PLACEHOLDER")
            filler = (DESCRIPTIONS[market.language][0] + " ").encode()
            packer = zlib.compressobj(1, zlib.DEFLATED, 31)
            chunk = filler * (65536 // len(filler))
            parts = [packer.compress(head)]
            written = len(head)
            while written <= MAX_RECORD_BYTES + 65536:
                parts.append(packer.compress(chunk))
                written += len(chunk)
            parts += [packer.compress(tail), packer.flush()]
            data = self.too_large[market.language] = b"".join(parts)
            return key, data
        elif reason == "timestamp_in_future":
            obj["timestamp"] = _iso_z(self.now + 2 * 86400 + rng.uniform(0, 3600))
        elif reason == "timestamp_too_old":
            obj["timestamp"] = _iso_z(self.now - 40 * 86400 - rng.uniform(0, 3600))
        elif reason == "non_finite_number":
            props["price"] = "__NAN__"
            return key, orjson.dumps(obj).replace(b'"__NAN__"', b"NaN")
        elif reason == "too_deep":
            nested: dict[str, Any] = {"a": "deep"}
            for _ in range(11):
                nested = {"a": nested}
            obj["context"] = {**obj["context"], "custom": nested}
        else:  # pragma: no cover - MALFORMED_REASONS and this function are kept in step
            raise ValueError(reason)
        return key, orjson.dumps(obj)


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
    gen = _Generator(seed, now)
    rng = gen.rng
    n_malformed = round(n_events * malformed_share)
    n_duplicates = min(round(n_events * duplicate_share), n_events - n_malformed)
    n_valid = n_events - n_malformed - n_duplicates
    start_of_window = gen.now - WINDOW_SECONDS

    # 1. sessions until there are n_valid events; each session goes out as single records or as batches
    keyed: list[tuple[float, int, TrafficRecord]] = []
    singles: list[tuple[float, TrafficRecord]] = []  # candidates for a duplicate re-send
    produced = 0
    while produced < n_valid:
        start = rng.uniform(start_of_window, gen.now - 600)
        session = gen.seller_session(start) if rng.random() < 0.3 else gen.buyer_session(start)
        session = session[: n_valid - produced]
        produced += len(session)
        user = session[0].user
        if len(session) >= 2 and rng.random() < batch_share:
            i = 0
            while i < len(session):
                size = min(rng.randint(2, 20), len(session) - i)
                chunk = session[i:i + size]
                i += size
                if len(chunk) == 1:
                    _single(gen, chunk[0], gzip_share, keyed, singles)
                    continue
                sent_at = chunk[-1].epoch + rng.uniform(0.5, 20)
                data = orjson.dumps({"batch": [gen.render(u, in_batch=True) for u in chunk],
                                     "sentAt": _iso_offset(sent_at)})
                if rng.random() < gzip_share:
                    data = _gzip(data)
                keyed.append((sent_at, len(keyed), TrafficRecord(user.key, data, len(chunk), {"valid": len(chunk)})))
        else:
            for unit in session:
                _single(gen, unit, gzip_share, keyed, singles)

    # 2. malformed units, round-robin over every reason, each its own record at a random place in the stream
    for i in range(n_malformed):
        epoch = rng.uniform(start_of_window, gen.now)
        reason = MALFORMED_REASONS[i % len(MALFORMED_REASONS)]
        key, data = gen.malformed(reason, epoch)
        keyed.append((epoch, len(keyed), TrafficRecord(key, data, 1, {f"rejected:{reason}": 1})))

    # 3. exact re-sends of earlier valid single-event records: half right behind the original, half far later
    n_duplicates = min(n_duplicates, len(singles))
    for i, (epoch, original) in enumerate(rng.sample(singles, n_duplicates)):
        later = rng.uniform(0.001, 2.0) if i % 2 == 0 else rng.uniform(600, 3600)
        keyed.append((epoch + later, len(keyed),
                      TrafficRecord(original.partition_key, original.data, 1, {"duplicate": 1})))

    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return TrafficPlan([record for _, _, record in keyed])


def _single(gen: _Generator, unit: Unit, gzip_share: float, keyed: list[tuple[float, int, TrafficRecord]],
            singles: list[tuple[float, TrafficRecord]]) -> None:
    data = orjson.dumps(gen.render(unit))
    if gen.rng.random() < gzip_share:
        data = _gzip(data)
    epoch = unit.epoch + gen.rng.uniform(0.05, 3.0)
    record = TrafficRecord(unit.user.key, data, 1, {"valid": 1})
    keyed.append((epoch, len(keyed), record))
    singles.append((epoch, record))


__all__ = ["MALFORMED_REASONS", "TrafficPlan", "TrafficRecord", "Unit", "generate"]
