"""Where the OpenSearch cluster is and what the backend calls things there: read once, checked once.

:class:`OpenSearchConfig` is the whole configuration of the OpenSearch backend. Code and tests build it
directly (a bad value is a ``ValueError``, a programming error); a deployment builds it from its environment
with :meth:`OpenSearchConfig.from_env`, where a bad value is a
:class:`~handlers.core.config.ConfigError` naming the variable to fix — the one rule of
:func:`handlers.search.factory.open_backend`, which the indexer, the API and the CLI all go through.

:class:`IndexNames` makes every template, alias and index name from the namespace, so that isolating a test
run on a shared cluster, or splitting a busy category into its own index, is configuration and not code
(``handlers/search/access.py`` grants its roles on exactly these patterns).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from handlers.core.config import ConfigError, Env
from handlers.search.model import CATEGORIES

_URL = re.compile(r"^https?://[^/\s]+")
_AWS_ENDPOINT = re.compile(r"\.amazonaws\.com(:\d+)?/?$")
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# the variable a deployment sets for each field (the fields without one are code-only)
VARIABLES = {"url": "LETGO_OPENSEARCH_URL", "aws_region": "LETGO_OPENSEARCH_AWS_REGION",
             "aws_service": "LETGO_OPENSEARCH_AWS_SERVICE", "namespace": "LETGO_OPENSEARCH_NAMESPACE",
             "split_categories": "LETGO_OPENSEARCH_SPLIT_CATEGORIES", "shards": "LETGO_OPENSEARCH_SHARDS",
             "replicas": "LETGO_OPENSEARCH_REPLICAS"}


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
        for _field, message in _problems(vars(self)):
            raise ValueError(message)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | Env | None = None) -> "OpenSearchConfig":
        """``LETGO_OPENSEARCH_URL`` (required), ``LETGO_OPENSEARCH_AWS_REGION`` (SigV4; defaults to
        ``AWS_REGION`` for ``*.amazonaws.com`` hosts), ``LETGO_OPENSEARCH_AWS_SERVICE`` (``es``),
        ``LETGO_OPENSEARCH_NAMESPACE``, ``LETGO_OPENSEARCH_SPLIT_CATEGORIES`` (comma-separated),
        ``LETGO_OPENSEARCH_SHARDS`` / ``_REPLICAS``. Raises :class:`ConfigError` naming the variable."""
        env = env if isinstance(env, Env) else Env(os.environ if env is None else env)
        url = (env.optional(VARIABLES["url"]) or "").strip()
        if not url:
            raise ConfigError(VARIABLES["url"], "required: the domain endpoint as https://host "
                                                "(LETGO_SEARCH_BACKEND=opensearch)")
        region = env.optional(VARIABLES["aws_region"]) or (
            env.optional("AWS_REGION") if _AWS_ENDPOINT.search(url) else None)
        split = tuple(c.strip() for c in (env.optional(VARIABLES["split_categories"]) or "").split(",") if c.strip())
        values: dict[str, Any] = {
            "url": url, "aws_region": region or None, "aws_service": env.optional(VARIABLES["aws_service"], "es"),
            "namespace": env.optional(VARIABLES["namespace"], ""), "split_categories": split,
            "shards": env.integer(VARIABLES["shards"], 1), "replicas": env.integer(VARIABLES["replicas"], 0)}
        for field, message in _problems(values):
            raise ConfigError(VARIABLES[field], message)
        return cls(**values)


def _problems(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, why) for every value that cannot work; the one set of rules of both ways to build a config."""
    url = values.get("url")
    if not _URL.match(url or ""):
        yield "url", f"OpenSearch url {url!r}: expected http(s)://host[:port]"
    namespace = values.get("namespace", "")
    if namespace and not _NAMESPACE.match(namespace):
        yield "namespace", f"namespace {namespace!r}: lowercase letters, digits, '_' and '-' only"
    unknown = set(values.get("split_categories", ())) - set(CATEGORIES)
    if unknown:
        yield "split_categories", f"split_categories: {sorted(unknown)} are not categories"
    limits = (("shards", 1, ">="), ("replicas", 0, ">="), ("bulk_chunk", 1, ">="), ("timeout_s", 0, ">"))
    for field, bound, rule in limits:
        value = values.get(field)
        if value is not None and not (value > bound if rule == ">" else value >= bound):
            yield field, f"{field} {value!r}: must be {rule} {bound}"


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

    def state_alias(self) -> str:
        """The listing states (tombstones, early updates: handlers/search/listings.py), one index for all."""
        return f"{self.namespace}listing_state"

    def patterns(self, language: str) -> list[str]:
        return [f"{self.read_alias(language)}_v*"] + [f"{self.category_alias(c, language)}_v*" for c in CATEGORIES]

    def state_pattern(self) -> str:
        return f"{self.state_alias()}_v*"

    @staticmethod
    def version_of(index: str, alias: str) -> int | None:
        match = re.fullmatch(re.escape(alias) + r"_v(\d+)", index)
        return int(match.group(1)) if match else None
