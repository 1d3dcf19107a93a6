"""In-memory nearest-neighbour indexes over templates keyed by sample id: exact (BLAS) and HNSW (usearch).

Both indexes score by cosine similarity (``metric="cos"``, vectors normalised on the way in) or
raw inner product (``metric="ip"``), return the best ``k`` ids per query as ``(ids, scores)``
arrays of shape ``(queries, min(k, len))`` padded with id ``-1`` and score ``-inf``, and apply adds
and removals immediately. All methods are thread-safe.

Exact search of a few queries goes through FAISS's SIMD brute-force kernel (``faiss.knn``) when ``faiss-cpu`` is
installed; larger query batches use a BLAS matrix product. The kernel runs on the calling thread only (FAISS's OpenMP
team for that thread is set to one thread), so concurrent requests each get a core instead of contending for both.
``benchmarks/search.py`` times it against FAISS's own ``IndexFlatIP`` in the same run.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
Metric = Literal["cos", "ip"]
StorageDType = Literal["float32", "float16"]
IndexKind = Literal["auto", "exact", "hnsw"]

DEFAULT_HNSW_THRESHOLD = 50_000
_SCORE_BLOCK = 1 << 24  # max query x row scores materialised at once (64 MiB of float32)
_FAISS_MAX_QUERIES = 16  # query blocks up to this size use faiss.knn; larger ones a BLAS matrix product


def _faiss() -> Any:
    """The faiss module when installed, else None."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return faiss


def _faiss_top_k(q: FloatArray, mat: FloatArray, k: int) -> tuple[IntArray, FloatArray] | None:
    """Top-k row positions and inner products by FAISS's brute-force kernel on this thread, or None without FAISS."""
    faiss = _faiss()
    if faiss is None:
        return None
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)  # per calling thread in OpenMP: other threads keep their setting
    scores, pos = faiss.knn(np.ascontiguousarray(q), mat, k, faiss.METRIC_INNER_PRODUCT)
    return pos.astype(np.int64), scores.astype(np.float32)


def _as_ids(ids: Iterable[int] | npt.ArrayLike) -> IntArray:
    """Return ids as a 1-D int64 array, rejecting negatives (``-1`` is the padding id)."""
    arr = np.asarray(ids if not isinstance(ids, (int, np.integer)) else [ids], dtype=np.int64).reshape(-1)
    if arr.size and int(arr.min()) < 0:
        raise InvalidInputError("invalid_input", "index ids must be non-negative integers")
    return arr


def _as_matrix(vectors: npt.ArrayLike, dim: int, normalize: bool) -> FloatArray:
    """Return vectors as a C-contiguous ``(n, dim)`` float32 matrix, optionally L2-normalised."""
    mat = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if mat.ndim != 2 or mat.shape[1] != dim:
        raise InvalidInputError("invalid_input", f"expected vectors of dimension {dim}, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise InvalidInputError("invalid_input", "vectors must be finite")
    if normalize and mat.shape[0]:
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise InvalidInputError("invalid_input", "cannot index a zero vector under the cosine metric")
        mat /= norms
    return np.ascontiguousarray(mat)


def _top_k(scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Return column positions and values of the ``k`` largest scores per row, best first."""
    n = scores.shape[1]
    if k == 1 and n > 0:
        best = np.argmax(scores, axis=1)[:, None]  # a linear scan: far cheaper than a partition of every row
        return best.astype(np.int64), np.take_along_axis(scores, best, axis=1)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (scores.shape[0], n)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


class VectorIndex(ABC):
    """Common interface of the gallery's nearest-neighbour indexes (ids are sample ids)."""

    kind: str = "abstract"

    def __init__(self, dim: int, metric: Metric = "cos") -> None:
        if int(dim) <= 0:
            raise InvalidInputError("invalid_input", "index dimension must be positive")
        if metric not in ("cos", "ip"):
            raise InvalidInputError("invalid_input", f"unknown metric {metric!r}")
        self.dim = int(dim)
        self.metric: Metric = metric
        self._lock = threading.RLock()

    @abstractmethod
    def add(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert vectors under the given ids (an existing id has its vector replaced)."""

    @abstractmethod
    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ids (unknown ones are ignored) and return how many were removed."""

    @abstractmethod
    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """Return the ``k`` best ids and scores per query, best first, padded with ``-1`` / ``-inf``."""

    @abstractmethod
    def get(self, ids: Iterable[int] | npt.ArrayLike) -> FloatArray:
        """Return the stored vectors of ``ids`` as float32 rows (``KeyError`` for an unknown id)."""

    @abstractmethod
    def ids(self) -> IntArray:
        """Return all ids currently in the index."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of vectors in the index."""

    @abstractmethod
    def __contains__(self, item: object) -> bool:
        """Tell whether an id is in the index."""

    def _queries(self, queries: npt.ArrayLike) -> FloatArray:
        """Validate and (for cosine) normalise a query batch."""
        return _as_matrix(queries, self.dim, self.metric == "cos")

    @staticmethod
    def _check_k(k: int) -> int:
        """Validate ``k``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError("invalid_input", "k must be a positive integer")
        return int(k)


class ExactIndex(VectorIndex):
    """Brute-force index: one contiguous matrix, scored with a single matrix product per query block."""

    kind = "exact"

    def __init__(
        self, dim: int, metric: Metric = "cos", dtype: StorageDType = "float32", initial_capacity: int = 1024
    ) -> None:
        super().__init__(dim, metric)
        if dtype not in ("float32", "float16"):
            raise InvalidInputError("invalid_input", f"unsupported storage dtype {dtype!r}")
        self.dtype: StorageDType = dtype
        cap = max(16, int(initial_capacity))
        self._mat: npt.NDArray[Any] = np.zeros((cap, self.dim), dtype=np.dtype(dtype))
        self._ids: IntArray = np.full(cap, -1, dtype=np.int64)
        self._pos: dict[int, int] = {}
        self._n = 0

    def __repr__(self) -> str:
        return f"ExactIndex(dim={self.dim}, metric={self.metric!r}, dtype={self.dtype!r}, size={self._n})"

    def _reserve(self, needed: int) -> None:
        """Grow the backing arrays (doubling) to hold ``needed`` rows."""
        cap = self._mat.shape[0]
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        mat = np.zeros((new_cap, self.dim), dtype=self._mat.dtype)
        mat[: self._n] = self._mat[: self._n]
        ids = np.full(new_cap, -1, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._mat, self._ids = mat, ids

    def add(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert vectors under the given ids (an existing id has its vector replaced)."""
        id_arr = _as_ids(ids)
        mat = _as_matrix(vectors, self.dim, self.metric == "cos")
        if mat.shape[0] != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "ids and vectors differ in length")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "duplicate ids in one add")
        with self._lock:
            self._reserve(self._n + id_arr.shape[0])
            for i, key in enumerate(id_arr.tolist()):
                pos = self._pos.get(key)
                if pos is None:
                    pos = self._n
                    self._pos[key] = pos
                    self._ids[pos] = key
                    self._n += 1
                self._mat[pos] = mat[i]

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ids at once by moving the last row into each hole (unknown ids are ignored)."""
        removed = 0
        with self._lock:
            for key in _as_ids(ids).tolist():
                pos = self._pos.pop(key, None)
                if pos is None:
                    continue
                last = self._n - 1
                if pos != last:
                    moved = int(self._ids[last])
                    self._mat[pos] = self._mat[last]
                    self._ids[pos] = moved
                    self._pos[moved] = pos
                self._mat[last] = 0  # do not leave a template copy in the spare capacity
                self._ids[last] = -1
                self._n = last
                removed += 1
        return removed

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """Return the ``k`` best ids and scores per query (FAISS for a few queries, else BLAS + ``argpartition``)."""
        k = self._check_k(k)
        q = self._queries(queries)
        with self._lock:
            n = self._n
            kk = min(k, n)
            out_ids = np.full((q.shape[0], kk), -1, dtype=np.int64)
            out_scores = np.full((q.shape[0], kk), -np.inf, dtype=np.float32)
            if n == 0 or q.shape[0] == 0:
                return out_ids, out_scores
            if q.shape[0] <= _FAISS_MAX_QUERIES and self._mat.dtype == np.float32:
                found = _faiss_top_k(q, self._mat[:n], kk)
                if found is not None:
                    return self._ids[found[0]], found[1]
            rows_per_block = max(1, _SCORE_BLOCK // n)
            for start in range(0, q.shape[0], rows_per_block):
                block = q[start : start + rows_per_block]
                scores = self._scores(block, n)
                pos, vals = _top_k(scores, kk)
                out_ids[start : start + block.shape[0]] = self._ids[pos]
                out_scores[start : start + block.shape[0]] = vals
            return out_ids, out_scores

    def _scores(self, q: FloatArray, n: int) -> FloatArray:
        """Score a query block against the first ``n`` rows (float16 rows are widened chunk by chunk)."""
        if self._mat.dtype == np.float32:
            return np.asarray(q @ self._mat[:n].T, dtype=np.float32)
        out = np.empty((q.shape[0], n), dtype=np.float32)
        chunk = 65_536
        for start in range(0, n, chunk):
            rows = self._mat[start : min(n, start + chunk)].astype(np.float32)
            out[:, start : start + rows.shape[0]] = q @ rows.T
        return out

    def get(self, ids: Iterable[int] | npt.ArrayLike) -> FloatArray:
        """Return the stored vectors of ``ids`` as float32 rows (``KeyError`` for an unknown id)."""
        id_list = _as_ids(ids).tolist()
        with self._lock:
            pos = [self._pos[key] for key in id_list]
            return np.asarray(self._mat[pos], dtype=np.float32).reshape(len(pos), self.dim)

    def ids(self) -> IntArray:
        """Return all ids currently in the index."""
        with self._lock:
            return self._ids[: self._n].copy()

    def __len__(self) -> int:
        """Number of vectors in the index."""
        return self._n

    def __contains__(self, item: object) -> bool:
        """Tell whether an id is in the index."""
        return isinstance(item, (int, np.integer)) and int(item) in self._pos


@dataclass(frozen=True)
class HnswParams:
    """usearch HNSW knobs: graph degree and the candidate-list sizes used when adding and searching.

    Defaults picked by ``benchmarks/search.py --hnsw-configs 16:40:float16,16:64:float16`` (2 cores, real LFW
    templates among random unit vectors): at 100k they give recall@1 99.9 % at p50 1.8 ms; at 1M the graph builds in
    about 3 min and gives recall@1 98.4 % (99.6 % on queries of real templates) at p50 3.5-4.1 ms. Degree 32 /
    expansion 48 (``--hnsw-configs 32:48:float16``) builds in 5 min and needs 10 ms for 99.8 %.
    """

    connectivity: int = 16
    expansion_add: int = 40
    expansion_search: int = 512


class HnswIndex(VectorIndex):
    """Approximate index on a usearch HNSW graph; removals are immediate (tombstones, compacted later)."""

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        metric: Metric = "cos",
        dtype: StorageDType = "float32",
        params: HnswParams | None = None,
    ) -> None:
        super().__init__(dim, metric)
        try:
            from usearch.index import Index
        except ImportError:  # pragma: no cover - depends on the environment
            raise FaceAtlasError(
                "index_unavailable", "the HNSW index needs the 'usearch' package (pip install usearch)"
            ) from None
        if dtype not in ("float32", "float16"):
            raise InvalidInputError("invalid_input", f"unsupported storage dtype {dtype!r}")
        self.dtype: StorageDType = dtype
        self.params = params or HnswParams()
        self._index_cls = Index
        self._keys: set[int] = set()
        self._tombstones = 0
        self._index = self._new_index()

    def __repr__(self) -> str:
        return f"HnswIndex(dim={self.dim}, metric={self.metric!r}, params={self.params}, size={len(self._keys)})"

    def _new_index(self) -> Any:
        """Create an empty usearch index with this object's settings."""
        # Vectors are normalised on the way in under "cos", so the graph can use the cheaper inner product
        # (usearch's "cos" would re-normalise at every distance): 1 - ip is then exactly the cosine distance.
        return self._index_cls(
            ndim=self.dim,
            metric="ip",
            dtype="f32" if self.dtype == "float32" else "f16",
            connectivity=self.params.connectivity,
            expansion_add=self.params.expansion_add,
            expansion_search=self.params.expansion_search,
        )

    def add(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert vectors under the given ids (an existing id has its vector replaced)."""
        id_arr = _as_ids(ids)
        mat = _as_matrix(vectors, self.dim, self.metric == "cos")
        if mat.shape[0] != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "ids and vectors differ in length")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "duplicate ids in one add")
        if not id_arr.size:
            return
        with self._lock:
            existing = [key for key in id_arr.tolist() if key in self._keys]
            if existing:
                self.remove(existing)
            self._index.add(id_arr.astype(np.uint64), mat)
            self._keys.update(id_arr.tolist())

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ids (unknown ones are ignored); the graph is compacted when tombstones pile up."""
        with self._lock:
            present = [key for key in _as_ids(ids).tolist() if key in self._keys]
            if not present:
                return 0
            self._index.remove(np.asarray(present, dtype=np.uint64))
            self._keys.difference_update(present)
            self._tombstones += len(present)
            if self._tombstones > max(1024, len(self._keys)):
                self.compact()
            return len(present)

    def compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping removed nodes."""
        with self._lock:
            keys = np.fromiter(sorted(self._keys), dtype=np.int64, count=len(self._keys))
            vectors = self.get(keys) if keys.size else np.zeros((0, self.dim), dtype=np.float32)
            self._index = self._new_index()
            if keys.size:
                self._index.add(keys.astype(np.uint64), vectors)
            self._tombstones = 0

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """Return the ``k`` best ids and scores per query from the HNSW graph."""
        k = self._check_k(k)
        q = self._queries(queries)
        with self._lock:
            kk = min(k, len(self._keys))
            out_ids = np.full((q.shape[0], kk), -1, dtype=np.int64)
            out_scores = np.full((q.shape[0], kk), -np.inf, dtype=np.float32)
            if kk == 0 or q.shape[0] == 0:
                return out_ids, out_scores
            self._index.expansion_search = max(self.params.expansion_search, kk)
            matches = self._index.search(q, kk)
            keys = np.asarray(matches.keys)
            dists = np.asarray(matches.distances, dtype=np.float32)
            if keys.ndim == 1:
                keys, dists = keys[None, :], dists[None, :]
                counts = np.asarray([keys.shape[1]])
            else:
                counts = np.asarray(matches.counts)
            for row in range(q.shape[0]):
                count = int(counts[row])
                hits = [
                    (int(key), 1.0 - float(dist))
                    for key, dist in zip(keys[row, :count], dists[row, :count], strict=True)
                    if int(key) in self._keys
                ][:kk]
                for col, (key, score) in enumerate(hits):
                    out_ids[row, col] = key
                    out_scores[row, col] = score
            return out_ids, out_scores

    def get(self, ids: Iterable[int] | npt.ArrayLike) -> FloatArray:
        """Return the stored vectors of ``ids`` as float32 rows (``KeyError`` for an unknown id)."""
        id_list = _as_ids(ids).tolist()
        with self._lock:
            for key in id_list:
                if key not in self._keys:
                    raise KeyError(key)
            if not id_list:
                return np.zeros((0, self.dim), dtype=np.float32)
            got = self._index.get(np.asarray(id_list, dtype=np.uint64))
            rows = got if isinstance(got, tuple) else [got] if np.ndim(got) == 1 else list(got)
            return np.asarray(np.stack(rows), dtype=np.float32).reshape(len(id_list), self.dim)

    def ids(self) -> IntArray:
        """Return all ids currently in the index."""
        with self._lock:
            return np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))

    def __len__(self) -> int:
        """Number of vectors in the index."""
        return len(self._keys)

    def __contains__(self, item: object) -> bool:
        """Tell whether an id is in the index."""
        return isinstance(item, (int, np.integer)) and int(item) in self._keys


def hnsw_available() -> bool:
    """Tell whether the usearch package can be imported."""
    try:
        import usearch.index  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


@dataclass(frozen=True)
class IndexConfig:
    """How a gallery builds its indexes: kind, auto-switch threshold, storage dtype, metric, HNSW knobs."""

    kind: IndexKind = "auto"
    hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD
    dtype: StorageDType = "float32"
    metric: Metric = "cos"
    hnsw: HnswParams = field(default_factory=HnswParams)

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "exact", "hnsw"):
            raise InvalidInputError("invalid_input", f"unknown index kind {self.kind!r} (auto, exact or hnsw)")
        if self.hnsw_threshold < 0:
            raise InvalidInputError("invalid_input", "hnsw_threshold must be >= 0")

    def kind_for(self, size: int) -> Literal["exact", "hnsw"]:
        """Return the concrete index kind for a collection of ``size`` vectors."""
        if self.kind != "auto":
            return self.kind
        if size >= self.hnsw_threshold:
            if hnsw_available():
                return "hnsw"
            logger.warning("usearch is not installed; using the exact index for %d vectors", size)
        return "exact"


def make_index(dim: int, config: IndexConfig | None = None, size_hint: int = 0) -> VectorIndex:
    """Build an empty index for ``dim``-dimensional vectors, choosing HNSW above the size threshold."""
    cfg = config or IndexConfig()
    if cfg.kind_for(size_hint) == "hnsw":
        return HnswIndex(dim, metric=cfg.metric, dtype=cfg.dtype, params=cfg.hnsw)
    return ExactIndex(dim, metric=cfg.metric, dtype=cfg.dtype, initial_capacity=max(1024, size_hint))
