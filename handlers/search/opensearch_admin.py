"""Administration of the OpenSearch indices: templates, versioned indices, aliases, reindex with an atomic swap.

Index layout — everything through aliases, so changes never need a code change or downtime:

* ``classified_ads_<lang>`` is an alias; the documents live in versioned concrete indices
  (``classified_ads_es_v1``, ``_v2``…). The alias is the read name of the language and, with
  ``is_write_index``, its write name.
* One composable index template per language (:func:`~handlers.search.opensearch_schema.index_template`)
  matches every version of every index of the language, so creating a new version is just "create index".
  Splitting a busy category into its own index is a configuration change (``split_categories``):
  :func:`setup` creates ``bikes_es_v1`` behind the alias ``bikes_es`` (its write name) and adds it to
  ``classified_ads_es`` (read only), so searches still read the one language alias and writes of bikes go
  to their own index.
* :func:`setup` is idempotent and meant to run on every deploy: it (re)puts the templates and creates a
  missing alias (attaching it to the newest existing version if a previous setup died half-way, and
  shrugging off a concurrent deploy that won the race). It never changes a live index: mapping changes go
  through :func:`reindex` — new version, copy (``_reindex``) or fill from a source of truth, refresh, one
  atomic ``_aliases`` call that moves read and write names, then drop the old version.

Who may do this on AWS: the domain's admin role, through ``letgo search setup``; the security roles it
also applies are :mod:`handlers.search.access`. The services start with ``LETGO_SEARCH_SETUP=0`` there.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from handlers.search.errors import BackendUnavailable, SearchError
from handlers.search.languages import SUPPORTED, index_language
from handlers.search.model import Ad
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_config import IndexNames
from handlers.search.opensearch_schema import index_template, state_template, to_document
from handlers.search.opensearch_writes import bulk

T = TypeVar("T")


def setup(cluster: Cluster) -> None:
    """Templates of every language, and each missing write alias over a version (idempotent)."""
    from opensearchpy import exceptions as os_errors

    names, indices = cluster.names, cluster.client.indices
    cluster.call("put template", indices.put_index_template, name=names.state_alias(),
                 body=state_template(cluster.config))
    groups = [(names.state_alias(), [names.state_alias()])]
    for language in SUPPORTED:
        cluster.call("put template", indices.put_index_template, name=names.template(language),
                     body=index_template(language, cluster.config))
        groups.append((names.read_alias(language), cluster.write_aliases(language)))
    for read, write_aliases in groups:
        for alias in write_aliases:
            if cluster.call("alias exists", indices.exists_alias, name=alias):
                continue
            versions = _versions(cluster, alias)
            concrete = f"{alias}_v{max(versions) if versions else 1}"
            aliases = {alias: {"is_write_index": True}}
            if alias != read:
                aliases[read] = {"is_write_index": False}
            if versions:
                cluster.call("attach alias", indices.update_aliases, body={"actions": [
                    {"add": {"index": concrete, "alias": name, **spec}} for name, spec in aliases.items()]})
                continue
            try:
                indices.create(index=concrete, body={"aliases": aliases})
            except os_errors.RequestError as exc:
                if exc.error != "resource_already_exists_exception":  # a concurrent deploy won the race
                    raise SearchError(f"create {concrete}: {exc.error}: {exc.info}") from None
            except (os_errors.ConnectionError, os_errors.TransportError) as exc:
                raise BackendUnavailable(NAME, f"create {concrete}: {exc}") from None
    cluster.forget_write_indices()


def reindex(cluster: Cluster, language: str, ads: Iterable[Ad] | None = None, *, category: str | None = None,
            delete_old: bool = True) -> str:
    """Move one alias to a fresh version with the current template; returns the new concrete index.

    ``ads=None`` copies the documents of the current version with ``_reindex``; otherwise the new version
    is filled from those of ``ads`` that belong to this alias (a replay of the listing events). Writes
    that land on the old version while this runs are not carried over: pause the indexer, or replay its
    stream from the start time afterwards.
    """
    names, indices = cluster.names, cluster.client.indices
    alias = names.category_alias(category, language) if category else names.read_alias(language)
    read = names.read_alias(language)
    old = cluster.write_indices(refresh=True).get(alias)
    new = f"{alias}_v{max(_versions(cluster, alias), default=0) + 1}"
    cluster.call("create", indices.create, index=new)
    if ads is None:
        if old:
            cluster.call("reindex", cluster.client.reindex, body={"source": {"index": old}, "dest": {"index": new}},
                         wait_for_completion=True, refresh=True, request_timeout=3600)
    else:
        routed = (ad for ad in ads
                  if index_language(ad.language, ad.country) == language and cluster.target(ad, language) == alias)
        bulk(cluster, ({"_op_type": "index", "_index": new, "_id": ad.item_id, "_source": to_document(ad)}
                       for ad in routed))
    cluster.call("refresh", indices.refresh, index=new)
    actions: list[dict[str, Any]] = []
    if old:
        actions += [{"remove": {"index": old, "alias": alias}}]
        if alias != read:
            actions += [{"remove": {"index": old, "alias": read}}]
    actions += [{"add": {"index": new, "alias": alias, "is_write_index": True}}]
    if alias != read:
        actions += [{"add": {"index": new, "alias": read, "is_write_index": False}}]
    cluster.call("swap aliases", indices.update_aliases, body={"actions": actions})
    if old and delete_old:
        cluster.call("delete old version", indices.delete, index=old)
    cluster.forget_write_indices()
    return new


def rebuild(cluster: Cluster, fill: Callable[[Cluster], T]) -> T:
    """A new version of every index (each language, each split category, the listing states), filled by
    ``fill(shadow)`` — a :class:`Cluster` whose writes go to the new versions — then swapped in with one atomic
    ``_aliases`` call. Searches read the old versions until the swap; the old versions are deleted after it.
    Writes the live indexer makes meanwhile land on the old versions: pause it, or replay from the start time."""
    names, indices = cluster.names, cluster.client.indices
    current = cluster.write_indices(refresh=True)
    state_alias = names.state_alias()
    state_now = cluster.call("state alias", indices.get_alias, name=state_alias, ignore_unavailable=True)
    current = {**current, **({state_alias: next(iter(state_now))} if state_now else {})}
    fresh: dict[str, str] = {}
    for alias in [*cluster.all_write_aliases(), state_alias]:
        fresh[alias] = f"{alias}_v{max(_versions(cluster, alias), default=0) + 1}"
        cluster.call("create", indices.create, index=fresh[alias])
    result = fill(cluster.shadow(fresh))
    cluster.call("refresh", indices.refresh, index=",".join(fresh.values()))
    actions: list[dict[str, Any]] = []
    for alias, new in fresh.items():
        read = _read_alias_of(cluster, alias)
        old = current.get(alias)
        if old:
            actions += [{"remove": {"index": old, "alias": name}} for name in {alias, read}]
        actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
        if read != alias:
            actions.append({"add": {"index": new, "alias": read, "is_write_index": False}})
    cluster.call("swap aliases", indices.update_aliases, body={"actions": actions})
    old_indices = sorted({index for alias, index in current.items() if alias in fresh})
    for start in range(0, len(old_indices), 50):
        cluster.call("delete old versions", indices.delete, index=",".join(old_indices[start:start + 50]))
    cluster.forget_write_indices()
    return result


def _read_alias_of(cluster: Cluster, alias: str) -> str:
    for language in SUPPORTED:
        if alias in cluster.write_aliases(language):
            return cluster.names.read_alias(language)
    return alias


def drop(cluster: Cluster) -> None:
    """Delete every index and template of this namespace. For tests and throw-away stages only."""
    names, indices = cluster.names, cluster.client.indices
    patterns = [pattern for language in SUPPORTED for pattern in names.patterns(language)] + [names.state_pattern()]
    found = cluster.call("list indices", indices.get, index=",".join(patterns), allow_no_indices=True,
                         expand_wildcards="all")
    ordered = sorted(found)  # by name: clusters may refuse wildcard deletes (action.destructive_requires_name)
    for start in range(0, len(ordered), 50):
        cluster.call("drop", indices.delete, index=",".join(ordered[start:start + 50]))
    for template in [names.template(language) for language in SUPPORTED] + [names.state_alias()]:
        cluster.call("drop template", indices.delete_index_template, name=template, ignore=404)
    cluster.forget_write_indices()


def _versions(cluster: Cluster, alias: str) -> list[int]:
    """The version numbers of the open concrete indices behind ``alias`` (``<alias>_v<N>``)."""
    existing = cluster.call("list versions", cluster.client.indices.get, index=f"{alias}_v*", allow_no_indices=True,
                            expand_wildcards="open")
    return [v for v in (IndexNames.version_of(i, alias) for i in existing) if v is not None]
