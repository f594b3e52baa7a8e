"""Builders for the ML tests: seeded ItemListed events in the processed layout, definition variants, moto S3.

The listings follow the traffic generator's marketplace (``letgo.traffic``: its markets, currencies and
exchange rates, its multilingual title templates with brands and price ranges), built directly as processed
events — the envelope the consumer writes to Firehose — so a test can ask for thousands of listings in a
second and can *skew* them (only some categories, prices scaled) to make drift on purpose.
"""
from __future__ import annotations

import copy
import gzip
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import boto3
import numpy as np
import orjson
import yaml

from handlers.ml.data import row_of
from handlers.ml.dataset import Dataset
from handlers.ml.definition import parse_definition
from handlers.ml.definition_types import ModelDefinition
from handlers.ml.models import price_suggestion
from letgo.services.moto import FAKE_CREDENTIALS
from letgo.traffic import MARKETS, TEMPLATES, Market, Template

REPO = Path(__file__).resolve().parents[1]
DEFINITION_FILE = REPO / "models" / "price_suggestion.yaml"
CONDITIONS = ("new", "like_new", "good", "good", "fair")
END = date(2026, 11, 26)  # the tests' "today": a fixed date, so every run reads the same window


def local_price(price_eur: float, market: Market) -> float:
    """The generator's rounding: whole units, fives from 100, fifties from 2,000 (in local currency)."""
    value = price_eur * market.eur_rate
    step = 50 if value >= 2000 else 5 if value >= 100 else 1
    return float(max(step, round(value / step) * step))


def listing_documents(n: int, *, seed: int, day: date = END, categories: Sequence[str] | None = None,
                      price_factor: float = 1.0) -> list[dict[str, Any]]:
    """``n`` processed ItemListed events of ``day``; ``categories`` / ``price_factor`` skew them on purpose."""
    rng = random.Random(seed)
    templates: list[Template] = [t for t in TEMPLATES if categories is None or t.category in categories]
    start = datetime.combine(day, time(0, 0), tzinfo=timezone.utc).timestamp()
    documents = []
    for _ in range(n):
        market = rng.choices(MARKETS, [m.weight for m in MARKETS])[0]
        template = rng.choice(templates)
        title = template.titles[market.language].format(brand=rng.choice(template.brands))
        if template.category == "cars":
            title = f"{title} {rng.randint(2012, 2022)}"
        low, high = template.price_eur
        price_eur = math.exp(rng.uniform(math.log(low), math.log(high))) * price_factor
        city, lat, lon = rng.choice(market.cities)
        epoch = start + rng.uniform(0, 86399)
        stamp = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        seller = f"usr_{rng.getrandbits(48):012x}"
        documents.append({
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "type": "ItemListed", "version": 1,
            "timestamp": stamp, "receivedAt": stamp, "sentAt": stamp, "userId": seller, "anonymousId": None,
            "context": {"locale": market.locale, "app": {"name": "letgo", "version": "4.14.0"}},
            "properties": {
                "item_id": f"itm_{rng.getrandbits(48):012x}", "seller_id": seller, "title": title,
                "category": template.category, "price": local_price(price_eur, market), "currency": market.currency,
                "condition": rng.choice(CONDITIONS), "location": {"lat": lat, "lon": lon}, "city": city,
                "country": market.country, "language": market.language, "image_count": rng.randint(1, 12),
                "shipping_available": rng.random() < 0.5,
            },
        })
    return documents


def dataset_of(documents: Iterable[dict[str, Any]], spec: Any) -> Dataset:
    """The rows the loader would make of these events (no S3): for unit tests of training code."""
    return Dataset.from_rows([row_of(document, spec) for document in documents], spec.kinds)


def event_day(document: dict[str, Any]) -> str:
    return document["timestamp"][:10]


def write_processed(s3: Any, bucket: str, documents: Iterable[dict[str, Any]], *, per_object: int = 400,
                    compress: bool = True, tag: str = "part") -> list[str]:
    """Write events as Firehose does in AWS: ``events/type=<T>/dt=<day>/<object>``, gzip JSON lines."""
    groups: dict[tuple[str, str], list[bytes]] = {}
    for document in documents:
        groups.setdefault((document["type"], event_day(document)), []).append(orjson.dumps(document))
    keys = []
    for (event_type, day), lines in sorted(groups.items()):
        for i in range(0, len(lines), per_object):
            body = b"\n".join(lines[i:i + per_object]) + b"\n"
            key = f"events/type={event_type}/dt={day}/{tag}-{i // per_object:04d}" + (".gz" if compress else "")
            s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body, mtime=0) if compress else body)
            keys.append(key)
    return keys


def definition_document() -> dict[str, Any]:
    return yaml.safe_load(DEFINITION_FILE.read_text(encoding="utf-8"))


def set_path(document: dict[str, Any], dotted: str, value: Any) -> None:
    """Set (or with ``value`` DELETE, remove) ``a.b.0.c`` in a parsed YAML document."""
    parts = dotted.split(".")
    node: Any = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()


def definition(**overrides: Any) -> ModelDefinition:
    """The shipped definition with dotted-path overrides (``definition(**{"data.max_rows": 2000})``)."""
    document = copy.deepcopy(definition_document())
    for dotted, value in overrides.items():
        set_path(document, dotted, value)
    return parse_definition(document, DEFINITION_FILE.name)


# A test-only training entry point: the shipped model, fitted to labels shuffled among the rows — what a
# pipeline bug that misaligns features and labels produces. Its answers carry no information about the item.
def train_on_shuffled_labels(data: Any, labels: np.ndarray, definition: Any, *, seed: int) -> dict[str, Any]:
    shuffled = np.random.default_rng(seed).permutation(np.asarray(labels, dtype=float))
    return price_suggestion.train(data, shuffled, definition, seed=seed)


def train_classifier_on_shuffled_labels(data: Any, labels: np.ndarray, definition: Any, *, seed: int) -> Any:
    """The shipped category model fitted to labels shuffled among the rows (the same pipeline bug)."""
    from handlers.ml.models import category_suggestion

    shuffled = np.random.default_rng(seed).permutation(np.asarray(labels, dtype=object))
    return category_suggestion.train(data, shuffled, definition, seed=seed)


CLASSIFIER_FILE = REPO / "models" / "category_suggestion.yaml"


def classifier(**overrides: Any) -> ModelDefinition:
    """The shipped category suggestion definition with dotted-path overrides."""
    document = yaml.safe_load(CLASSIFIER_FILE.read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        set_path(document, dotted, value)
    return parse_definition(document, CLASSIFIER_FILE.name)


# -- moto ------------------------------------------------------------------------------------------------------
@dataclass
class Aws:
    """A moto server and S3 clients on it (credentials passed explicitly: no process environment touched)."""

    url: str

    def s3(self) -> Any:
        session = boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                        region_name=FAKE_CREDENTIALS["AWS_REGION"])
        return session.client("s3", endpoint_url=self.url)

    def bucket(self, name: str) -> str:
        self.s3().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        return name
