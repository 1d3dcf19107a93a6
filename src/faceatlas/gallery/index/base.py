"""Shared parts of the in-memory indexes: the ``VectorIndex`` interface, configuration, parameters, helpers."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceatlas.errors import InvalidInputError

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
Metric = Literal["cos", "ip"]
StorageDType = Literal["float32", "float16"]
IndexKind = Literal["auto", "exact", "pq", "hnsw"]
ConcreteKind = Literal["exact", "pq", "hnsw"]

DEFAULT_APPROX_THRESHOLD = 50_000


def load_faiss() -> Any:
    """The faiss module when installed, else None."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return faiss


def faiss_top_k(q: FloatArray, mat: FloatArray, k: int) -> tuple[IntArray, FloatArray] | None:
    """Top-k row positions and inner products by FAISS's brute-force kernel on this thread, or None without FAISS."""
    faiss = load_faiss()
    if faiss is None:
        return None
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)  # per calling thread in OpenMP: other threads keep their setting
    scores, pos = faiss.knn(np.ascontiguousarray(q), mat, k, faiss.METRIC_INNER_PRODUCT)
    return pos.astype(np.int64), scores.astype(np.float32)


def as_ids(ids: Iterable[int] | npt.ArrayLike) -> IntArray:
    """Return ids as a 1-D int64 array, rejecting negatives (``-1`` is the padding id)."""
    arr = np.asarray(ids if not isinstance(ids, (int, np.integer)) else [ids], dtype=np.int64).reshape(-1)
    if arr.size and int(arr.min()) < 0:
        raise InvalidInputError("invalid_input", "index ids must be non-negative integers")
    return arr


def as_matrix(vectors: npt.ArrayLike, dim: int, normalize: bool) -> FloatArray:
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


def top_k(scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
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


def query_blocks(q: FloatArray, size: int) -> list[FloatArray]:
    """Split a query batch into blocks of at most ``size`` rows."""
    return [q[start : start + size] for start in range(0, q.shape[0], size)]

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

    def _validated(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
        """Check an ``add`` call's ids and vectors; return them as arrays (vectors normalised under cosine)."""
        id_arr = as_ids(ids)
        mat = as_matrix(vectors, self.dim, self.metric == "cos")
        if mat.shape[0] != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "ids and vectors differ in length")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "duplicate ids in one add")
        return id_arr, mat

    def _queries(self, queries: npt.ArrayLike) -> FloatArray:
        """Validate and (for cosine) normalise a query batch."""
        return as_matrix(queries, self.dim, self.metric == "cos")

    @staticmethod
    def _check_k(k: int) -> int:
        """Validate ``k``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError("invalid_input", "k must be a positive integer")
        return int(k)

@dataclass(frozen=True)
class PqParams:
    """Product-quantised scan knobs: dimensions per 4-bit sub-quantiser, candidates re-scored exactly, training, segments.

    Defaults picked by ``python benchmarks/search.py`` (2 cores, 1 query at a time, real LFW SFace templates among
    random unit vectors, dim 128 -> 32 sub-quantisers, 16 bytes of code per template): at 1M templates the index
    builds in 5 s and answers at p50 1.5 ms with recall@1 100 % of 1,000 queries (re-rank depth 8: 99.5 %, 64:
    99.9 %); removing one id takes 6 ms median (one segment re-packed). The scan is linear in the collection size.
    Distractors drawn like real templates are harder (``benchmarks/ann_recall.py``, 1M): recall@1 97.1 % and rank-1
    0.943 vs 0.955 exact at rerank 128, 99.3 % / 0.952 at rerank 1024 for twice the search time.
    """

    sub_dim: int = 4
    rerank: int = 128
    train_min: int = 1024
    train_max: int = 65_536
    retrain_growth: float = 4.0
    segment: int = 131_072

    def __post_init__(self) -> None:
        if self.sub_dim < 1 or self.rerank < 1 or self.train_min < 128 or self.train_max < self.train_min:
            raise InvalidInputError("invalid_input", "PqParams: sub_dim, rerank >= 1 and 128 <= train_min <= train_max")
        if self.retrain_growth <= 1.0 or self.segment < 1024:
            raise InvalidInputError("invalid_input", "PqParams: retrain_growth must be > 1 and segment >= 1024")

@dataclass(frozen=True)
class HnswParams:
    """usearch HNSW knobs: graph degree and the candidate-list sizes used when adding and searching.

    The fallback approximate index (``PqIndex`` is the default). Measured with ``benchmarks/search.py`` (2 cores, real
    LFW templates among random unit vectors, these defaults with float16 storage): at 100k recall@1 99.7 % at p50
    0.9 ms (expansion_search 192); at 1M the graph takes 4.6 min to build and reaches 98.9 % at p50 4.0 ms (queries
    near random rows are the hard ones). Degree 32 / expansion 48 builds in 5 min and needs 10 ms for 99.8 %
    (``benchmarks/search.py --sizes 1000000 --methods hnsw --hnsw-configs 32:48:float16 --ef-sweep 512,768,1024
    --hnsw-build-limit-s 900``). Those random distractors are easy: drawn like real templates (``benchmarks/ann_recall.py``,
    FAISS HNSW with these degree and expansion) recall@1 at 1M is 61 % at ef 512.
    """

    connectivity: int = 16
    expansion_add: int = 64
    expansion_search: int = 512

def hnsw_available() -> bool:
    """Tell whether the usearch package can be imported."""
    try:
        import usearch.index  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


def pq_available() -> bool:
    """Tell whether the faiss package (needed by ``PqIndex``) can be imported."""
    return load_faiss() is not None

@dataclass(frozen=True)
class IndexConfig:
    """How a gallery builds its indexes: kind, auto-switch threshold, storage dtype, metric, approximate knobs.

    ``kind="auto"`` uses the exact index below ``approx_threshold`` templates and an approximate one from there on:
    ``PqIndex`` when FAISS is installed, else ``HnswIndex`` when usearch is, else the exact index (with a warning).
    """

    kind: IndexKind = "auto"
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD
    dtype: StorageDType = "float32"
    metric: Metric = "cos"
    hnsw: HnswParams = field(default_factory=HnswParams)
    pq: PqParams = field(default_factory=PqParams)

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "exact", "pq", "hnsw"):
            raise InvalidInputError("invalid_input", f"unknown index kind {self.kind!r} (auto, exact, pq or hnsw)")
        if self.approx_threshold < 0:
            raise InvalidInputError("invalid_input", "approx_threshold must be >= 0")

    def kind_for(self, size: int) -> ConcreteKind:
        """Return the concrete index kind for a collection of ``size`` vectors."""
        if self.kind != "auto":
            return self.kind
        if size >= self.approx_threshold:
            if pq_available():
                return "pq"
            if hnsw_available():
                return "hnsw"
            logger.warning("neither faiss-cpu nor usearch is installed; using the exact index for %d vectors", size)
        return "exact"
