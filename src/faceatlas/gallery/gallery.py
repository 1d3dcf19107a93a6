"""The ``Gallery`` facade: collections of known persons, their templates, and 1:N search.

A gallery is one SQLite file (see :mod:`faceatlas.gallery.sqlite_store`) holding collections,
persons, sample records, crops and the audit trail, plus a search backend for the templates
(see :mod:`faceatlas.gallery.backend`):

* ``sqlite`` (default): templates in the same file, searched with one in-memory index per collection
  (:mod:`faceatlas.gallery.memory_backend`); changes by other processes are picked up by the next
  ``search`` or an explicit :meth:`Gallery.refresh`.
* ``milvus-lite`` / ``milvus``: templates only in Milvus, searched there
  (:mod:`faceatlas.gallery.milvus_backend`); every search sees every committed write.

Either way, a write returns only once the change is visible to ``search``.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceatlas import config
from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.backend import GalleryLocation, SearchBackend, parse_location
from faceatlas.gallery.crypto import KeyLike, resolve_key
from faceatlas.gallery.index import (
    DEFAULT_APPROX_THRESHOLD,
    HnswParams,
    IndexConfig,
    IndexKind,
    PqParams,
    StorageDType,
)
from faceatlas.gallery.memory_backend import MemoryIndexBackend
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
    check_sha256,
)
from faceatlas.gallery.transfer import ExportReader, write_export
from faceatlas.types import Box, Template

logger = logging.getLogger(__name__)

Aggregate = Literal["max", "centroid"]
QueryLike = Template | Sequence[Template] | npt.ArrayLike
BoxLike = Box | Sequence[float]

def default_actor() -> str:
    """Return the audit actor: ``$FACEATLAS_ACTOR`` or ``user@host``."""
    env = config.actor()
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


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
    """A gallery of known persons: SQLite metadata plus a template search backend; thread-safe."""

    def __init__(
        self,
        store: SqliteStore,
        index_config: IndexConfig | None = None,
        actor: str | None = None,
        auto_refresh: bool = True,
        backend: SearchBackend | None = None,
        location: GalleryLocation | None = None,
    ) -> None:
        self._store = store
        self._config = index_config or IndexConfig()
        self._actor = actor or default_actor()
        self._backend = backend or MemoryIndexBackend(store, self._config, auto_refresh)
        self._location = location or GalleryLocation("sqlite", store.path)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        key: KeyLike | None = None,
        index: IndexKind | IndexConfig = "auto",
        *,
        create: bool = True,
        actor: str | None = None,
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        index_dtype: StorageDType = "float32",
        hnsw: HnswParams | None = None,
        pq: PqParams | None = None,
        auto_refresh: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        meta_path: str | os.PathLike[str] | None = None,
    ) -> Gallery:
        """Open (or create) a gallery and make every collection searchable.

        ``path`` (default: ``$FACEATLAS_GALLERY`` or ``$FACEATLAS_HOME/gallery.db``) is a file path or ``sqlite:PATH`` (SQLite backend), ``milvus-lite:PATH.db`` (Milvus Lite)
        or ``milvus://[user:password@]host:port[/database]`` (a Milvus server); Milvus galleries keep
        their metadata in the SQLite file ``meta_path`` (default for Milvus Lite: ``PATH.db.meta.sqlite``;
        required for a server, also accepted as ``?meta=PATH``). See :mod:`faceatlas.gallery.backend`.

        ``key``: raw 32 bytes, a hex/base64/passphrase string, a ``pathlib.Path`` to a key file,
        or ``None`` to use ``FACEATLAS_KEY`` / ``FACEATLAS_KEY_FILE`` (no encryption if neither is set).
        A new SQLite gallery is encrypted exactly when a key is available at creation; Milvus galleries
        refuse any key (``gallery_key_unsupported``) because Milvus must read templates to search them.

        ``index``: ``auto`` (exact below ``approx_threshold`` templates per collection, then ``pq``, or ``hnsw``
        without FAISS), ``exact``, ``pq`` or ``hnsw`` (see :mod:`faceatlas.gallery.index`). Milvus galleries use
        ``exact`` (FLAT) or ``hnsw``; ``pq`` there is refused with ``invalid_input``.
        """
        location = parse_location(path if path is not None else config.default_gallery(), meta_path)
        if create:  # the one place that makes a local gallery's folder
            for local in (location.meta_path, location.lite_path):
                if local is not None:
                    Path(local).expanduser().parent.mkdir(parents=True, exist_ok=True)
        config = index if isinstance(index, IndexConfig) else IndexConfig(
            kind=index,
            approx_threshold=approx_threshold,
            dtype=index_dtype,
            hnsw=hnsw or HnswParams(),
            pq=pq or PqParams(),
        )
        key_material = resolve_key(key)
        if location.kind == "sqlite":
            store = SqliteStore(location.meta_path, key_material, create=create, busy_timeout=busy_timeout)
            gallery = cls(store, config, actor, auto_refresh, location=location)
        else:
            if key_material is not None:
                raise FaceAtlasError(
                    "gallery_key_unsupported",
                    f"a {location.kind} gallery cannot be encrypted at rest: Milvus must read templates to search "
                    f"them (key from {key_material.source}); use the SQLite backend for encrypted galleries",
                )
            if config.kind == "pq":
                raise InvalidInputError(
                    "invalid_input", "index 'pq' is an in-memory index of SQLite galleries; Milvus uses exact or hnsw"
                )
            from faceatlas.gallery.milvus_backend import MilvusBackend

            milvus = MilvusBackend.connect(location, config, create=create)
            try:
                store = SqliteStore(location.meta_path, None, create=create, busy_timeout=busy_timeout, vault=milvus)
            except BaseException:
                milvus.close()
                raise
            gallery = cls(store, config, actor, auto_refresh, backend=milvus, location=location)
            try:
                milvus.attach(store)
            except BaseException:
                gallery.close()
                raise
        try:
            gallery.refresh()
        except BaseException:
            gallery.close()
            raise
        return gallery

    def close(self) -> None:
        """Close the metadata file and release the search backend."""
        with self._lock:
            try:
                self._backend.close()
            finally:
                self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({self._location.uri!r}, backend={self.backend!r}, encrypted={self._store.encrypted})"

    @property
    def path(self) -> Path:
        """The SQLite file (for Milvus galleries: the metadata file next to the vectors)."""
        return self._store.path

    @property
    def uri(self) -> str:
        """Where the gallery lives, as a URI without credentials."""
        return self._location.uri

    @property
    def backend(self) -> str:
        """The template backend: ``sqlite``, ``milvus-lite`` or ``milvus``."""
        return self._backend.kind

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

    def refresh(self) -> list[str]:
        """Pick up changes made by other processes now; return the collections whose index was rebuilt."""
        with self._lock:
            return self._backend.refresh()

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
            self._backend.collection_created(name, col.id, col.contract)
            return col

    def get_collection(self, name: str) -> Collection:
        """Return a collection with its person and sample counts."""
        return self._store.get_collection(name)

    def list_collections(self) -> list[Collection]:
        """Return all collections, by name."""
        return self._store.list_collections()

    def delete_collection(self, name: str, *, actor: str | None = None) -> int:
        """Delete a collection with everything in it (as :meth:`delete_sample`); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_collection(name, self._who(actor))
            self._backend.collection_dropped(name)
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
        """Delete a person and all its samples (as :meth:`delete_sample`); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_person(collection, person, self._who(actor))
            self._backend.samples_removed(collection, receipt, person_deleted=True)
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
            self._backend.samples_added(collection, receipt, np.stack([t.vector for t in items]))
            return list(receipt.sample_ids)

    def get_sample(self, collection: str, sample_id: int, include_template: bool = False) -> Sample:
        """Return a sample's record (its template only when asked)."""
        return self._store.get_sample(collection, sample_id, include_template)

    def known_image_hashes(self, collection: str, hashes: Sequence[str]) -> set[str]:
        """Which of these source-image sha256 hashes the collection already holds (duplicate detection)."""
        return self._store.known_image_hashes(collection, hashes)

    def list_samples(self, collection: str, person: PersonRef) -> list[Sample]:
        """Return a person's samples, without templates."""
        return self._store.list_samples(collection, person)

    def get_crop(self, collection: str, sample_id: int) -> bytes | None:
        """Return the crop bytes stored with a sample, if any."""
        return self._store.get_crop(collection, sample_id)

    def delete_sample(self, collection: str, sample_id: int, *, actor: str | None = None) -> None:
        """Delete one sample: gone from search when this returns (overwritten on disk with the SQLite backend)."""
        with self._lock:
            receipt = self._store.delete_sample(collection, sample_id, self._who(actor))
            self._backend.samples_removed(collection, receipt, person_deleted=False)

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
        q = self._queries(vectors, self._backend.contract(collection))
        raw = self._backend.search(collection, q, int(k), aggregate)
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
            self._backend.collection_imported(target)
            return col

    def stats(self) -> GalleryStats:
        """Return file sizes, encryption state and per-collection counts."""
        with self._lock:
            cols = self._store.list_collections()
            per = []
            for col in cols:
                indexed, kind = self._backend.index_info(col.name)
                per.append(CollectionStats(col.name, col.persons, col.samples, indexed, kind))
            size, wal = self._store.file_sizes()
            return GalleryStats(
                str(self._store.path),
                self._store.encrypted,
                self._store.schema_version,
                size,
                wal,
                tuple(per),
                backend=self._backend.kind,
            )

    def audit_log(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """Return recent audit events, newest first."""
        return self._store.audit_events(collection, limit)

    def check(self) -> list[str]:
        """Run SQLite integrity checks and read every template back; return the problems found."""
        with self._lock:
            return self._store.integrity_check() + self._backend.check()
