"""Search on the local stage: the indexer over the stream, a reindex from the processed events, example queries.

The same code as on AWS runs here — :class:`handlers.search.indexer.Indexer` behind the event-source-mapping
driver (as its Lambda would run), and :func:`handlers.search.api.create_app` serving the index — with the
embedded tantivy engine standing in for OpenSearch.

``reindex`` rebuilds an index from scratch from the processed events (the warehouse's copy of every valid
event) through the very path the live indexer takes — every event becomes a versioned change and
``backend.rebuild`` applies them (:mod:`handlers.search.listings`: the order does not matter), so the rebuilt
index and the live one agree by construction, tombstones included. On OpenSearch every index gets a new
version, filled and swapped in behind its alias atomically (searches never see a half-built index).
"""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import orjson

from handlers.search.backend import SearchBackend
from handlers.search.indexer import LISTING_TYPES, IndexOutcome, Indexer, changes_of
from letgo.progress import Progress

CHUNK = 2000


@dataclass(frozen=True)
class ProcessedEvent:
    """A processed event (the warehouse's JSON document) in the shape the indexer folds."""

    message_id: str
    type: str
    timestamp: str
    properties: dict[str, Any]
    sequence_number: str

    @classmethod
    def from_document(cls, document: dict[str, Any], position: int) -> "ProcessedEvent":
        return cls(document["messageId"], document["type"], document["timestamp"], document.get("properties") or {},
                   str(position))


def processed_listing_events(s3: Any, bucket: str, prefix: str = "events/") -> list[ProcessedEvent]:
    """Every listing event of the bucket, each messageId once, in event-time order."""
    seen: set[str] = set()
    documents = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if "/type=" in key and not any(f"/type={t}/" in key for t in LISTING_TYPES):
                continue  # a partitioned layout: skip the other types' objects unread
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines():
                if line.strip():
                    document = orjson.loads(line)
                    if document.get("type") in LISTING_TYPES and document["messageId"] not in seen:
                        seen.add(document["messageId"])
                        documents.append(document)
    documents.sort(key=lambda d: (d["timestamp"], d["messageId"]))
    return [ProcessedEvent.from_document(d, i) for i, d in enumerate(documents)]


def reindex(backend: SearchBackend, events: list[ProcessedEvent], *, progress: Progress | None = None) -> int:
    """Rebuild the index from these events (any order); returns how many listings are searchable after it."""
    skipped: list[tuple[str, str]] = []
    changes = changes_of(events, skipped)
    result = backend.rebuild(changes)
    if progress is not None:
        progress(result.listings)
        progress.finish()
    return result.searchable


class IndexerInvoke:
    """What the indexer Lambda does with a Kinesis event, for the local event-source-mapping driver; adds up
    the outcomes."""

    def __init__(self, indexer: Indexer) -> None:
        from handlers.core.config import Env
        from handlers.search.lambda_indexer import IndexerHandler
        from handlers.tracking.consumer import processor_from_env

        self.handler = IndexerHandler(processor_from_env(Env()), indexer)  # as the deployed indexer builds it
        self.outcome = IndexOutcome()

    def __call__(self, event: dict[str, Any]) -> IndexOutcome:
        outcome = self.handler.process(event)
        self.outcome.merge(outcome)
        return outcome


EXAMPLES: tuple[dict[str, Any], ...] = (
    {"title": "a buyer in Madrid: mountain bikes nearby",
     "path": "/search", "params": {"q": "bicicleta montaña", "lat": 40.4168, "lon": -3.7038, "radius_km": 50},
     "headers": {"Accept-Language": "es-ES,es;q=0.9"}},
    {"title": "a typo: exact matches first, then similar spellings, did you mean?", "path": "/search",
     "params": {"q": "bicileta", "lat": 40.4168, "lon": -3.7038, "country": "ES"}},
    {"title": "an English phone in Madrid: the place's listings, not the phone's language", "path": "/search",
     "params": {"q": "bicicleta", "lat": 40.4168, "lon": -3.7038, "radius_km": 50},
     "headers": {"Accept-Language": "en-GB,en;q=0.9"}},
    {"title": "a buyer in Amsterdam, a Dutch compound: 'fiets' finds the Stadsfietsen", "path": "/search",
     "params": {"q": "fiets", "lat": 52.3676, "lon": 4.9041, "radius_km": 25},
     "headers": {"Accept-Language": "nl-NL"}},
    {"title": "suggestions while typing", "path": "/autocomplete", "params": {"q": "iph", "language": "es"}},
)


def run_examples(base_url: str, examples: Iterable[dict[str, Any]] = EXAMPLES) -> Iterator[dict[str, Any]]:
    """Each example through HTTP, summarised: total, top hits, facets, did-you-mean, the language chosen."""
    for example in examples:
        url = f"{base_url}{example['path']}?{urllib.parse.urlencode(example['params'])}"
        request = urllib.request.Request(url, headers=example.get("headers", {}))
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        summary: dict[str, Any] = {"title": example["title"], "request": url.removeprefix(base_url)}
        if example["path"] == "/autocomplete":
            summary["suggestions"] = [s.get("text") for s in body.get("suggestions", [])][:5]
        else:
            summary.update(total=body["total"], language=body["language"], did_you_mean=body.get("did_you_mean"),
                           approximate=body.get("approximate", 0), alternatives=body.get("alternatives") or [],
                           top=[f"{h['title']} — {h['price']:g} {h['currency']}"
                                + (f", {h['distance_km']:.1f} km" if h.get("distance_km") is not None else "")
                                for h in body["hits"][:3]],
                           categories={b["key"]: b["count"] for b in body["facets"]["categories"][:3]})
        yield summary


def say_examples(results: Iterable[dict[str, Any]], say: Callable[[str], None] = print) -> None:
    for result in results:
        say(f"  {result['title']}: GET {result['request']}")
        if "suggestions" in result:
            say(f"      suggestions: {', '.join(result['suggestions']) or '(none)'}")
            continue
        language = result["language"]
        say(f"      {result['total']} matches"
            + (f" ({result['approximate']} by a similar spelling)" if result.get("approximate") else "")
            + f", language {language['language']} ({language['reason']})"
            + (f", did you mean \"{result['did_you_mean']}\"" if result.get("did_you_mean") else "")
            + "".join(f"; {a['total']} in {a['language']} here" for a in result.get("alternatives") or [])
            + (f"; top categories {result['categories']}" if result["categories"] else ""))
        for line in result["top"]:
            say(f"      - {line}")
