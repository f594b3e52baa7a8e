"""The one search interface both engines implement, and the behaviour they share.

Two backends sit behind it: OpenSearch in AWS (:mod:`handlers.search.opensearch_backend`) and tantivy
embedded in the process for the local stage (:mod:`handlers.search.tantivy_backend`). Callers — the search
API and the stream indexer — only ever see :class:`SearchBackend`, and one contract test suite
(``tests/functional/test_search_contract.py``) holds both engines to the same answers.

Shared rules, implemented here once so the engines cannot drift:

* ``index(ads)`` is idempotent by ``item_id``: the last version of an ad in a batch wins, re-indexing
  replaces, and an ad whose language changed leaves its old language index (it is routed by
  :func:`~handlers.search.languages.index_language`).
* Written listings become searchable after ``refresh()`` (OpenSearch refreshes by itself every second; the
  embedded engine on request), like every near-real-time engine.
* Relevance = text score x freshness decay (x distance decay when the request has a point), with the
  parameters of :class:`Ranking`; OpenSearch applies them as ``function_score`` gauss decays.
* Typo tolerance is a **fallback**, never a flood: a search first matches exactly (stems, compound heads). Only
  when that finds fewer than ``Ranking.fuzzy_below`` listings are the query's *misspelt* words — those not in
  the index's title vocabulary, 4+ letters, no digit — widened to their closest indexed spellings
  (:func:`expansions`: same first letter, 1 edit up to 6 letters, 2 from 7). Exact matches then come first in
  every sort (relevance, price, distance, date), the widened ones after them, marked ``approximate``, and only
  then is there a did-you-mean (:func:`corrected`). A query that matched plenty ("bikes": stemmed to "bike")
  gets no fuzzy matches at all, so no "Nike" trainers, and a word that exists ("casco") is never read as
  another ("casio"). The cursor remembers which of the two passes a listing came from.
* The stream writes through :meth:`SearchBackend.apply`: listing *changes* (:mod:`.listings`) merged by
  version into each listing's stored state, whatever order they arrive in, and the search document derived
  from that state. The engines differ only in how they keep concurrent writers apart — OpenSearch with
  optimistic concurrency on the state document (``if_seq_no``/``if_primary_term``, re-read and re-merge on a
  conflict) and external versions on the search documents (``version_type=external_gte``: an older
  derived write never replaces a newer one); the embedded engine with one lock around read-merge-write.
  ``index``/``remove`` stay as unversioned bulk loads of a known final state (benchmarks, tests).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Iterable

from handlers.search.errors import InvalidAd
from handlers.search.languages import index_language
from handlers.search.listings import Change, ListingState
from handlers.search.model import Ad, AutocompleteRequest, SearchRequest, SearchResponse, Suggestion

SPELLING_PREFIX = 1  # a typo keeps the first letter (OpenSearch term suggester prefix_length 1)
SPELLING_MAX_EDITS = 2  # the suggester's limit; :func:`fuzzy_edits` is stricter for shorter words
SPELLING_MIN_LENGTH = 4  # shorter words are never corrected (suggester min_word_length)
SPELLING_CANDIDATES = 25  # candidates asked of the suggester per word, before :func:`expansions` picks
MAX_EXPANSIONS = 5  # spellings a misspelt word is widened to in the fallback
AUTOCOMPLETE_EXPANSIONS = 50  # match_bool_prefix max_expansions
APPLY_ATTEMPTS = 8  # read-merge-write rounds for listings another writer changed meanwhile


@dataclass(frozen=True, slots=True)
class Ranking:
    """Decays that make a relevant, fresh and near listing rank first (OpenSearch ``gauss`` semantics)."""

    freshness_scale_s: float = 30 * 86400.0  # a 31-day-old listing scores half of a new one...
    freshness_offset_s: float = 86400.0  # ...and anything from the last day scores as new
    distance_scale_km: float = 10.0
    distance_offset_km: float = 1.0
    decay: float = 0.5
    autocomplete_distance_scale_km: float = 25.0
    title_boost: float = 3.0
    description_boost: float = 0.5
    fuzzy_below: int = 10  # the typo fallback runs only when exact and stemmed matching found fewer listings




def fuzzy_edits(term: str) -> int:
    """Edits a misspelt query word may be off by: none below 4 letters or with a digit (a model number such as
    "s23" is not a typo of "s22"), one up to 6 letters, two from 7."""
    if len(term) < SPELLING_MIN_LENGTH or any(c.isdigit() for c in term):
        return 0
    return 1 if len(term) < 7 else SPELLING_MAX_EDITS


def expansions(term: str, candidates: Iterable[tuple[str, int]]) -> list[str]:
    """The indexed spellings (``(word, document frequency)`` candidates) a misspelt ``term`` is widened to: same
    first letter, within :func:`fuzzy_edits`, closest first, then the most frequent; at most MAX_EXPANSIONS."""
    edits = fuzzy_edits(term)
    if not edits:
        return []
    scored = []
    for text, freq in candidates:
        if text == term or text[:SPELLING_PREFIX] != term[:SPELLING_PREFIX] or any(c.isdigit() for c in text):
            continue
        distance = bounded_edit_distance(term, text, edits)
        if distance <= edits:
            scored.append((distance, -freq, text))
    return [text for _, _, text in sorted(scored)[:MAX_EXPANSIONS]]


def corrected(words: list[tuple[str, str]], widened: dict[str, list[str]]) -> str | None:
    """Did-you-mean: the query's words (as typed, as indexed) with each misspelt one replaced by its best spelling,
    the others as typed (None: nothing to fix)."""
    if not any(widened.get(plain) for _, plain in words):
        return None
    return " ".join(widened[plain][0] if widened.get(plain) else typed for typed, plain in words)


@dataclass
class Plan:
    """One listing's write: the state read (None: never seen), the merged state, the engine's guard token."""

    item_id: str
    old: ListingState | None
    new: ListingState
    token: object = None  # the engine's concurrency token of ``old`` (OpenSearch: seq_no + primary_term)
    ad: Ad | None = None  # the search document the new state gives (None: not searchable)
    invalid: str | None = None  # why the merged state gives no usable ad (an invalid update, say)

    @property
    def changed(self) -> bool:
        return self.old is None or not self.old.same(self.new) or self.old.placed != self.new.placed


@dataclass
class ApplyResult:
    listings: int = 0  # listings the changes touched
    searchable: int = 0  # of them, searchable afterwards
    hidden: int = 0  # of them, not searchable afterwards (sold, deleted, or only an early update so far)
    states_written: int = 0  # states that changed (a replayed batch changes none)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (item_id, why) merged into no usable ad
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item_id, why) the engine refused


class SearchBackend(abc.ABC):
    """A search engine holding one index per supported language."""

    name: str = "abstract"

    # -- lifecycle -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Create whatever is missing (indices, templates, aliases). Idempotent: run it on every start/deploy."""

    def refresh(self) -> None:  # noqa: B027 - optional: an engine that searches what it wrote needs nothing
        """Make everything written so far searchable."""

    def close(self) -> None:  # noqa: B027 - optional: an engine holding no resources needs nothing
        """Release clients, writers and files. The backend is unusable afterwards."""

    def __enter__(self) -> "SearchBackend":
        self.setup()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------
    def index(self, ads: Iterable[Ad]) -> int:
        """Write listings in bulk, replacing any earlier version (by item_id). Returns how many were written.

        Raises :class:`~handlers.search.errors.IndexingFailed` naming the refused ones, after writing the rest.
        """
        latest: dict[str, Ad] = {}
        for ad in ads:
            latest.pop(ad.item_id, None)
            latest[ad.item_id] = ad
        if not latest:
            return 0
        by_language: dict[str, list[Ad]] = {}
        for ad in latest.values():
            by_language.setdefault(index_language(ad.language, ad.country), []).append(ad)
        self._write(by_language)
        return len(latest)

    def remove(self, item_ids: Iterable[str]) -> None:
        """Delete listings from every language index. Unknown ids are fine (idempotent)."""
        ids = list(dict.fromkeys(item_ids))
        if ids:
            self._delete(ids)

    def apply(self, changes: Iterable[Change]) -> ApplyResult:
        """Merge listing changes into their stored states and write the search documents they give.

        Any order, any split into calls, any replay of the same changes ends in the same index (see
        :mod:`.listings`). A listing another writer changed between our read and our write is re-read and
        re-merged; one the engine refuses is in ``failures`` (its events should be retried)."""
        by_item: dict[str, list[Change]] = {}
        for change in changes:
            by_item.setdefault(change.item_id, []).append(change)
        result = ApplyResult(listings=len(by_item))
        todo, done = list(by_item), []
        for _ in range(APPLY_ATTEMPTS):
            if not todo:
                break
            current = self._read_states(todo)
            plans = [self._plan(item_id, *current.get(item_id, (None, None)), by_item[item_id]) for item_id in todo]
            todo = self._commit(plans, result)
            again = set(todo)
            done += [plan for plan in plans if plan.item_id not in again]
        failed = {item_id for item_id, _ in result.failures}
        for plan in done:
            if plan.item_id in failed:
                continue
            result.states_written += plan.changed
            result.searchable += plan.ad is not None
            result.hidden += plan.ad is None
            if plan.invalid:
                result.invalid.append((plan.item_id, plan.invalid))
        result.failures += [(item_id, "other writers kept changing it; retry") for item_id in todo]
        return result

    def _plan(self, item_id: str, old: ListingState | None, token: object, changes: list[Change]) -> Plan:
        new = (old or ListingState(item_id)).merge_all(changes)
        invalid = None
        try:
            ad = new.ad()
        except (InvalidAd, TypeError, ValueError) as exc:
            ad, invalid = None, str(exc)
        placed = self._placement(ad) if ad is not None else None
        return Plan(item_id, old, replace(new, placed=placed), token, ad, invalid)

    def states(self, item_ids: Iterable[str]) -> dict[str, ListingState]:
        """The stored state of these listings (tombstones and early updates included), by id."""
        ids = list(dict.fromkeys(item_ids))
        return {item_id: state for item_id, (state, _) in self._read_states(ids).items()} if ids else {}

    def purge(self, before: float) -> int:
        """Forget tombstones and partial states whose last event is older than ``before`` (epoch seconds)."""
        return self._purge(before)

    @abc.abstractmethod
    def rebuild(self, changes: Iterable[Change], chunk: int = 5000) -> ApplyResult:
        """Replace every index with the states these changes give (a reindex from the event history). How the
        old content goes is the engine's: tantivy clears in place, OpenSearch fills new index versions and swaps
        them in; both fill with :meth:`_fill`."""

    def _fill(self, changes: Iterable[Change], chunk: int) -> ApplyResult:
        """Apply ``changes`` in chunks to empty indices, then refresh; the sum of every chunk's result."""
        total = ApplyResult()
        batch: list[Change] = []
        for change in [*changes, None]:
            if change is not None:
                batch.append(change)
            if batch and (change is None or len(batch) >= chunk):
                part = self.apply(batch)
                for name in ("listings", "searchable", "hidden", "states_written"):
                    setattr(total, name, getattr(total, name) + getattr(part, name))
                total.invalid += part.invalid
                total.failures += part.failures
                batch = []
        self.refresh()
        return total

    # -- reading ---------------------------------------------------------------------------------------------
    def fetch(self, item_ids: Iterable[str]) -> dict[str, Ad]:
        """The indexed version of these listings, by id, whatever their language; unknown ids are left out.

        Realtime (no refresh needed): the stream indexer patches an ItemUpdated onto what is indexed.
        """
        ids = list(dict.fromkeys(item_ids))
        return self._fetch(ids) if ids else {}

    @abc.abstractmethod
    def search(self, request: SearchRequest) -> SearchResponse:
        """One page of results, the exact total, facets over every match, did-you-mean and the next cursor."""

    def autocomplete(self, prefix: str, language: str, limit: int = 10, lat: float | None = None,
                     lon: float | None = None) -> list[Suggestion]:
        """Distinct titles completing ``prefix`` (the last word as a prefix), nearest first given lat/lon."""
        return self._autocomplete(AutocompleteRequest(prefix, language, limit, lat, lon))

    # -- what each engine provides ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _write(self, by_language: dict[str, list[Ad]]) -> None:
        """Upsert these ads into their language's index and drop them from any other language index."""

    @abc.abstractmethod
    def _delete(self, item_ids: list[str]) -> None:
        ...

    @abc.abstractmethod
    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        ...

    @abc.abstractmethod
    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        ...

    def _placement(self, ad: Ad) -> str:
        """Where this ad's search document goes (its language index; OpenSearch: its write alias)."""
        return index_language(ad.language, ad.country)

    @abc.abstractmethod
    def _read_states(self, item_ids: list[str]) -> dict[str, tuple[ListingState, object]]:
        """The stored states with their concurrency tokens; unknown ids are left out."""

    @abc.abstractmethod
    def _commit(self, plans: list[Plan], result: ApplyResult) -> list[str]:
        """Write the changed states (guarded by their tokens) and every plan's search document; returns the ids
        whose state another writer changed since it was read (to re-read and merge again). Listings the engine
        refused go to ``result.failures``."""

    @abc.abstractmethod
    def _purge(self, before: float) -> int:
        ...


def dedupe_suggestions(candidates: Iterable[Suggestion], limit: int) -> list[Suggestion]:
    """First occurrence of each title (case- and space-insensitive), at most ``limit``."""
    seen: set[str] = set()
    out: list[Suggestion] = []
    for suggestion in candidates:
        key = " ".join(suggestion.text.casefold().split())
        if key not in seen:
            seen.add(key)
            out.append(suggestion)
            if len(out) == limit:
                break
    return out


def bounded_edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition costs 1, as in OpenSearch), or ``limit + 1`` if above."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else limit + 1
