"""Benchmark inputs: Kinesis records exactly as the consumer receives them (base64 strings + coordinates)."""
from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from handlers.core.kinesis import RawRecord

CATEGORIES = ("cars", "motorbikes", "electronics", "phones", "computers", "home_garden", "furniture", "fashion",
              "baby_kids", "sports_leisure", "bikes", "books_music", "games_consoles")
MARKETS = (  # (locale, city, country, lat, lon, currency, carrier, ip prefix)
    ("es-ES", "Madrid", "Spain", 40.4168, -3.7038, "EUR", "Movistar", "83.45"),
    ("es-ES", "Barcelona", "Spain", 41.3874, 2.1686, "EUR", "Vodafone", "88.12"),
    ("nl-NL", "Amsterdam", "Netherlands", 52.3676, 4.9041, "EUR", "KPN", "145.53"),
    ("en-GB", "London", "United Kingdom", 51.5072, -0.1276, "GBP", "EE", "82.132"),
    ("tr-TR", "Istanbul", "Turkey", 41.0082, 28.9784, "TRY", "Turkcell", "176.88"),
    ("pt-PT", "Lisbon", "Portugal", 38.7223, -9.1393, "EUR", "NOS", "77.223"),
)
DEVICES = (("iOS", ("16.7.2", "17.4.1", "17.5.1"), "Apple", ("iPhone14,2", "iPhone15,3", "iPhone16,1")),
           ("Android", ("12", "13", "14"), "samsung", ("SM-G991B", "SM-S911B", "SM-A546B")))


@dataclass
class Workload:
    name: str
    description: str
    records: list[RawRecord]
    mean_bytes: float  # decoded JSON bytes per record


def _records(payloads: list[bytes], arrivals: list[float], keys: list[str]) -> list[RawRecord]:
    return [RawRecord(f"{49650000000000000000000000000000000000000000000000000000 + i}", key,
                      base64.b64encode(data).decode("ascii"), arrival)
            for i, (data, arrival, key) in enumerate(zip(payloads, arrivals, keys))]


def _iso_z(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lead_events(n: int, now: datetime, seed: int = 11) -> Workload:
    """Native-envelope Lead events shaped like tests/events/lead_native.json (~600 bytes), varied values."""
    rng = random.Random(seed)
    end = now.timestamp()
    payloads, arrivals, keys = [], [], []
    for _ in range(n):
        locale, city, country, lat, lon, currency, _carrier, ip = rng.choice(MARKETS)
        os_name, os_versions, maker, models = rng.choice(DEVICES)
        epoch = end - rng.uniform(60, 3600)
        user = f"usr_{rng.getrandbits(48):012x}"
        channel = rng.choice(("chat", "chat", "chat", "offer", "call"))
        price = round(rng.uniform(5, 3000), rng.choice((0, 2)))
        props = {"item_id": f"itm_{rng.getrandbits(48):012x}", "seller_id": f"usr_{rng.getrandbits(48):012x}",
                 "category": rng.choice(CATEGORIES), "channel": channel, "price": price, "currency": currency}
        if channel == "offer":
            props["offer_amount"] = round(price * rng.uniform(0.6, 0.95), 2)
        if channel == "chat":
            props["conversation_id"] = f"conv_{rng.getrandbits(48):012x}"
            props["message_length"] = rng.randint(2, 400)
        version = rng.choice(("4.12.0", "4.12.3", "4.13.1", "4.14.0"))
        event = {
            "type": "Lead", "timestamp": _iso_z(epoch),
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "userId": user,
            "context": {"app": {"name": "letgo", "version": version, "build": version.replace(".", "") + "0"},
                        "os": {"name": os_name, "version": rng.choice(os_versions)},
                        "device": {"id": f"{rng.getrandbits(64):016X}", "manufacturer": maker,
                                   "model": rng.choice(models)},
                        "locale": locale, "ip": f"{ip}.{rng.randint(1, 254)}.{rng.randint(1, 254)}",
                        "location": {"city": city, "country": country,
                                     "latitude": round(lat + rng.uniform(-0.1, 0.1), 5),
                                     "longitude": round(lon + rng.uniform(-0.1, 0.1), 5)}},
            "properties": props,
        }
        payloads.append(orjson.dumps(event))
        arrivals.append(epoch + rng.uniform(0.05, 3.0))
        keys.append(user)
    return Workload("lead~600B", "native Lead events like tests/events/lead_native.json", _records(
        payloads, arrivals, keys), sum(map(len, payloads)) / n)


def traffic_mix(n: int, now: datetime, seed: int = 7) -> Workload:
    """Valid single-event, non-gzip Lead/ItemViewed/ItemListed records from the local stage's traffic generator."""
    from letgo.traffic import generate

    wanted = {"Lead", "ItemViewed", "ItemListed"}
    payloads: list[bytes] = []
    keys: list[str] = []
    size = n * 2
    while True:
        plan = generate(size, seed=seed, now=now, malformed_share=0, duplicate_share=0, batch_share=0, gzip_share=0)
        payloads, keys = [], []
        for record in plan.records:
            if record.expected != {"valid": 1} or record.data[:2] == b"\x1f\x8b":
                continue
            obj = orjson.loads(record.data)
            if obj.get("type") in wanted:  # native envelope only (Segment "track" calls carry 'event')
                payloads.append(record.data)
                keys.append(record.partition_key)
                if len(payloads) == n:
                    break
        if len(payloads) == n:
            break
        size *= 2
    arrivals = [datetime.fromisoformat(orjson.loads(p)["timestamp"]).timestamp() + 1.0 for p in payloads]
    return Workload("traffic-mix", "letgo.traffic Lead/ItemViewed/ItemListed singles", _records(
        payloads, arrivals, keys), sum(map(len, payloads)) / n)
