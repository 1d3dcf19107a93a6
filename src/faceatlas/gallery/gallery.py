"""The ``Gallery`` facade: collections of known persons, their templates, and 1:N search.

A gallery is one SQLite file (see :mod:`faceatlas.gallery.store`) holding collections,
persons, sample records, crops and the audit trail, plus a search backend for the templates
(see :mod:`faceatlas.gallery.backends`):

* ``sqlite`` (default): templates in the same file, searched with one in-memory index per collection
  (:mod:`faceatlas.gallery.backends.memory`); changes by other processes are picked up by the next
  ``search`` or an explicit :meth:`Gallery.refresh`.
* ``milvus-lite`` / ``milvus``: templates only in Milvus, searched there
  (:mod:`faceatlas.gallery.backends.milvus`); a search sees every write of this process at once, and writes of
  other processes after Milvus' time tick (deletions made anywhere at once: results are checked against SQLite).

Either way, a write returns only once the change is visible to ``search``.
"""

from __future__ import annotations

import getpass
import logging
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
from faceatlas.config import default_gallery
from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.backends import GalleryLocation, SearchBackend, parse_location
from faceatlas.gallery.backends.memory import MemoryIndexBackend
from faceatlas.gallery.crypto import KeyLike, resolve_key
from faceatlas.gallery.erasure import ErasureTracker
from faceatlas.gallery.index import (
    DEFAULT_APPROX_THRESHOLD,
    HnswParams,
    IndexConfig,
    IndexKind,
    PqParams,
    StorageDType,
)
from faceatlas.gallery.inputs import new_samples, query_matrix
from faceatlas.gallery.records import (
    AuditEvent,
    Candidate,
    Collection,
    CollectionStats,
    DeleteResult,
    EmbeddingContract,
    GalleryStats,
    NewPerson,
    Person,
    PersonRef,
    Sample,
    check_contract,
)
from faceatlas.gallery.store import DEFAULT_BUSY_TIMEOUT_S, SqliteStore
from faceatlas.gallery.store.person_ops import PersonToEnrol
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
        self._erasure = ErasureTracker(store)

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

        ``path`` (default: ``$FACEATLAS_GALLERY`` or ``$FACEATLAS_HOME/gallery.db``) is a file path or
        ``sqlite:PATH`` (SQLite backend), ``milvus-lite:PATH.db`` (Milvus Lite)
        or ``milvus://[user:password@]host:port[/database]`` (a Milvus server); Milvus galleries keep
        their metadata in the SQLite file ``meta_path`` (default for Milvus Lite: ``PATH.db.meta.sqlite``;
        required for a server, also accepted as ``?meta=PATH``). See :mod:`faceatlas.gallery.backends`.

        ``key``: raw 32 bytes, a hex/base64/passphrase string, a ``pathlib.Path`` to a key file,
        or ``None`` to use ``FACEATLAS_KEY`` / ``FACEATLAS_KEY_FILE`` (no encryption if neither is set).
        A new SQLite gallery is encrypted exactly when a key is available at creation; Milvus galleries
        refuse any key (``gallery_key_unsupported``) because Milvus must read templates to search them.

        ``index``: ``auto`` (exact below ``approx_threshold`` templates per collection, then ``pq``, or ``hnsw``
        without FAISS), ``exact``, ``pq`` or ``hnsw`` (see :mod:`faceatlas.gallery.index`). Milvus galleries use
        ``exact`` (FLAT) or ``hnsw``; ``pq`` there is refused with ``invalid_input``.
        """
        location = parse_location(path if path is not None else default_gallery(), meta_path)
        if create and location.kind == "sqlite":  # the one place that makes a SQLite gallery's folder
            Path(location.meta_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
            from faceatlas.gallery.backends.milvus import MilvusBackend

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
            self._erasure.close()
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

    def check_contract(self, collection: str, model_id: str, dim: int, model_sha256: str | None = None) -> Collection:
        """The collection, if templates of ``model_id`` (dim, file hash) may be added to and searched in it."""
        col = self._store.get_collection(collection)
        check_contract(col.contract, model_id, dim, model_sha256=model_sha256, what="pipeline")
        return col

    def get_collection(self, name: str) -> Collection:
        """Return a collection with its person and sample counts."""
        return self._store.get_collection(name)

    def list_collections(self) -> list[Collection]:
        """Return all collections, by name."""
        return self._store.list_collections()

    def delete_collection(self, name: str, *, actor: str | None = None) -> DeleteResult:
        """Delete a collection with everything in it (as :meth:`delete_sample`); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_collection(name, self._who(actor))
            self._backend.collection_dropped(name)
            self._erasure.note(receipt.erased)
            return DeleteResult(len(receipt.sample_ids), receipt.erased)

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

    def add_person_with_samples(
        self,
        collection: str,
        external_id: str,
        templates: Template | Sequence[Template],
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        qualities: float | Sequence[float | None] | None = None,
        detection_scores: float | Sequence[float | None] | None = None,
        boxes: BoxLike | Sequence[BoxLike | None] | None = None,
        image_sha256: str | Sequence[str | None] | None = None,
        crops: bytes | Sequence[bytes | None] | None = None,
        actor: str | None = None,
    ) -> tuple[Person, list[int]]:
        """Add a person and enrol its templates in one transaction (both or neither); return it and the sample ids.

        Arguments as :meth:`add_person` and :meth:`add_samples`; ``conflict`` if ``external_id`` is already used.
        """
        new, model_id = new_samples(templates, qualities, detection_scores, boxes, image_sha256, crops)
        with self._lock:
            person, receipt = self._store.enroll_person(
                collection, external_id, name, metadata, new, self._who(actor), model_id=model_id
            )
            if new:
                self._backend.samples_added(collection, receipt, np.stack([s.vector for s in new]).astype(np.float32))
            return person, list(receipt.sample_ids)

    def add_people(
        self, collection: str, people: Sequence[NewPerson], *, actor: str | None = None
    ) -> list[tuple[Person, list[int]]]:
        """Add several new persons with their templates in one transaction (all or none); return each with its ids.

        The bulk path: one SQLite transaction, and on Milvus 1,000-row requests instead of a few per person
        (``benchmarks/milvus_scale.py`` builds its million templates with it). ``conflict`` if an external id is
        already used or appears twice, ``model_mismatch`` for templates of another model; nothing is written then.
        """
        items: list[PersonToEnrol] = []
        model_ids: set[str] = set()
        for person in people:
            if not isinstance(person, NewPerson):
                raise InvalidInputError("invalid_input", "people must be faceatlas.gallery.NewPerson objects")
            new, model_id = new_samples(
                person.templates, person.qualities, person.detection_scores, person.boxes, person.image_sha256,
                person.crops,
            )
            model_ids.update([model_id] if model_id else [])
            items.append((person.external_id, person.name, person.metadata, new))
        if len(model_ids) > 1:
            raise FaceAtlasError("model_mismatch", "templates from several models in one call")
        if not items:
            return []
        with self._lock:
            persons, receipt = self._store.enroll_people(
                collection, items, self._who(actor), model_id=next(iter(model_ids), None)
            )
            if receipt.sample_ids:
                vectors = np.stack([s.vector for *_, new in items for s in new]).astype(np.float32)
                self._backend.samples_added(collection, receipt, vectors)
        ids = iter(receipt.sample_ids)
        return [(p, [next(ids) for _ in range(p.samples)]) for p in persons]

    def get_person(self, collection: str, person: PersonRef) -> Person:
        """Return a person by internal id (int) or external id (str)."""
        return self._store.get_person(collection, person)

    def list_persons(self, collection: str, limit: int | None = None, offset: int = 0) -> list[Person]:
        """Return a collection's persons ordered by internal id, optionally paged."""
        return self._store.list_persons(collection, limit, offset)

    def delete_person(self, collection: str, person: PersonRef, *, actor: str | None = None) -> DeleteResult:
        """Delete a person and all its samples (as :meth:`delete_sample`); return the samples removed."""
        with self._lock:
            receipt = self._store.delete_person(collection, person, self._who(actor))
            self._backend.samples_removed(collection, receipt, person_deleted=True)
            self._erasure.note(receipt.erased)
            return DeleteResult(len(receipt.sample_ids), receipt.erased)

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
        new, model_id = new_samples(templates, qualities, detection_scores, boxes, image_sha256, crops)
        if not new:
            return []
        with self._lock:
            receipt = self._store.add_samples(collection, person, new, self._who(actor), model_id=model_id)
            self._backend.samples_added(collection, receipt, np.stack([s.vector for s in new]))
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

    def delete_sample(self, collection: str, sample_id: int, *, actor: str | None = None) -> DeleteResult:
        """Delete one sample: gone from search when this returns (overwritten on disk with the SQLite backend).

        The result is the number of samples removed (1) with ``erased``: False when another connection's reader
        kept the deleted bytes on disk for now; a background thread then finishes the erasure (see
        :meth:`pending_erasures` and :meth:`finish_erasure`).
        """
        with self._lock:
            receipt = self._store.delete_sample(collection, sample_id, self._who(actor))
            self._backend.samples_removed(collection, receipt, person_deleted=False)
            self._erasure.note(receipt.erased)
            return DeleteResult(1, receipt.erased)

    def pending_erasures(self) -> int:
        """How many deletes of this gallery object still have bytes on disk (being erased in the background)."""
        return self._erasure.pending()

    def finish_erasure(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every pending erasure to complete; True when none is left."""
        return self._erasure.wait(timeout)

    # ------------------------------------------------------------------ search

    def search(
        self,
        collection: str,
        vectors: QueryLike,
        k: int = 5,
        aggregate: Aggregate = "max",
        min_score: float | None = None,
        *,
        model_id: str | None = None,
    ) -> list[list[Candidate]]:
        """Find the ``k`` most similar persons for each query (one list per query, best first).

        ``aggregate="max"`` scores a person by its best sample; ``"centroid"`` by the cosine with the
        person's normalised mean template. ``vectors`` is a Template, a list of Templates, or a
        ``(dim,)`` / ``(n, dim)`` float array together with ``model_id`` (the model that made it). Either
        way the model must be the collection's (``model_mismatch`` otherwise).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError("invalid_input", "k must be a positive integer")
        if aggregate not in ("max", "centroid"):
            raise InvalidInputError("invalid_input", f"aggregate must be 'max' or 'centroid', not {aggregate!r}")
        q = query_matrix(vectors, self._backend.contract(collection), model_id)
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
