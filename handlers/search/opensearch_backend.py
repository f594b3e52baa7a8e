"""The production backend: Amazon OpenSearch Service (plain HTTP for a local or test URL).

Index layout — everything through aliases, so changes never need a code change or downtime:

* ``classified_ads_<lang>`` is an alias; the documents live in versioned concrete indices
  (``classified_ads_es_v1``, ``_v2``…). The alias is the read name of the language and, with
  ``is_write_index``, its write name.
* One composable index template per language matches ``classified_ads_<lang>_v*`` *and*
  ``<category>_<lang>_v*`` for every category, and carries the analysers and the mapping. Creating a
  new version is therefore just "create index". Splitting a busy category into its own index is a
  configuration change (``split_categories``): ``setup()`` creates ``bikes_es_v1`` behind the alias
  ``bikes_es`` (its write name) and adds it to ``classified_ads_es`` (read only), so searches still read
  the one language alias and writes of bikes go to their own index.
* ``setup()`` is idempotent and meant to run on every deploy: it (re)puts the templates and creates a
  missing alias (attaching it to the newest existing version if a previous setup died half-way, and
  shrugging off a concurrent deploy that won the race). It never changes a live index: mapping changes
  go through :meth:`OpenSearchBackend.reindex` — new version, copy (``_reindex``) or fill from a source of
  truth, refresh, one atomic ``_aliases`` call that moves read and write names, then drop the old version.

Analysis per language: standard tokenizer -> lowercase (Turkish-aware for tr, after the apostrophe filter)
-> the language's stop words -> its Snowball stemmer -> ASCII folding, for ``title`` and ``description``.
Snowball is chosen over the "light" stemmers so that both backends stem alike (tantivy ships Snowball).
``title.plain`` (lowercase + folding, no stemming) serves fuzzy matching and the term suggester (a
suggester on a stemmed field would propose "biciclet"); ``title.suggest`` is ``search_as_you_type`` for
autocomplete (``bool_prefix`` over its shingles).

Writes: ``index()`` is one bulk per chunk with ``_id = item_id``. Before it, one realtime ``mget`` finds
ads that currently live in *another* index (their language or split category changed) and the bulk
deletes them there first. Per-item refusals come back as :class:`IndexingFailed` after the rest is written.

Queries (one round trip per search): a bool query (text as "any of": exact title x3, exact description
x0.5, fuzzy title, fuzzy title.plain — each with operator AND) with filters (terms category, range
price, ``geo_distance``), wrapped in ``function_score`` gauss decays on ``listed_at`` and ``location``
for relevance; ``search_after`` on ``[sort value, item_id]``; aggregations for the facets (terms,
range, ``geo_distance`` rings); a term suggester (``suggest_mode: missing``) for did-you-mean.

Authentication: with ``aws_region`` set, requests are signed with SigV4 (``requests-aws4auth``, refreshing
credentials from the default boto3 chain: the Beanstalk instance role in AWS); otherwise plain HTTP(S).
The client is created on first use.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from handlers.search.backend import AUTOCOMPLETE_EXPANSIONS, Ranking, SearchBackend, dedupe_suggestions
from handlers.search.errors import BackendUnavailable, IndexingFailed, InvalidRequest, SearchError
from handlers.search.geo import haversine_km
from handlers.search.languages import SUPPORTED, index_language
from handlers.search.model import (CATEGORIES, DISTANCE_EDGES_KM, PRICE_EDGES, Ad, AutocompleteRequest, Cursor,
                                   Facets, Hit, SearchRequest, SearchResponse, Sort, Suggestion, range_keys)

SCHEMA_VERSION = 1
_SNOWBALL = {"es": "Spanish", "nl": "Dutch", "en": "English", "tr": "Turkish", "pt": "Portuguese"}
_STOPWORDS = {"es": "_spanish_", "nl": "_dutch_", "en": "_english_", "tr": "_turkish_", "pt": "_portuguese_"}
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# -- configuration -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenSearchConfig:
    """Where the cluster is and how the indices are laid out; validated once, at construction."""

    url: str
    aws_region: str | None = None  # set: sign every request with SigV4 (Amazon OpenSearch Service)
    aws_service: str = "es"  # "es" for a managed domain, "aoss" for OpenSearch Serverless
    namespace: str = ""  # prefix of every template, alias and index name (isolates tests on a shared cluster)
    split_categories: tuple[str, ...] = ()  # categories with their own <category>_<lang> index
    shards: int = 1
    replicas: int = 0
    timeout_s: float = 10.0
    bulk_chunk: int = 500

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url or ""):
            raise ValueError(f"OpenSearch url {self.url!r}: expected http(s)://host[:port]")
        if self.namespace and not _NAMESPACE.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r}: lowercase letters, digits, '_' and '-' only")
        unknown = set(self.split_categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"split_categories: {sorted(unknown)} are not categories")
        if self.shards < 1 or self.replicas < 0 or self.bulk_chunk < 1 or self.timeout_s <= 0:
            raise ValueError("shards >= 1, replicas >= 0, bulk_chunk >= 1 and timeout_s > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "OpenSearchConfig":
        """``LETGO_OPENSEARCH_URL`` (required), ``LETGO_OPENSEARCH_AWS_REGION`` (SigV4; defaults to
        ``AWS_REGION`` for ``*.amazonaws.com`` hosts), ``LETGO_OPENSEARCH_NAMESPACE``,
        ``LETGO_OPENSEARCH_SPLIT_CATEGORIES`` (comma-separated), ``LETGO_OPENSEARCH_SHARDS`` / ``_REPLICAS``."""
        url = env.get("LETGO_OPENSEARCH_URL", "").strip()
        if not url:
            raise ValueError("LETGO_OPENSEARCH_URL is not set")
        region = env.get("LETGO_OPENSEARCH_AWS_REGION") or (
            env.get("AWS_REGION") if re.search(r"\.amazonaws\.com(:\d+)?/?$", url) else None)
        split = tuple(c.strip() for c in env.get("LETGO_OPENSEARCH_SPLIT_CATEGORIES", "").split(",") if c.strip())
        return cls(url=url, aws_region=region or None, aws_service=env.get("LETGO_OPENSEARCH_AWS_SERVICE", "es"),
                   namespace=env.get("LETGO_OPENSEARCH_NAMESPACE", ""), split_categories=split,
                   shards=int(env.get("LETGO_OPENSEARCH_SHARDS", "1")),
                   replicas=int(env.get("LETGO_OPENSEARCH_REPLICAS", "0")))


@dataclass(frozen=True)
class IndexNames:
    """Every name the backend uses, in one place (so a namespace or a category split is config, not code)."""

    namespace: str = ""

    def read_alias(self, language: str) -> str:
        return f"{self.namespace}classified_ads_{language}"

    def category_alias(self, category: str, language: str) -> str:
        return f"{self.namespace}{category}_{language}"

    def template(self, language: str) -> str:
        return f"{self.namespace}classified_ads_{language}"

    def patterns(self, language: str) -> list[str]:
        return [f"{self.read_alias(language)}_v*"] + [f"{self.category_alias(c, language)}_v*" for c in CATEGORIES]

    @staticmethod
    def version_of(index: str, alias: str) -> int | None:
        match = re.fullmatch(re.escape(alias) + r"_v(\d+)", index)
        return int(match.group(1)) if match else None


def index_template(language: str, config: OpenSearchConfig) -> dict[str, Any]:
    """The composable index template of one language: analysers, mapping, shard counts."""
    lowercase = "letgo_lowercase" if language == "tr" else "lowercase"
    text_filters = (["apostrophe"] if language == "tr" else []) + [lowercase, "letgo_stop", "letgo_stemmer",
                                                                    "asciifolding"]
    filters: dict[str, Any] = {"letgo_stop": {"type": "stop", "stopwords": _STOPWORDS[language]},
                               "letgo_stemmer": {"type": "snowball", "language": _SNOWBALL[language]}}
    if language == "tr":
        filters["letgo_lowercase"] = {"type": "lowercase", "language": "turkish"}
    keyword = {"type": "keyword"}
    return {
        "index_patterns": IndexNames(config.namespace).patterns(language),
        "priority": 100,
        "version": SCHEMA_VERSION,
        "template": {
            "settings": {
                "number_of_shards": config.shards, "number_of_replicas": config.replicas,
                "analysis": {"filter": filters, "analyzer": {
                    "letgo_text": {"type": "custom", "tokenizer": "standard", "filter": text_filters},
                    "letgo_plain": {"type": "custom", "tokenizer": "standard", "filter": [lowercase, "asciifolding"]},
                }},
            },
            "mappings": {
                "dynamic": "strict",
                "_meta": {"schema_version": SCHEMA_VERSION, "language": language},
                "properties": {
                    "item_id": keyword, "seller_id": keyword, "category": keyword, "currency": keyword,
                    "condition": keyword, "city": keyword, "country": keyword, "language": keyword,
                    "title": {"type": "text", "analyzer": "letgo_text", "fields": {
                        "plain": {"type": "text", "analyzer": "letgo_plain"},
                        "suggest": {"type": "search_as_you_type", "analyzer": "letgo_plain"}}},
                    "description": {"type": "text", "analyzer": "letgo_text"},
                    "price": {"type": "double"},
                    "location": {"type": "geo_point"},
                    "listed_at": {"type": "date", "format": "epoch_millis"},
                    "image_count": {"type": "integer"},
                    "shipping_available": {"type": "boolean"},
                },
            },
        },
    }


def to_document(ad: Ad) -> dict[str, Any]:
    body = ad.to_dict()
    lat, lon, listed_at = body.pop("lat"), body.pop("lon"), body.pop("listed_at")
    return {**body, "location": {"lat": lat, "lon": lon}, "listed_at": int(round(listed_at * 1000))}


def from_document(source: Mapping[str, Any]) -> Ad:
    body = dict(source)
    location = body.pop("location")
    return Ad.from_dict({**body, "lat": location["lat"], "lon": location["lon"],
                         "listed_at": body["listed_at"] / 1000})


def _gauss(field: str, origin: Any, scale: str, offset: str, decay: float) -> dict[str, Any]:
    return {"gauss": {field: {"origin": origin, "scale": scale, "offset": offset, "decay": decay}}}


# -- the backend -------------------------------------------------------------------------------------------
class OpenSearchBackend(SearchBackend):
    name = "opensearch"

    def __init__(self, config: OpenSearchConfig, *, ranking: Ranking = Ranking(), client: Any = None) -> None:
        self.config = config
        self.ranking = ranking
        self.names = IndexNames(config.namespace)
        self._client = client
        self._write_indices: dict[str, str] | None = None  # write alias -> concrete index (cache)

    # -- plumbing --------------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from opensearchpy import OpenSearch, RequestsHttpConnection

            options: dict[str, Any] = {"hosts": [self.config.url], "timeout": self.config.timeout_s,
                                       "max_retries": 2, "retry_on_timeout": True}
            if self.config.aws_region:
                import boto3
                from requests_aws4auth import AWS4Auth

                credentials = boto3.Session().get_credentials()
                if credentials is None:
                    raise BackendUnavailable(self.name, "SigV4 requested but no AWS credentials were found")
                options.update(http_auth=AWS4Auth(region=self.config.aws_region, service=self.config.aws_service,
                                                  refreshable_credentials=credentials),
                               connection_class=RequestsHttpConnection, verify_certs=True)
            self._client = OpenSearch(**options)
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; connection trouble and 5xx become BackendUnavailable, other refusals SearchError."""
        from opensearchpy import exceptions as os_errors

        try:
            return fn(*args, **kwargs)
        except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
            raise BackendUnavailable(self.name, f"{what}: {exc}") from None
        except os_errors.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            if status >= 500 or status == 429:
                raise BackendUnavailable(self.name, f"{what}: {status} {exc.error}") from None
            raise SearchError(f"{what}: {status} {exc.error}: {exc.info}") from None

    def _write_aliases(self, language: str) -> list[str]:
        return [self.names.read_alias(language)] + [self.names.category_alias(c, language)
                                                     for c in self.config.split_categories]

    def _all_write_aliases(self) -> list[str]:
        return [alias for language in SUPPORTED for alias in self._write_aliases(language)]

    def _target(self, ad: Ad, language: str) -> str:
        if ad.category in self.config.split_categories:
            return self.names.category_alias(ad.category, language)
        return self.names.read_alias(language)

    def _concrete(self, refresh: bool = False) -> dict[str, str]:
        """Write alias -> the concrete index it writes to (cached; re-resolved after a reindex or a miss)."""
        if self._write_indices is None or refresh:
            aliases = self._all_write_aliases()
            found = self._call("get aliases", self.client.indices.get_alias, name=",".join(aliases),
                               ignore_unavailable=True)
            resolved: dict[str, str] = {}
            for index, body in found.items():
                for alias, spec in (body.get("aliases") or {}).items():
                    if alias in aliases and (spec.get("is_write_index") or alias not in resolved):
                        resolved[alias] = index
            self._write_indices = resolved
        return self._write_indices

    # -- lifecycle -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from opensearchpy import exceptions as os_errors

        indices = self.client.indices
        for language in SUPPORTED:
            self._call("put template", indices.put_index_template, name=self.names.template(language),
                       body=index_template(language, self.config))
            read = self.names.read_alias(language)
            for alias in self._write_aliases(language):
                if self._call("alias exists", indices.exists_alias, name=alias):
                    continue
                existing = self._call("list versions", indices.get, index=f"{alias}_v*", allow_no_indices=True,
                                      expand_wildcards="open")
                versions = [v for v in (IndexNames.version_of(i, alias) for i in existing) if v is not None]
                concrete = f"{alias}_v{max(versions) if versions else 1}"
                aliases = {alias: {"is_write_index": True}}
                if alias != read:
                    aliases[read] = {"is_write_index": False}
                if versions:
                    self._call("attach alias", indices.update_aliases, body={"actions": [
                        {"add": {"index": concrete, "alias": name, **spec}} for name, spec in aliases.items()]})
                    continue
                try:
                    indices.create(index=concrete, body={"aliases": aliases})
                except os_errors.RequestError as exc:
                    if exc.error != "resource_already_exists_exception":  # a concurrent deploy won the race
                        raise SearchError(f"create {concrete}: {exc.error}: {exc.info}") from None
                except (os_errors.ConnectionError, os_errors.TransportError) as exc:
                    raise BackendUnavailable(self.name, f"create {concrete}: {exc}") from None
        self._write_indices = None

    def refresh(self) -> None:
        self._call("refresh", self.client.indices.refresh, index=",".join(self._all_write_aliases()),
                   ignore_unavailable=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def reindex(self, language: str, ads: Iterable[Ad] | None = None, *, category: str | None = None,
                delete_old: bool = True) -> str:
        """Move one alias to a fresh version with the current template; returns the new concrete index.

        ``ads=None`` copies the documents of the current version with ``_reindex``; otherwise the new version
        is filled from those of ``ads`` that belong to this alias (a replay of the listing events). Writes
        that land on the old version while this runs are not carried over: pause the indexer, or replay its
        stream from the start time afterwards.
        """
        alias = self.names.category_alias(category, language) if category else self.names.read_alias(language)
        read = self.names.read_alias(language)
        indices = self.client.indices
        old = self._concrete(refresh=True).get(alias)
        existing = self._call("list versions", indices.get, index=f"{alias}_v*", allow_no_indices=True,
                              expand_wildcards="open")
        versions = [v for v in (IndexNames.version_of(i, alias) for i in existing) if v is not None]
        new = f"{alias}_v{max(versions, default=0) + 1}"
        self._call("create", indices.create, index=new)
        if ads is None:
            if old:
                self._call("reindex", self.client.reindex, body={"source": {"index": old}, "dest": {"index": new}},
                           wait_for_completion=True, refresh=True, request_timeout=3600)
        else:
            routed = (ad for ad in ads
                      if index_language(ad.language, ad.country) == language and self._target(ad, language) == alias)
            self._bulk(({"_op_type": "index", "_index": new, "_id": ad.item_id, "_source": to_document(ad)}
                        for ad in routed))
        self._call("refresh", indices.refresh, index=new)
        actions: list[dict[str, Any]] = []
        if old:
            actions += [{"remove": {"index": old, "alias": alias}}]
            if alias != read:
                actions += [{"remove": {"index": old, "alias": read}}]
        actions += [{"add": {"index": new, "alias": alias, "is_write_index": True}}]
        if alias != read:
            actions += [{"add": {"index": new, "alias": read, "is_write_index": False}}]
        self._call("swap aliases", indices.update_aliases, body={"actions": actions})
        if old and delete_old:
            self._call("delete old version", indices.delete, index=old)
        self._write_indices = None
        return new

    def drop(self) -> None:
        """Delete every index and template of this namespace. For tests and throw-away stages only."""
        indices = self.client.indices
        patterns = [pattern for language in SUPPORTED for pattern in self.names.patterns(language)]
        found = self._call("list indices", indices.get, index=",".join(patterns), allow_no_indices=True,
                           expand_wildcards="all")
        names = sorted(found)  # by name: clusters may refuse wildcard deletes (action.destructive_requires_name)
        for start in range(0, len(names), 50):
            self._call("drop", indices.delete, index=",".join(names[start:start + 50]))
        for language in SUPPORTED:
            self._call("drop template", indices.delete_index_template, name=self.names.template(language),
                       ignore=404)
        self._write_indices = None

    # -- writing ---------------------------------------------------------------------------------------------
    def _mget(self, item_ids: list[str], source: bool) -> list[dict[str, Any]]:
        """The documents with these ids in every write index (realtime GET: sees writes not yet refreshed)."""
        for attempt in (0, 1):
            concrete = sorted(set(self._concrete(refresh=attempt == 1).values()))
            if not concrete:
                return []
            docs = [{"_index": index, "_id": item_id} for index in concrete for item_id in item_ids]
            found = self._call("mget", self.client.mget, body={"docs": docs}, _source=source, realtime=True)
            if any("error" in doc for doc in found["docs"]) and attempt == 0:
                continue  # an index behind the cache is gone (a reindex elsewhere): resolve again
            return [doc for doc in found["docs"] if doc.get("found")]
        return []

    def _locate(self, item_ids: list[str]) -> dict[str, str]:
        """Which concrete index holds each id right now."""
        return {doc["_id"]: doc["_index"] for doc in self._mget(item_ids, source=False)}

    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        return {doc["_id"]: from_document(doc["_source"]) for doc in self._mget(item_ids, source=True)}

    def _bulk(self, actions: Iterable[dict[str, Any]]) -> int:
        from opensearchpy import exceptions as os_errors
        from opensearchpy.helpers import streaming_bulk

        failures: list[tuple[str, str]] = []
        ok = 0
        try:
            for success, item in streaming_bulk(self.client, actions, chunk_size=self.config.bulk_chunk,
                                                max_chunk_bytes=5 * 1024 * 1024, raise_on_error=False,
                                                max_retries=3, initial_backoff=1):
                op, result = next(iter(item.items()))
                if success:
                    ok += op != "delete"
                elif not (op == "delete" and result.get("status") == 404):
                    error = result.get("error")
                    reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
                    failures.append((result.get("_id", "?"), f"{op} {result.get('status')}: {reason}"))
        except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
            raise BackendUnavailable(self.name, f"bulk: {exc}") from None
        if failures:
            raise IndexingFailed(tuple(failures), ok)
        return ok

    def _write(self, by_language: dict[str, list[Ad]]) -> None:
        targets = {ad.item_id: (ad, self._target(ad, language)) for language, ads in by_language.items() for ad in ads}
        where = self._locate(list(targets))
        concrete = self._concrete()

        def actions() -> Iterator[dict[str, Any]]:
            for item_id, (ad, target) in targets.items():
                current = where.get(item_id)
                if current is not None and current != concrete.get(target):
                    yield {"_op_type": "delete", "_index": current, "_id": item_id}
                yield {"_op_type": "index", "_index": target, "_id": item_id, "_source": to_document(ad)}

        self._bulk(actions())

    def _delete(self, item_ids: list[str]) -> None:
        where = self._locate(item_ids)
        self._bulk({"_op_type": "delete", "_index": index, "_id": item_id} for item_id, index in where.items())

    # -- reading ---------------------------------------------------------------------------------------------
    def _text_query(self, text: str, fuzzy: bool) -> dict[str, Any]:
        r = self.ranking

        def match(field: str, boost: float, fuzzy_: bool) -> dict[str, Any]:
            spec: dict[str, Any] = {"query": text, "operator": "and", "boost": boost}
            if fuzzy_:
                spec["fuzziness"] = "AUTO"
            return {"match": {field: spec}}

        should = [match("title", r.title_boost, False), match("description", r.description_boost, False)]
        if fuzzy:
            should += [match("title", 1.0, True), match("title.plain", 1.0, True)]
        return {"bool": {"should": should, "minimum_should_match": 1}}

    def _filters(self, request: SearchRequest) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        if request.categories:
            filters.append({"terms": {"category": list(request.categories)}})
        if request.price_min is not None or request.price_max is not None:
            bounds = {k: v for k, v in (("gte", request.price_min), ("lte", request.price_max)) if v is not None}
            filters.append({"range": {"price": bounds}})
        if request.radius_km is not None:
            filters.append({"geo_distance": {"distance": f"{request.radius_km}km", "distance_type": "arc",
                                             "location": {"lat": request.lat, "lon": request.lon}}})
        return filters

    def _sort(self, request: SearchRequest) -> list[Any]:
        tie, sort = {"item_id": "asc"}, request.effective_sort
        if sort is Sort.RELEVANCE:
            return [{"_score": "desc"}, tie]
        if sort is Sort.DISTANCE:
            return [{"_geo_distance": {"location": {"lat": request.lat, "lon": request.lon}, "order": "asc",
                                       "unit": "km", "distance_type": "arc"}}, tie]
        if sort is Sort.NEWEST:
            return [{"listed_at": "desc"}, tie]
        return [{"price": "asc" if sort is Sort.PRICE_ASC else "desc"}, tie]

    def _decays(self, origin_s: float, lat: float | None, lon: float | None, distance_scale_km: float) -> list[Any]:
        r = self.ranking
        functions = [_gauss("listed_at", str(int(origin_s * 1000)), f"{r.freshness_scale_s / 86400:g}d",
                            f"{r.freshness_offset_s / 86400:g}d", r.decay)]
        if lat is not None:
            functions.append(_gauss("location", {"lat": lat, "lon": lon}, f"{distance_scale_km:g}km",
                                    f"{r.distance_offset_km:g}km", r.decay))
        return functions

    def search_body(self, request: SearchRequest, cursor: Cursor | None, origin: float) -> dict[str, Any]:
        """The request body for one search (public so it can be inspected and logged)."""
        must = self._text_query(request.text, request.fuzzy) if request.text else {"match_all": {}}
        query: dict[str, Any] = {"bool": {"must": [must], "filter": self._filters(request)}}
        if request.effective_sort is Sort.RELEVANCE:
            query = {"function_score": {"query": query, "score_mode": "multiply", "boost_mode": "multiply",
                                        "functions": self._decays(origin, request.lat, request.lon,
                                                                  self.ranking.distance_scale_km)}}
        aggs: dict[str, Any] = {
            "categories": {"terms": {"field": "category", "size": len(CATEGORIES)}},
            "prices": {"range": {"field": "price", "ranges": [
                {"from": lo, **({"to": hi} if hi is not None else {})} for _, lo, hi in range_keys(PRICE_EDGES)]}},
        }
        if request.has_point:
            aggs["rings"] = {"geo_distance": {
                "field": "location", "origin": {"lat": request.lat, "lon": request.lon}, "unit": "km",
                "distance_type": "arc",
                "ranges": [{"from": lo, **({"to": hi} if hi is not None else {})}
                           for _, lo, hi in range_keys(DISTANCE_EDGES_KM)]}}
        body: dict[str, Any] = {"size": request.page_size + 1, "query": query, "sort": self._sort(request),
                                "track_total_hits": True, "aggs": aggs}
        if cursor is not None:
            body["search_after"] = list(cursor.after)
        if request.text:
            body["suggest"] = {"text": request.text, "did_you_mean": {"term": {
                "field": "title.plain", "suggest_mode": "missing", "min_word_length": 4, "prefix_length": 1,
                "max_edits": 2, "sort": "score"}}}
        return body

    def search(self, request: SearchRequest) -> SearchResponse:
        cursor = Cursor.decode(request, self.name)
        if cursor is not None and len(cursor.after) != 2:
            raise InvalidRequest("cursor", "malformed cursor")
        origin = cursor.origin if cursor else round(time.time(), 3)
        result = self._call("search", self.client.search, index=self.names.read_alias(request.language),
                            body=self.search_body(request, cursor, origin))
        raw_hits = result["hits"]["hits"]
        page = raw_hits[:request.page_size]
        hits = []
        for raw in page:
            ad = from_document(raw["_source"])
            distance = haversine_km(request.lat, request.lon, ad.lat, ad.lon) if request.has_point else None
            hits.append(Hit(ad, distance, raw.get("_score") if request.effective_sort is Sort.RELEVANCE else None))
        next_cursor = None
        if len(raw_hits) > request.page_size:
            next_cursor = Cursor(tuple(page[-1]["sort"]), origin).encode(request, self.name)
        aggs = result.get("aggregations", {})
        facets = Facets.build({b["key"]: b["doc_count"] for b in aggs["categories"]["buckets"]},
                              [b["doc_count"] for b in aggs["prices"]["buckets"]],
                              [b["doc_count"] for b in aggs["rings"]["buckets"]] if "rings" in aggs else None)
        return SearchResponse(request.language, tuple(hits), int(result["hits"]["total"]["value"]), facets,
                              self._did_you_mean(result), next_cursor)

    @staticmethod
    def _did_you_mean(result: Mapping[str, Any]) -> str | None:
        entries = (result.get("suggest") or {}).get("did_you_mean") or []
        words, changed = [], False
        for entry in entries:
            options = entry.get("options") or []
            if options:
                words.append(options[0]["text"])
                changed = True
            else:
                words.append(entry["text"])
        return " ".join(words) if changed else None

    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        match = {"multi_match": {"query": request.prefix, "type": "bool_prefix", "operator": "and",
                                 "max_expansions": AUTOCOMPLETE_EXPANSIONS,
                                 "fields": ["title.suggest", "title.suggest._2gram", "title.suggest._3gram"]}}
        query = {"function_score": {"query": match, "score_mode": "multiply", "boost_mode": "multiply",
                                    "functions": self._decays(time.time(), request.lat, request.lon,
                                                              self.ranking.autocomplete_distance_scale_km)}}
        body = {"size": request.limit * 5, "query": query, "_source": ["item_id", "title", "location"],
                "sort": [{"_score": "desc"}, {"item_id": "asc"}]}
        result = self._call("autocomplete", self.client.search, index=self.names.read_alias(request.language),
                            body=body)
        suggestions = []
        for raw in result["hits"]["hits"]:
            source = raw["_source"]
            distance = None
            if request.lat is not None:
                distance = haversine_km(request.lat, request.lon, source["location"]["lat"],
                                        source["location"]["lon"])
            suggestions.append(Suggestion(source["title"], source["item_id"], distance))
        return dedupe_suggestions(suggestions, request.limit)
