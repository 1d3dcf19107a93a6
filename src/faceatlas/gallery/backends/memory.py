"""Search backend of SQLite galleries: one in-memory index per collection, built from the gallery file.

Writes made through the owning ``Gallery`` reach the index before the call returns; writes made by
other processes (or other ``Gallery`` objects) are noticed through a per-collection generation
counter and picked up by the next search (or an explicit refresh) by rebuilding that collection's index.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, NotFoundError
from faceatlas.gallery.backends.base import Hits, SearchBackend
from faceatlas.gallery.backends.location import BackendKind
from faceatlas.gallery.index import ExactIndex, IndexConfig, VectorIndex, make_index
from faceatlas.gallery.records import EmbeddingContract, WriteReceipt
from faceatlas.gallery.store import SqliteStore
from faceatlas.gallery.store.validate import name_forms

logger = logging.getLogger(__name__)


@dataclass
class _CollectionIndex:
    """In-memory search state of one collection, valid for one store generation."""

    collection_id: int
    generation: int
    contract: EmbeddingContract
    index: VectorIndex
    sample_person: dict[int, int] = field(default_factory=dict)
    person_samples: dict[int, set[int]] = field(default_factory=dict)
    centroids: VectorIndex | None = None
    stale: bool = False


class MemoryIndexBackend(SearchBackend):
    """Exact or approximate indexes in memory over the templates of a SQLite store; thread-safe."""

    kind: BackendKind = "sqlite"

    def __init__(self, store: SqliteStore, config: IndexConfig | None = None, auto_refresh: bool = True) -> None:
        self._store = store
        self._config = config or IndexConfig()
        self._auto_refresh = auto_refresh
        self._lock = threading.RLock()
        self._caches: dict[str, _CollectionIndex] = {}

    # ------------------------------------------------------------------ cache upkeep

    def _build(self, name: str) -> _CollectionIndex:
        """(Re)build a collection's index from the store."""
        loaded = self._store.load_vectors(name)
        index = make_index(loaded.contract.dim, self._config, size_hint=len(loaded.sample_ids))
        if len(loaded.sample_ids):
            index.add(loaded.sample_ids, loaded.vectors)
        cache = _CollectionIndex(loaded.collection_id, loaded.generation, loaded.contract, index)
        for sid, pid in zip(loaded.sample_ids.tolist(), loaded.person_ids.tolist(), strict=True):
            cache.sample_person[sid] = pid
            cache.person_samples.setdefault(pid, set()).add(sid)
        loaded.vectors.fill(0.0)
        self._caches[name] = cache
        logger.debug("built %s index for collection %r (%d samples)", index.kind, name, len(index))
        return cache

    def _key(self, name: str) -> str:
        """The cache key of a collection name: its stored form (names are found in NFC, as given, or NFD form)."""
        if name in self._caches:
            return name
        for form in name_forms(name):
            if form in self._caches:
                return form
        found = self._store.collection_name_state(name)
        return name if found is None else found[0]

    def _ensure(self, name: str) -> _CollectionIndex:
        """Return an up-to-date index for a collection, rebuilding it if the store changed."""
        name = self._key(name)
        cache = self._caches.get(name)
        if cache is not None and not cache.stale and not self._auto_refresh:
            return cache
        found = self._store.collection_name_state(name)
        if found is None:
            self._caches.pop(name, None)
            raise NotFoundError(f"collection {name!r} does not exist", collection=name)
        if cache is not None and not cache.stale and (cache.collection_id, cache.generation) == found[1]:
            return cache
        return self._build(found[0])

    def refresh(self) -> list[str]:
        """Rebuild the indexes of collections changed by other writers; return their names."""
        with self._lock:
            states = self._store.collection_states()
            for name in list(self._caches):
                if name not in states:
                    del self._caches[name]
            rebuilt = []
            for name, state in sorted(states.items()):
                cache = self._caches.get(name)
                if cache is None or cache.stale or (cache.collection_id, cache.generation) != state:
                    self._build(name)
                    rebuilt.append(name)
            return rebuilt

    def _cache_for_write(self, name: str, receipt: WriteReceipt) -> _CollectionIndex | None:
        """Return the cache if it was current right before this write, else mark it stale."""
        cache = self._caches.get(name)
        if cache is None or cache.stale:
            return None
        if cache.collection_id != receipt.collection_id or cache.generation != receipt.generation_before:
            cache.stale = True  # another writer got in between: rebuild from the store on next use
            return None
        return cache

    def _update_centroid(self, cache: _CollectionIndex, person_id: int) -> None:
        """Recompute one person's centroid in the centroid index (if that index exists)."""
        if cache.centroids is None:
            return
        cache.centroids.remove([person_id])
        sids = cache.person_samples.get(person_id)
        if sids:
            centroid = self._centroid(cache, sids)
            if centroid is not None:
                cache.centroids.add([person_id], centroid[None, :])

    @staticmethod
    def _centroid(cache: _CollectionIndex, sids: set[int]) -> npt.NDArray[np.float32] | None:
        """Return the normalised mean of some samples' templates (``None`` if it cancels out)."""
        mean = cache.index.get(sorted(sids)).astype(np.float64).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if norm < 1e-6:
            return None
        return (mean / norm).astype(np.float32)

    def _maybe_switch_kind(self, cache: _CollectionIndex) -> None:
        """Move a growing collection from the exact index to the approximate one once it passes the threshold."""
        if self._config.kind != "auto" or not isinstance(cache.index, ExactIndex):
            return
        n = len(cache.index)
        if self._config.kind_for(n) == "exact":
            return
        ids = cache.index.ids()
        index = make_index(cache.contract.dim, self._config, size_hint=n)
        index.add(ids, cache.index.get(ids))
        cache.index = index
        logger.info("collection index switched to %s at %d samples", index.kind, n)

    # ------------------------------------------------------------------ write notifications

    def collection_created(self, collection: str, collection_id: int, contract: EmbeddingContract) -> None:
        """Start an empty index for the new collection."""
        collection = self._key(collection)
        with self._lock:
            self._caches[collection] = _CollectionIndex(
                collection_id, 0, contract, make_index(contract.dim, self._config, 0)
            )

    def collection_dropped(self, collection: str) -> None:
        """Forget the collection's index."""
        collection = self._key(collection)
        with self._lock:
            self._caches.pop(collection, None)

    def collection_imported(self, collection: str) -> None:
        """Build the imported collection's index now."""
        collection = self._key(collection)
        with self._lock:
            self._build(collection)

    def samples_added(self, collection: str, receipt: WriteReceipt, vectors: npt.NDArray[np.float32]) -> None:
        """Add new templates to the index (or mark it stale if another writer got in between)."""
        collection = self._key(collection)
        with self._lock:
            cache = self._cache_for_write(collection, receipt)
            owners = receipt.sample_persons or (
                (receipt.person_id,) * len(receipt.sample_ids) if receipt.person_id is not None else ()
            )
            if cache is None or len(owners) != len(receipt.sample_ids):
                return
            cache.index.add(list(receipt.sample_ids), vectors)
            for sid, pid in zip(receipt.sample_ids, owners, strict=True):
                cache.sample_person[sid] = pid
                cache.person_samples.setdefault(pid, set()).add(sid)
            for pid in dict.fromkeys(owners):
                self._update_centroid(cache, pid)
            cache.generation = receipt.generation_after
            self._maybe_switch_kind(cache)

    def samples_removed(self, collection: str, receipt: WriteReceipt, person_deleted: bool) -> None:
        """Remove deleted samples (and a deleted person's centroid) from the index."""
        collection = self._key(collection)
        with self._lock:
            cache = self._cache_for_write(collection, receipt)
            if cache is not None:
                touched: set[int] = set()
                cache.index.remove(list(receipt.sample_ids))
                for sid in receipt.sample_ids:
                    pid = cache.sample_person.pop(sid, None)
                    if pid is None:
                        continue
                    touched.add(pid)
                    sids = cache.person_samples.get(pid)
                    if sids is not None:
                        sids.discard(sid)
                        if not sids:
                            del cache.person_samples[pid]
                for pid in touched:
                    self._update_centroid(cache, pid)
                cache.generation = receipt.generation_after
            current = self._caches.get(collection)
            if person_deleted and receipt.person_id is not None and current is not None:
                if current.centroids is not None:
                    current.centroids.remove([receipt.person_id])

    # ------------------------------------------------------------------ search

    def contract(self, collection: str) -> EmbeddingContract:
        """Return the collection's contract, refreshing its index if the store changed."""
        with self._lock:
            return self._ensure(collection).contract

    def search(self, collection: str, queries: npt.NDArray[np.float32], k: int, aggregate: str) -> Hits:
        """Best ``k`` persons per query from the in-memory index."""
        with self._lock:
            cache = self._ensure(collection)
            if len(cache.index) == 0:
                return [[] for _ in range(queries.shape[0])]
            if aggregate == "max":
                return self._search_max(cache, queries, k)
            return self._search_centroid(cache, queries, k)

    @staticmethod
    def _search_max(cache: _CollectionIndex, q: npt.NDArray[np.float32], k: int) -> Hits:
        """Best ``k`` persons per query scored by their best sample: ``(person, score, sample)``."""
        n = len(cache.index)
        want = min(k, len(cache.person_samples))
        fetch = min(n, max(k * 4, k + 16))
        while True:
            ids, scores = cache.index.search(q, fetch)
            results: Hits = []
            complete = True
            for row in range(q.shape[0]):
                seen: set[int] = set()
                hits: list[tuple[int, float, int]] = []
                for sid, score in zip(ids[row].tolist(), scores[row].tolist(), strict=True):
                    pid = cache.sample_person.get(sid)
                    if sid < 0 or pid is None or pid in seen:
                        continue
                    seen.add(pid)
                    hits.append((pid, float(score), sid))
                    if len(hits) == k:
                        break
                complete = complete and len(hits) >= want
                results.append(hits)
            if complete or fetch >= n:
                return results
            fetch = min(n, fetch * 4)

    def _search_centroid(self, cache: _CollectionIndex, q: npt.NDArray[np.float32], k: int) -> Hits:
        """Best ``k`` persons per query scored against each person's normalised mean template."""
        if cache.centroids is None:
            pids = sorted(cache.person_samples)
            centroid_index = make_index(cache.contract.dim, self._config, size_hint=len(pids))
            keep: list[int] = []
            rows: list[npt.NDArray[np.float32]] = []
            for pid in pids:
                centroid = self._centroid(cache, cache.person_samples[pid])
                if centroid is not None:
                    keep.append(pid)
                    rows.append(centroid)
            if keep:
                centroid_index.add(keep, np.stack(rows))
            cache.centroids = centroid_index
        if len(cache.centroids) == 0:
            return [[] for _ in range(q.shape[0])]
        ids, scores = cache.centroids.search(q, k)
        results: Hits = []
        for row in range(q.shape[0]):
            hits = []
            for pid, score in zip(ids[row].tolist(), scores[row].tolist(), strict=True):
                sids = sorted(cache.person_samples.get(pid, ()))
                if pid < 0 or not sids:
                    continue
                best = sids[int(np.argmax(cache.index.get(sids) @ q[row]))]
                hits.append((pid, float(score), best))
            results.append(hits)
        return results

    # ------------------------------------------------------------------ upkeep

    def index_info(self, collection: str) -> tuple[int, str | None]:
        """Return the size and kind of the collection's in-memory index (0, None if not built)."""
        collection = self._key(collection)
        with self._lock:
            cache = self._caches.get(collection)
            return (len(cache.index), cache.index.kind) if cache is not None else (0, None)

    def check(self) -> list[str]:
        """Decrypt every template of every collection; report the collections that fail."""
        problems = []
        for col in self._store.list_collections():
            try:
                self._store.load_vectors(col.name).vectors.fill(0.0)
            except FaceAtlasError as exc:
                problems.append(f"collection {col.name!r}: {exc.message}")
        return problems

    def close(self) -> None:
        """Drop every index."""
        with self._lock:
            self._caches.clear()
