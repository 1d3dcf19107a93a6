"""Milvus search backend: templates in Milvus (Lite or a server), everything else in the gallery's SQLite file.

Layout. Each gallery collection (SQLite id ``N``) has two Milvus collections named after the
gallery's random namespace (kept in the SQLite file, so several galleries can share one Milvus):
``<ns>_c<N>`` with ``sample_id`` (primary key), ``person_id``, ``collection_id`` and the template
``vector``; and ``<ns>_c<N>_centroids`` with ``person_id`` (primary key), ``collection_id`` and the
person's normalised mean template, kept up to date on every write for ``aggregate="centroid"``.
Reads use ``consistency_level="Session"``: a search waits only for this process' own last write to that
collection (pymilvus records its timestamp), so a write or delete made here is visible to the next search here, and a
search with no write of its own pending does not wait for Milvus' time tick (Strong made every search wait for it:
1.4-2.1 s per search on a loaded 2-core server, see ``benchmarks/milvus_scale.py``). Templates written by another
process appear after Milvus' time tick; a deletion made anywhere is never returned, because every result is checked
against the SQLite rows.
The index is FLAT (exact) unless the gallery is opened with ``index="hnsw"`` when the collection is
created; the metric is COSINE (``metric="cos"``, the default) or IP. FLAT is the default on purpose: at a million
templates it answered in ~130 ms on 2 cores with rank-1 equal to exact search, while HNSW and IVF lost identifications
(``benchmarks/milvus_scale.py``, ``benchmarks/ann_recall.py``, docs/scaling.md).

Why the SQLite file stays: Milvus has no transactions and does not enforce unique keys, so ids,
``conflict`` checks, the audit trail and all-or-nothing imports stay in SQLite; Milvus writes happen
inside the SQLite write transaction (and are undone if it fails), and search results are checked
against the SQLite rows, so a template left behind by an interrupted write is never returned.

Templates in Milvus cannot be encrypted (Milvus must read them to search), so a key is refused
(``gallery_key_unsupported``). Deletes remove the vectors from Milvus before the call returns;
Milvus Lite keeps a deleted vector's bytes in its segment files until it compacts them (a whole
collection's files go at once with ``delete_collection``), and a Milvus server likewise until its
own compaction. Milvus Lite serves one process per folder.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.backends.base import Hits, SearchBackend, TemplateVault
from faceatlas.gallery.backends.location import BackendKind, GalleryLocation
from faceatlas.gallery.index import IndexConfig
from faceatlas.gallery.records import CollectionBrief, EmbeddingContract, WriteReceipt
from faceatlas.gallery.store import SqliteStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TOP_K = 16_384  # Milvus' default upper bound on ``limit`` for one search
_BATCH = 1_000
_VECTOR = "vector"
_READ = "Session"  # consistency of every read (see the module docstring)

_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}


def _acquire_lite(path: str) -> None:
    """Count one more user of the in-process Milvus Lite server of ``path``."""
    with _lite_lock:
        _lite_users[path] = _lite_users.get(path, 0) + 1


def _release_lite(path: str) -> None:
    """Count one user less; stop the in-process Milvus Lite server of ``path`` when none is left."""
    with _lite_lock:
        left = _lite_users.get(path, 0) - 1
        if left > 0:
            _lite_users[path] = left
            return
        _lite_users.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - pymilvus without milvus-lite never started one
        return
    server_manager_instance.release_server(path)
    logger.debug("stopped the Milvus Lite server of %s", path)


class MilvusBackend(SearchBackend, TemplateVault):
    """Templates and search in Milvus through pymilvus' ``MilvusClient``; thread-safe."""

    store_kind = "milvus"

    def __init__(self, client: Any, location: GalleryLocation, config: IndexConfig, lite_path: str | None) -> None:
        self.kind: BackendKind = location.kind
        self._client = client
        self._location = location
        self._config = config
        self._lite_path = lite_path
        self._metric = "COSINE" if config.metric == "cos" else "IP"
        self._namespace: str | None = None
        self._store: SqliteStore | None = None
        self._index_kinds: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(cls, location: GalleryLocation, config: IndexConfig, *, create: bool = True) -> MilvusBackend:
        """Connect to Milvus Lite (starting it in this process) or to a Milvus server."""
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise FaceAtlasError(
                "missing_dependency",
                "Milvus galleries need pymilvus (pip install 'pymilvus[milvus-lite]' or faceatlas[milvus])",
            ) from None
        if not create and not location.meta_path.exists():
            raise NotFoundError(f"gallery {location.meta_path} does not exist", path=str(location.meta_path))
        if location.kind == "milvus-lite":
            assert location.lite_path is not None
            lite = location.lite_path
            cls._prepare_lite_folder(lite, create)
            try:
                client = MilvusClient(uri=str(lite))
            except Exception as exc:
                raise FaceAtlasError(
                    "gallery_error",
                    f"could not start Milvus Lite on {lite} ({exc}); Milvus Lite serves one process per folder, "
                    "is it open in another one?",
                    path=str(lite),
                ) from exc
            _acquire_lite(str(lite))
            logger.info("opened Milvus Lite at %s", lite)
            return cls(client, location, config, str(lite))
        address = f"http://{location.host}:{location.port}"
        try:
            client = MilvusClient(uri=address, token=location.token or "")
            if location.database:
                if location.database not in client.list_databases():
                    client.create_database(location.database)
                client.use_database(location.database)
        except Exception as exc:
            raise FaceAtlasError(
                "gallery_error", f"could not connect to Milvus at {location.uri}: {exc}", uri=location.uri
            ) from exc
        logger.info("connected to Milvus at %s", location.uri)
        return cls(client, location, config, None)

    @staticmethod
    def _prepare_lite_folder(lite: Path, create: bool) -> None:
        """Check the Milvus Lite folder, creating it readable by its owner only."""
        if lite.exists():
            if not lite.is_dir():
                raise InvalidInputError(
                    "invalid_input", f"{lite} is a file, not a Milvus Lite folder (a SQLite gallery? open it as a path)"
                )
            return
        if not create:
            raise NotFoundError(f"Milvus Lite folder {lite} does not exist", path=str(lite))
        if not lite.parent.is_dir():
            raise NotFoundError(f"folder {lite.parent} does not exist", path=str(lite.parent))
        os.mkdir(lite, 0o700)

    def attach(self, store: SqliteStore) -> None:
        """Use ``store`` for metadata lookups and load this gallery's Milvus collections (warn about missing ones)."""
        self._store = store
        present = set(self._call("list collections", self._client.list_collections))
        for col in store.list_collections():
            for name in self._names(col.id):
                if name in present:
                    self._call("load collection", self._client.load_collection, name)
                else:
                    logger.warning(
                        "collection %r: Milvus collection %s is missing at %s (wrong Milvus location?)",
                        col.name,
                        name,
                        self._location.uri,
                    )

    def close(self) -> None:
        """Close the client and, for Milvus Lite, stop its server once no gallery of this process uses it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._client.close()
        finally:
            if self._lite_path is not None:
                _release_lite(self._lite_path)

    # ------------------------------------------------------------------ plumbing

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one pymilvus call, turning its failures into FaceAtlasErrors."""
        if self._closed:
            raise FaceAtlasError("gallery_closed", f"gallery at {self._location.uri} is closed")
        try:
            return fn(*args, **kwargs)
        except FaceAtlasError:
            raise
        except Exception as exc:
            text = str(getattr(exc, "message", "") or exc)
            code = "gallery_corrupt" if "not exist" in text or "not found" in text.lower() else "gallery_error"
            raise FaceAtlasError(code, f"Milvus {what} failed at {self._location.uri}: {text}") from exc

    def _read(self, what: str, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read of collection ``name``, loading the collection once if Milvus reports it released."""
        try:
            return self._call(what, fn, name, *args, **kwargs)
        except FaceAtlasError as exc:
            text = exc.message.lower()
            if not any(hint in text for hint in ("released", "not loaded", "load()")):
                raise
        logger.info("loading Milvus collection %s", name)
        self._call("load collection", self._client.load_collection, name)
        return self._call(what, fn, name, *args, **kwargs)

    def _names(self, collection_id: int) -> tuple[str, str]:
        """Milvus names of a collection's samples and centroids."""
        if self._namespace is None:
            raise FaceAtlasError("internal", "the Milvus backend has no namespace yet")
        base = f"{self._namespace}_c{int(collection_id)}"
        return base, base + "_centroids"

    @property
    def _meta(self) -> SqliteStore:
        """The attached metadata store."""
        if self._store is None:
            raise FaceAtlasError("internal", "the Milvus backend is not attached to a metadata store")
        return self._store

    def _index_params(self, kind: str) -> Any:
        """Index definition of the vector field for ``exact`` (FLAT) or ``hnsw``."""
        params = self._client.prepare_index_params()
        if kind == "hnsw":
            hnsw = self._config.hnsw
            params.add_index(
                field_name=_VECTOR,
                index_type="HNSW",
                metric_type=self._metric,
                params={"M": hnsw.connectivity, "efConstruction": hnsw.expansion_add},
            )
        else:
            params.add_index(field_name=_VECTOR, index_type="FLAT", metric_type=self._metric, params={})
        return params

    def _index_kind(self, name: str) -> str:
        """``exact`` or ``hnsw``: the index of a Milvus collection (looked up once)."""
        kind = self._index_kinds.get(name)
        if kind is None:
            info = self._call("describe index", self._client.describe_index, name, _VECTOR)
            kind = "hnsw" if str(info.get("index_type", "")).upper().startswith("HNSW") else "exact"
            self._index_kinds[name] = kind
        return kind

    def _search_params(self, name: str, limit: int) -> dict[str, Any]:
        """Search parameters for a collection's index."""
        if self._index_kind(name) == "hnsw":
            return {"metric_type": self._metric, "params": {"ef": max(self._config.hnsw.expansion_search, limit)}}
        return {"metric_type": self._metric, "params": {}}

    @staticmethod
    def _rows(
        ids: Sequence[int], id_field: str, collection_id: int, vectors: npt.NDArray[np.float32], **extra: int
    ) -> list[dict[str, Any]]:
        """Milvus rows for ids and vectors."""
        return [
            {id_field: int(i), "collection_id": int(collection_id), **extra, _VECTOR: np.asarray(v, dtype=np.float32)}
            for i, v in zip(ids, vectors, strict=True)
        ]

    # ------------------------------------------------------------------ TemplateVault

    def bind_namespace(self, namespace: str) -> None:
        """Use ``namespace`` as the prefix of this gallery's Milvus collections."""
        self._namespace = namespace

    def create_collection(self, collection_id: int, contract: EmbeddingContract) -> None:
        """Create the samples and centroids collections (dropping leftovers of an uncommitted id)."""
        from pymilvus import DataType

        kind = "hnsw" if self._config.kind == "hnsw" else "exact"
        samples, centroids = self._names(collection_id)
        for name in (samples, centroids):
            if self._call("has collection", self._client.has_collection, name):
                logger.warning("dropping leftover Milvus collection %s", name)
                self._call("drop collection", self._client.drop_collection, name)
        created: list[str] = []
        try:
            for name, pk in ((samples, "sample_id"), (centroids, "person_id")):
                schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field(pk, DataType.INT64, is_primary=True)
                if pk == "sample_id":
                    schema.add_field("person_id", DataType.INT64)
                schema.add_field("collection_id", DataType.INT64)
                schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=int(contract.dim))
                self._call(
                    "create collection", self._client.create_collection, name, schema=schema, consistency_level="Strong"
                )
                created.append(name)
                # sync=False: an empty collection's index is ready at once, skip pymilvus' polling (0.5 s sleeps)
                self._call("create index", self._client.create_index, name, self._index_params(kind), sync=False)
                self._call("load collection", self._client.load_collection, name)
                self._index_kinds[name] = kind
        except BaseException:
            for name in created:
                self._client.drop_collection(name)
            raise
        logger.debug("created Milvus collections %s (%s, %s)", samples, kind, self._metric)

    def drop_collection(self, collection_id: int) -> None:
        """Drop both Milvus collections of a gallery collection (no error if absent)."""
        for name in self._names(collection_id):
            self._index_kinds.pop(name, None)
            if self._call("has collection", self._client.has_collection, name):
                self._call("drop collection", self._client.drop_collection, name)

    def put(
        self, collection_id: int, sample_ids: Sequence[int], person_id: int, vectors: npt.NDArray[np.float32]
    ) -> None:
        """Upsert templates of one person (replacing any leftover under the same sample ids)."""
        self.put_many(collection_id, sample_ids, [int(person_id)] * len(sample_ids), vectors)

    def put_many(
        self,
        collection_id: int,
        sample_ids: Sequence[int],
        person_ids: Sequence[int],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Upsert templates of several persons (``person_ids[i]`` owns row ``i``) in 1,000-row requests."""
        samples, _ = self._names(collection_id)
        for start in range(0, len(sample_ids), _BATCH):
            end = start + _BATCH
            rows = [
                {"sample_id": int(s), "person_id": int(p), "collection_id": int(collection_id),
                 _VECTOR: np.asarray(v, dtype=np.float32)}
                for s, p, v in zip(sample_ids[start:end], person_ids[start:end], vectors[start:end], strict=True)
            ]
            self._call("upsert", self._client.upsert, samples, rows)

    def delete(self, collection_id: int, sample_ids: Sequence[int]) -> None:
        """Delete templates by sample id; Milvus Lite then flushes so the deletion reaches its files."""
        samples, _ = self._names(collection_id)
        ids = [int(s) for s in sample_ids]
        for start in range(0, len(ids), _BATCH):
            self._call("delete", self._client.delete, samples, ids=ids[start : start + _BATCH])
        if ids and self.kind == "milvus-lite":
            self._call("flush", self._client.flush, samples)

    def get(self, collection_id: int, sample_ids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """Fetch templates by sample id (missing ids are left out)."""
        samples, _ = self._names(collection_id)
        ids = [int(s) for s in sample_ids]
        out: dict[int, npt.NDArray[np.float32]] = {}
        for start in range(0, len(ids), _BATCH):
            rows = self._read(
                "get",
                samples,
                self._client.get,
                ids=ids[start : start + _BATCH],
                output_fields=[_VECTOR],
                consistency_level=_READ,
            )
            for row in rows:
                out[int(row["sample_id"])] = np.asarray(row[_VECTOR], dtype=np.float32)
        return out

    def set_centroids(
        self,
        collection_id: int,
        person_samples: Mapping[int, Sequence[int]],
        known: Mapping[int, npt.NDArray[np.float32]] | None = None,
    ) -> None:
        """Recompute persons' normalised mean templates; persons without samples lose theirs.

        Templates in ``known`` (sample id -> vector, e.g. the ones just written) are not read back from Milvus.
        """
        _, centroids = self._names(collection_id)
        known = known or {}
        missing = sorted({int(s) for sids in person_samples.values() for s in sids if int(s) not in known})
        vectors = {**self.get(collection_id, missing), **known} if missing else known
        upsert_ids: list[int] = []
        upsert_vecs: list[npt.NDArray[np.float32]] = []
        drop: list[int] = []
        for pid, sids in person_samples.items():
            vecs = [vectors[int(s)] for s in sids if int(s) in vectors]
            mean = np.mean(np.stack(vecs).astype(np.float64), axis=0) if vecs else None
            norm = float(np.linalg.norm(mean)) if mean is not None else 0.0
            if mean is None or norm < 1e-6:
                drop.append(int(pid))
            else:
                upsert_ids.append(int(pid))
                upsert_vecs.append((mean / norm).astype(np.float32))
        for start in range(0, len(drop), _BATCH):
            self._call("delete", self._client.delete, centroids, ids=drop[start : start + _BATCH])
        for start in range(0, len(upsert_ids), _BATCH):
            end = start + _BATCH
            rows = self._rows(upsert_ids[start:end], "person_id", collection_id, np.stack(upsert_vecs[start:end]))
            self._call("upsert", self._client.upsert, centroids, rows)

    # ------------------------------------------------------------------ SearchBackend

    def refresh(self) -> list[str]:
        """Nothing to rebuild: every search reads Milvus and the metadata file directly."""
        return []

    def contract(self, collection: str) -> EmbeddingContract:
        """Return the collection's contract from the metadata file."""
        return self._meta.collection_brief(collection).contract

    def _ann(self, name: str, pk: str, queries: npt.NDArray[np.float32], limit: int) -> list[list[tuple[int, float]]]:
        """Raw nearest neighbours per query as ``(primary key, score)``, best first."""
        result = self._read(
            "search",
            name,
            self._client.search,
            data=[np.asarray(row, dtype=np.float32) for row in queries],
            limit=int(limit),
            anns_field=_VECTOR,
            output_fields=[pk],
            search_params=self._search_params(name, limit),
            consistency_level=_READ,
        )
        return [[(int(hit[pk]), float(hit["distance"])) for hit in row] for row in result]

    def search(self, collection: str, queries: npt.NDArray[np.float32], k: int, aggregate: str) -> Hits:
        """Best ``k`` persons per query, searched in Milvus and checked against the metadata file."""
        brief = self._meta.collection_brief(collection)
        if aggregate == "max":
            return self._search_max(brief, queries, k)
        return self._search_centroid(brief, queries, k)

    def _search_max(self, brief: CollectionBrief, q: npt.NDArray[np.float32], k: int) -> Hits:
        """Persons scored by their best sample: fetch more samples until ``k`` distinct persons are found."""
        samples, _ = self._names(brief.id)
        want = k  # lowered to the number of persons with samples once a round comes back short (counting scans)
        counted = False
        fetch = min(max(k * 4, k + 16), MAX_TOP_K)
        while True:
            raw = self._ann(samples, "sample_id", q, fetch)
            owners = self._meta.sample_owners(brief.id, (sid for row in raw for sid, _ in row))
            results: Hits = []
            complete = exhausted = True
            for row in raw:
                seen: set[int] = set()
                hits: list[tuple[int, float, int]] = []
                for sid, score in row:
                    pid = owners.get(sid)
                    if pid is None or pid in seen:
                        continue
                    seen.add(pid)
                    hits.append((pid, score, sid))
                    if len(hits) == k:
                        break
                complete = complete and len(hits) >= want
                exhausted = exhausted and len(row) < fetch
                results.append(hits)
            if not (complete or exhausted or counted):
                want, counted = min(k, self._meta.persons_with_samples(brief.id)), True
                complete = all(len(hits) >= want for hits in results)
            if complete or exhausted or fetch >= MAX_TOP_K:
                if not (complete or exhausted):
                    logger.warning("search of %r stopped at Milvus' top-k limit %d", brief.name, MAX_TOP_K)
                return results
            fetch = min(fetch * 4, MAX_TOP_K)

    def _search_centroid(self, brief: CollectionBrief, q: npt.NDArray[np.float32], k: int) -> Hits:
        """Persons scored by their centroid; the matching sample is the person's best one for the query."""
        _, centroids = self._names(brief.id)
        raw = self._ann(centroids, "person_id", q, min(k + 8, MAX_TOP_K))
        person_samples = self._meta.person_sample_ids(brief.id, (pid for row in raw for pid, _ in row))
        wanted = sorted({sid for row in raw for pid, _ in row for sid in person_samples.get(pid, ())})
        vectors = self.get(brief.id, wanted)
        results: Hits = []
        for row_index, row in enumerate(raw):
            hits: list[tuple[int, float, int]] = []
            for pid, score in row:
                sids = [s for s in person_samples.get(pid, ()) if s in vectors]
                if not sids:
                    continue
                best = sids[int(np.argmax(np.stack([vectors[s] for s in sids]) @ q[row_index]))]
                hits.append((pid, score, best))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    def index_info(self, collection: str) -> tuple[int, str | None]:
        """Return the number of templates in the collection's Milvus collection and its index kind."""
        samples, _ = self._names(self._meta.collection_brief(collection).id)
        rows = self._read(
            "count", samples, self._client.query, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"]) if rows else 0, self._index_kind(samples)

    def check(self) -> list[str]:
        """Compare each collection with Milvus: missing collections, missing or extra templates."""
        problems: list[str] = []
        present = set(self._call("list collections", self._client.list_collections))
        for col in self._meta.list_collections():
            missing = [n for n in self._names(col.id) if n not in present]
            if missing:
                problems.append(f"collection {col.name!r}: Milvus collections {missing} are missing")
                continue
            try:
                self._meta.load_vectors(col.name).vectors.fill(0.0)
            except FaceAtlasError as exc:
                problems.append(f"collection {col.name!r}: {exc.message}")
            indexed, _ = self.index_info(col.name)
            if indexed > col.samples:
                problems.append(
                    f"collection {col.name!r}: {indexed - col.samples} templates in Milvus have no sample "
                    "(left by an interrupted write; never returned by search)"
                )
        return problems

    # ------------------------------------------------------------------ write notifications

    def collection_created(self, collection: str, collection_id: int, contract: EmbeddingContract) -> None:
        """Nothing to do: Milvus was written inside the store's transaction."""

    def collection_dropped(self, collection: str) -> None:
        """Nothing to do: Milvus was written inside the store's transaction."""

    def collection_imported(self, collection: str) -> None:
        """Nothing to do: Milvus was written inside the store's transaction."""

    def samples_added(self, collection: str, receipt: WriteReceipt, vectors: npt.NDArray[np.float32]) -> None:
        """Nothing to do: Milvus was written inside the store's transaction."""

    def samples_removed(self, collection: str, receipt: WriteReceipt, person_deleted: bool) -> None:
        """Nothing to do: Milvus was written inside the store's transaction."""
