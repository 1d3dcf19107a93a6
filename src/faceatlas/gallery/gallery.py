"""The ``Gallery`` facade: collections of known persons, their templates, and 1:N search.

A gallery is one SQLite file (see :mod:`faceatlas.gallery.sqlite_store`) plus one in-memory index
per collection, built from the file when the gallery opens. Writes made through this object reach
the index before the call returns; writes made by other processes (or other ``Gallery`` objects)
are noticed through a per-collection generation counter and picked up by the next ``search`` (or
an explicit :meth:`Gallery.refresh`) by rebuilding that collection's index.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.crypto import KeyLike, resolve_key
from faceatlas.gallery.index import (
    DEFAULT_HNSW_THRESHOLD,
    ExactIndex,
    HnswIndex,
    HnswParams,
    IndexConfig,
    IndexKind,
    StorageDType,
    VectorIndex,
    make_index,
)
from faceatlas.gallery.models import (
    AuditEvent,
    Candidate,
    Collection,
    CollectionStats,
    EmbeddingContract,
    GalleryStats,
    Person,
    Sample,
)
from faceatlas.gallery.sqlite_store import (
    DEFAULT_BUSY_TIMEOUT_S,
    NewSample,
    PersonRef,
    SqliteStore,
    WriteReceipt,
    check_sha256,
)
from faceatlas.gallery.transfer import ExportReader, write_export
from faceatlas.types import Box, Template

logger = logging.getLogger(__name__)

Aggregate = Literal["max", "centroid"]
QueryLike = Template | Sequence[Template] | npt.ArrayLike
BoxLike = Box | Sequence[float]

ENV_ACTOR = "FACEATLAS_ACTOR"


def default_actor() -> str:
    """Return the audit actor: ``$FACEATLAS_ACTOR`` or ``user@host``."""
    env = os.environ.get(ENV_ACTOR)
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


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


def _box(value: BoxLike | None) -> Box | None:
    """Accept a Box, four numbers ``[x1, y1, x2, y2]`` or ``None``."""
    if value is None or isinstance(value, Box):
        return value
    try:
        coords = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InvalidInputError("invalid_input", "a box must be a Box or [x1, y1, x2, y2]") from None
    if len(coords) != 4 or not all(math.isfinite(c) for c in coords):
        raise InvalidInputError("invalid_input", "a box must be four finite numbers [x1, y1, x2, y2]")
    return Box(*coords)


def _per_sample(value: Any, n: int, what: str, scalar: tuple[type, ...]) -> list[Any]:
    """Expand an optional per-sample argument: ``None``, one value for every template, or ``n`` values."""
    if value is None:
        return [None] * n
    if isinstance(value, scalar) and not isinstance(value, bool):
        return [value] * n
    if what == "boxes" and _is_box_numbers(value):
        if n == 1:
            return [value]
        raise InvalidInputError("invalid_input", "boxes: give one box per template")
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes, bytearray)):
        items = list(value)
        if len(items) == n:
            return items
    raise InvalidInputError("invalid_input", f"{what} must be None, one value, or a sequence of {n} values")


def _is_box_numbers(value: Any) -> bool:
    """Tell whether ``value`` is a flat sequence of four numbers (one box)."""
    return (
        isinstance(value, (list, tuple, np.ndarray))
        and len(value) == 4
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value)
    )


def _optional_number(value: Any, what: str) -> float | None:
    """Validate an optional finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError("invalid_input", f"{what} must be a number or None")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError("invalid_input", f"{what} must be finite")
    return out


class Gallery:
    """A gallery of known persons on disk with per-collection in-memory indexes; thread-safe."""

    def __init__(
        self,
        store: SqliteStore,
        index_config: IndexConfig | None = None,
        actor: str | None = None,
        auto_refresh: bool = True,
    ) -> None:
        self._store = store
        self._config = index_config or IndexConfig()
        self._actor = actor or default_actor()
        self._auto_refresh = auto_refresh
        self._lock = threading.RLock()
        self._caches: dict[str, _CollectionIndex] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key: KeyLike | None = None,
        index: IndexKind | IndexConfig = "auto",
        *,
        create: bool = True,
        actor: str | None = None,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
        index_dtype: StorageDType = "float32",
        hnsw: HnswParams | None = None,
        auto_refresh: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> Gallery:
        """Open (or create) the gallery file at ``path`` and build every collection's index.

        ``key``: raw 32 bytes, a hex/base64/passphrase string, a ``pathlib.Path`` to a key file,
        or ``None`` to use ``FACEATLAS_KEY`` / ``FACEATLAS_KEY_FILE`` (no encryption if neither is set).
        A new gallery is encrypted exactly when a key is available at creation.
        """
        config = index if isinstance(index, IndexConfig) else IndexConfig(
            kind=index, hnsw_threshold=hnsw_threshold, dtype=index_dtype, hnsw=hnsw or HnswParams()
        )
        store = SqliteStore(path, resolve_key(key), create=create, busy_timeout=busy_timeout)
        gallery = cls(store, config, actor, auto_refresh)
        try:
            gallery.refresh()
        except BaseException:
            store.close()
            raise
        return gallery

    def close(self) -> None:
        """Close the file and drop the in-memory indexes."""
        with self._lock:
            self._caches.clear()
            self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self._store.path)!r}, encrypted={self._store.encrypted})"

    @property
    def path(self) -> Path:
        """The gallery file."""
        return self._store.path

    @property
    def encrypted(self) -> bool:
        """Whether templates are encrypted at rest."""
        return self._store.encrypted

    @property
    def store(self) -> SqliteStore:
        """The underlying SQLite store."""
        return self._store

    def _who(self, actor: str | None) -> str:
        """Resolve the audit actor of one call."""
        return actor if actor else self._actor

    # ------------------------------------------------------------------ index cache

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

    def _ensure(self, name: str) -> _CollectionIndex:
        """Return an up-to-date index for a collection, rebuilding it if the store changed."""
        cache = self._caches.get(name)
        if cache is not None and not cache.stale and not self._auto_refresh:
            return cache
        state = self._store.collection_state(name)
        if state is None:
            self._caches.pop(name, None)
            raise NotFoundError(f"collection {name!r} does not exist", collection=name)
        if cache is not None and not cache.stale and (cache.collection_id, cache.generation) == state:
            return cache
        return self._build(name)

    def refresh(self) -> list[str]:
        """Pick up changes made by other processes now; return the collections whose index was rebuilt."""
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
        """Move a growing collection from the exact index to HNSW once it passes the threshold."""
        if self._config.kind != "auto" or not isinstance(cache.index, ExactIndex):
            return
        if self._config.kind_for(len(cache.index)) != "hnsw":
            return
        ids = cache.index.ids()
        hnsw = HnswIndex(cache.contract.dim, self._config.metric, self._config.dtype, self._config.hnsw)
        hnsw.add(ids, cache.index.get(ids))
        cache.index = hnsw
        logger.info("collection index switched to HNSW at %d samples", len(ids))

    def _forget_samples(self, name: str, receipt: WriteReceipt) -> None:
        """Remove deleted samples from a collection's index (or mark it stale)."""
        cache = self._cache_for_write(name, receipt)
        if cache is None:
            return
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

    # ------------------------------------------------------------------ collections

    def create_collection(
        self,
        name: str,
        model_id: str,
        model_sha256: str,
        dim: int,
        preprocessing: str = "v1",
        *,
        actor: str | None = None,
    ) -> Collection:
        """Create an empty collection pinned to an embedding contract (``conflict`` if it exists)."""
        with self._lock:
            col = self._store.create_collection(
                name, EmbeddingContract(model_id, model_sha256, dim, preprocessing), self._who(actor)
            )
            self._caches[name] = _CollectionIndex(
                col.id, 0, col.contract, make_index(col.contract.dim, self._config, 0)
            )
            return col

    def get_collection(self, name: str) -> Collection:
        """Return a collection with its person and sample counts."""
        return self._store.get_collection(name)

    def list_collections(self) -> list[Collection]:
        """Return all collections, by name."""
        return self._store.list_collections()

    def delete_collection(self, name: str, *, actor: str | None = None) -> int:
        """Delete a collection with everything in it (scrubbed from disk); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_collection(name, self._who(actor))
            self._caches.pop(name, None)
            return len(receipt.sample_ids)

    # ------------------------------------------------------------------ persons

    def add_person(
        self,
        collection: str,
        external_id: str,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> Person:
        """Add a person (``conflict`` if ``external_id`` is already used in the collection)."""
        return self._store.add_person(collection, external_id, name, metadata, self._who(actor))

    def get_person(self, collection: str, person: PersonRef) -> Person:
        """Return a person by internal id (int) or external id (str)."""
        return self._store.get_person(collection, person)

    def list_persons(self, collection: str, limit: int | None = None, offset: int = 0) -> list[Person]:
        """Return a collection's persons ordered by internal id, optionally paged."""
        return self._store.list_persons(collection, limit, offset)

    def delete_person(self, collection: str, person: PersonRef, *, actor: str | None = None) -> int:
        """Delete a person and all its samples (scrubbed from disk); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_person(collection, person, self._who(actor))
            self._forget_samples(collection, receipt)
            cache = self._caches.get(collection)
            if cache is not None and cache.centroids is not None and receipt.person_id is not None:
                cache.centroids.remove([receipt.person_id])
            return len(receipt.sample_ids)

    # ------------------------------------------------------------------ samples

    def add_samples(
        self,
        collection: str,
        person: PersonRef,
        templates: Template | Sequence[Template],
        qualities: float | Sequence[float | None] | None = None,
        detection_scores: float | Sequence[float | None] | None = None,
        boxes: BoxLike | Sequence[BoxLike | None] | None = None,
        image_sha256: str | Sequence[str | None] | None = None,
        crops: bytes | Sequence[bytes | None] | None = None,
        *,
        actor: str | None = None,
    ) -> list[int]:
        """Enrol templates for a person in one transaction; return the new sample ids in order.

        Optional per-sample fields take one value per template (or a single value for a single
        template). Templates must match the collection's model id and dimension (``model_mismatch``).
        """
        items = [templates] if isinstance(templates, Template) else list(templates)
        if not all(isinstance(t, Template) for t in items):
            raise InvalidInputError("invalid_input", "templates must be faceatlas.types.Template objects")
        if not items:
            return []
        model_ids = {t.model_id for t in items}
        if len(model_ids) != 1:
            raise FaceAtlasError("model_mismatch", "templates from several models in one call")
        n = len(items)
        numbers = (int, float, np.number)
        q = _per_sample(qualities, n, "qualities", numbers)
        d = _per_sample(detection_scores, n, "detection_scores", numbers)
        b = [_box(v) for v in _per_sample(boxes, n, "boxes", (Box,))]
        h = [check_sha256(v) for v in _per_sample(image_sha256, n, "image_sha256", (str,))]
        c = _per_sample(crops, n, "crops", (bytes, bytearray, memoryview))
        for crop in c:
            if crop is not None and not isinstance(crop, (bytes, bytearray, memoryview)):
                raise InvalidInputError("invalid_input", "crops must be bytes (encoded image) or None")
        new = [
            NewSample(
                vector=t.vector,
                quality=_optional_number(q[i], "quality"),
                detection_score=_optional_number(d[i], "detection_score"),
                box=b[i],
                image_sha256=h[i],
                crop=None if c[i] is None else bytes(c[i]),
            )
            for i, t in enumerate(items)
        ]
        with self._lock:
            receipt = self._store.add_samples(collection, person, new, self._who(actor), model_id=items[0].model_id)
            cache = self._cache_for_write(collection, receipt)
            if cache is not None and receipt.person_id is not None:
                pid = receipt.person_id
                cache.index.add(list(receipt.sample_ids), np.stack([t.vector for t in items]))
                for sid in receipt.sample_ids:
                    cache.sample_person[sid] = pid
                cache.person_samples.setdefault(pid, set()).update(receipt.sample_ids)
                self._update_centroid(cache, pid)
                cache.generation = receipt.generation_after
                self._maybe_switch_kind(cache)
            return list(receipt.sample_ids)

    def get_sample(self, collection: str, sample_id: int, include_template: bool = False) -> Sample:
        """Return a sample's record (its template only when asked)."""
        return self._store.get_sample(collection, sample_id, include_template)

    def list_samples(self, collection: str, person: PersonRef) -> list[Sample]:
        """Return a person's samples, without templates."""
        return self._store.list_samples(collection, person)

    def get_crop(self, collection: str, sample_id: int) -> bytes | None:
        """Return the crop bytes stored with a sample, if any."""
        return self._store.get_crop(collection, sample_id)

    def delete_sample(self, collection: str, sample_id: int, *, actor: str | None = None) -> None:
        """Delete one sample (scrubbed from disk and removed from the index before returning)."""
        with self._lock:
            receipt = self._store.delete_sample(collection, sample_id, self._who(actor))
            self._forget_samples(collection, receipt)

    # ------------------------------------------------------------------ search

    def _queries(self, vectors: QueryLike, contract: EmbeddingContract) -> npt.NDArray[np.float32]:
        """Turn search input into a normalised ``(n, dim)`` matrix, checking model and dimension."""
        if isinstance(vectors, Template):
            items: list[Any] = [vectors]
        elif isinstance(vectors, (list, tuple)) and vectors and all(isinstance(v, Template) for v in vectors):
            items = list(vectors)
        else:
            items = []
        if items:
            for t in items:
                if t.model_id != contract.model_id or t.dim != contract.dim:
                    raise FaceAtlasError(
                        "model_mismatch",
                        f"query from model {t.model_id!r} (dim {t.dim}) cannot search a collection of "
                        f"{contract.model_id!r} (dim {contract.dim})",
                    )
            return np.stack([t.vector for t in items]).astype(np.float32)
        try:
            mat = np.array(vectors, dtype=np.float32, ndmin=2)
        except (TypeError, ValueError):
            raise InvalidInputError("invalid_input", "queries must be Templates or float vectors") from None
        if mat.ndim != 2 or mat.shape[1] != contract.dim:
            raise FaceAtlasError(
                "model_mismatch", f"query vectors have shape {mat.shape}, the collection expects dim {contract.dim}"
            )
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise InvalidInputError("invalid_input", "query vectors must be finite and non-zero")
        return (mat / norms).astype(np.float32)

    @staticmethod
    def _search_max(cache: _CollectionIndex, q: npt.NDArray[np.float32], k: int) -> list[list[tuple[int, float, int]]]:
        """Best ``k`` persons per query scored by their best sample: ``(person, score, sample)``."""
        n = len(cache.index)
        want = min(k, len(cache.person_samples))
        fetch = min(n, max(k * 4, k + 16))
        while True:
            ids, scores = cache.index.search(q, fetch)
            results: list[list[tuple[int, float, int]]] = []
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

    def _search_centroid(
        self, cache: _CollectionIndex, q: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[int, float, int]]]:
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
        results: list[list[tuple[int, float, int]]] = []
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

    def search(
        self,
        collection: str,
        vectors: QueryLike,
        k: int = 5,
        aggregate: Aggregate = "max",
        min_score: float | None = None,
    ) -> list[list[Candidate]]:
        """Find the ``k`` most similar persons for each query (one list per query, best first).

        ``aggregate="max"`` scores a person by its best sample; ``"centroid"`` by the cosine with the
        person's normalised mean template. ``vectors`` is a Template, a list of Templates, or a
        ``(dim,)`` / ``(n, dim)`` float array (assumed to come from the collection's model).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError("invalid_input", "k must be a positive integer")
        if aggregate not in ("max", "centroid"):
            raise InvalidInputError("invalid_input", f"aggregate must be 'max' or 'centroid', not {aggregate!r}")
        with self._lock:
            cache = self._ensure(collection)
            q = self._queries(vectors, cache.contract)
            if len(cache.index) == 0:
                return [[] for _ in range(q.shape[0])]
            if aggregate == "max":
                raw = self._search_max(cache, q, int(k))
            else:
                raw = self._search_centroid(cache, q, int(k))
            labels = self._store.person_labels(pid for hits in raw for pid, _, _ in hits)
        out: list[list[Candidate]] = []
        for hits in raw:
            cands = [
                Candidate(pid, labels[pid][0], labels[pid][1], score, sid)
                for pid, score, sid in hits
                if pid in labels and (min_score is None or score >= min_score)
            ]
            out.append(cands)
        return out

    # ------------------------------------------------------------------ export / import / stats

    def export_collection(self, name: str, path: str | os.PathLike[str], *, actor: str | None = None) -> Path:
        """Write a collection to one JSON-lines file (templates encrypted if the gallery has a key)."""
        write_export(self._store, name, path)
        self._store.log_event("export_collection", name, self._who(actor))
        return Path(path)

    def import_collection(
        self, path: str | os.PathLike[str], name: str | None = None, *, actor: str | None = None
    ) -> Collection:
        """Create a collection from an export file (optionally renamed); all-or-nothing."""
        reader = ExportReader(path, self._store.key_material)
        header = reader.header
        target = name or header.name
        with self._lock:
            col = self._store.import_persons(
                target, header.contract, header.created_at, reader.persons(), self._who(actor)
            )
            self._build(target)
            return col

    def stats(self) -> GalleryStats:
        """Return file sizes, encryption state and per-collection counts."""
        with self._lock:
            cols = self._store.list_collections()
            per = []
            for col in cols:
                cache = self._caches.get(col.name)
                per.append(
                    CollectionStats(
                        col.name,
                        col.persons,
                        col.samples,
                        len(cache.index) if cache is not None else 0,
                        cache.index.kind if cache is not None else None,
                    )
                )
            size, wal = self._store.file_sizes()
            return GalleryStats(
                str(self._store.path), self._store.encrypted, self._store.schema_version, size, wal, tuple(per)
            )

    def audit_log(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """Return recent audit events, newest first."""
        return self._store.audit_events(collection, limit)

    def check(self) -> list[str]:
        """Run SQLite integrity checks and decrypt every template; return the problems found."""
        problems = self._store.integrity_check()
        for col in self._store.list_collections():
            try:
                self._store.load_vectors(col.name).vectors.fill(0.0)
            except FaceAtlasError as exc:
                problems.append(f"collection {col.name!r}: {exc.message}")
        return problems
