"""The connection to one OpenSearch cluster: the client, its errors as the search errors, where writes go.

Every other OpenSearch module talks to the cluster through a :class:`Cluster`, so three things are decided
once:

* **Authentication**: with ``aws_region`` set, requests are signed with SigV4 (``requests-aws4auth``,
  refreshing credentials from the default boto3 chain: the Lambda's or the Beanstalk instance's role);
  otherwise plain HTTP(S). The client is created on first use, so building a backend never touches the
  network (the API starts even while the domain is away).
* **Errors**: connection trouble, 5xx and 429 become
  :class:`~handlers.search.errors.BackendUnavailable` (an outage: the indexer waits it out, the API answers
  503); any other refusal is a :class:`~handlers.search.errors.SearchError` carrying the engine's reason.
* **Write targets**: a listing is written through its write alias — ``classified_ads_<lang>``, or
  ``<category>_<lang>`` for a split category — and :meth:`Cluster.write_indices` remembers which concrete
  index each alias writes to, re-resolving after a reindex (which moves the aliases) or a miss.
"""
from __future__ import annotations

from typing import Any, Callable

from handlers.search.errors import BackendUnavailable, SearchError
from handlers.search.languages import SUPPORTED
from handlers.search.model import Ad
from handlers.search.opensearch_config import IndexNames, OpenSearchConfig

NAME = "opensearch"  # the backend's name: in errors, cursors and /health


class Cluster:
    """One cluster under one configuration."""

    def __init__(self, config: OpenSearchConfig, client: Any = None, overrides: dict[str, str] | None = None) -> None:
        self.config = config
        self.names = IndexNames(config.namespace)
        self._client = client
        self._write_indices: dict[str, str] | None = None  # write alias -> concrete index (cache)
        self.overrides = dict(overrides or {})  # alias -> the concrete index a rebuild fills instead

    def shadow(self, overrides: dict[str, str]) -> "Cluster":
        """The same cluster and client, writing to (and reading states from) other concrete indices: a rebuild
        fills new versions through it while searches still read the old ones."""
        return Cluster(self.config, self.client, overrides)

    def resolve(self, alias: str) -> str:
        return self.overrides.get(alias, alias)

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
                    raise BackendUnavailable(NAME, "SigV4 requested but no AWS credentials were found")
                options.update(http_auth=AWS4Auth(region=self.config.aws_region, service=self.config.aws_service,
                                                  refreshable_credentials=credentials),
                               connection_class=RequestsHttpConnection, verify_certs=True)
            self._client = OpenSearch(**options)
        return self._client

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; connection trouble and 5xx become BackendUnavailable, other refusals SearchError."""
        from opensearchpy import exceptions as os_errors

        try:
            return fn(*args, **kwargs)
        except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
            raise BackendUnavailable(NAME, f"{what}: {exc}") from None
        except os_errors.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            if status >= 500 or status == 429:
                raise BackendUnavailable(NAME, f"{what}: {status} {exc.error}") from None
            raise SearchError(f"{what}: {status} {exc.error}: {exc.info}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- where writes go ---------------------------------------------------------------------------------------
    def write_aliases(self, language: str) -> list[str]:
        return [self.names.read_alias(language)] + [self.names.category_alias(c, language)
                                                     for c in self.config.split_categories]

    def all_write_aliases(self) -> list[str]:
        return [alias for language in SUPPORTED for alias in self.write_aliases(language)]

    def target(self, ad: Ad, language: str) -> str:
        """The write alias of this ad in this language's index."""
        if ad.category in self.config.split_categories:
            return self.names.category_alias(ad.category, language)
        return self.names.read_alias(language)

    def write_indices(self, refresh: bool = False) -> dict[str, str]:
        """Write alias -> the concrete index it writes to (cached; re-resolved after a reindex or a miss)."""
        if self.overrides:
            return {alias: index for alias, index in self.overrides.items() if alias != self.names.state_alias()}
        if self._write_indices is None or refresh:
            aliases = self.all_write_aliases()
            found = self.call("get aliases", self.client.indices.get_alias, name=",".join(aliases),
                              ignore_unavailable=True)
            resolved: dict[str, str] = {}
            for index, body in found.items():
                for alias, spec in (body.get("aliases") or {}).items():
                    if alias in aliases and (spec.get("is_write_index") or alias not in resolved):
                        resolved[alias] = index
            self._write_indices = resolved
        return self._write_indices

    def forget_write_indices(self) -> None:
        """The aliases moved (setup, reindex, drop): resolve them again on the next write."""
        self._write_indices = None
