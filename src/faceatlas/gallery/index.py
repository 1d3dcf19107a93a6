"""In-memory nearest-neighbour indexes over templates keyed by sample id: exact, product-quantised scan, HNSW.

Every index scores by cosine similarity (``metric="cos"``, vectors normalised on the way in) or
raw inner product (``metric="ip"``), returns the best ``k`` ids per query as ``(ids, scores)``
arrays of shape ``(queries, min(k, len))`` padded with id ``-1`` and score ``-inf``, and applies adds
and removals immediately. All methods are thread-safe.

Exact search of a few queries goes through FAISS's SIMD brute-force kernel (``faiss.knn``) when ``faiss-cpu`` is
installed; larger query batches use a BLAS matrix product. The kernel runs on the calling thread only (FAISS's OpenMP
team for that thread is set to one thread), so concurrent requests each get a core instead of contending for both.
``benchmarks/search.py`` times it against FAISS's own ``IndexFlatIP`` in the same run.

Large collections use an approximate index. ``PqIndex`` (the default above ``DEFAULT_APPROX_THRESHOLD`` when FAISS is
installed) scans 4-bit product-quantised codes with FAISS's fast-scan kernel and re-scores the best candidates
exactly against the full-precision rows; ``HnswIndex`` (usearch) is the graph alternative, used when FAISS is absent.
``benchmarks/search.py`` chose between them (see ``PqParams``).
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
IndexKind = Literal["auto", "exact", "pq", "hnsw"]
ConcreteKind = Literal["exact", "pq", "hnsw"]

DEFAULT_APPROX_THRESHOLD = 50_000
_SCORE_BLOCK = 1 << 24  # max query x row scores materialised at once (64 MiB of float32)
_FAISS_MAX_QUERIES = 16  # query blocks up to this size use faiss.knn; larger ones a BLAS matrix product
_HNSW_PARALLEL_MIN = 1024  # HNSW adds of fewer vectors run on one thread (see _hnsw_add_threads)


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

    def _validated(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
        """Check an ``add`` call's ids and vectors; return them as arrays (vectors normalised under cosine)."""
        id_arr = _as_ids(ids)
        mat = _as_matrix(vectors, self.dim, self.metric == "cos")
        if mat.shape[0] != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "ids and vectors differ in length")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise InvalidInputError("invalid_input", "duplicate ids in one add")
        return id_arr, mat

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
        id_arr, mat = self._validated(ids, vectors)
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
class PqParams:
    """Product-quantised scan knobs: dimensions per 4-bit sub-quantiser, candidates re-scored exactly, training, segments.

    Defaults picked by ``python benchmarks/search.py`` (2 cores, 1 query at a time, real LFW SFace templates among
    random unit vectors, dim 128 -> 32 sub-quantisers, 16 bytes of code per template): at 1M templates the index
    builds in 5 s and answers at p50 1.5 ms with recall@1 100 % of 1,000 queries (re-rank depth 8: 99.5 %, 64:
    99.9 %); removing one id takes 6 ms median (one segment re-packed). The scan is linear in the collection size.
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


@dataclass
class _CodeSegment:
    """Codes of up to ``PqParams.segment`` rows in one FAISS fast-scan index; ``rows[p]`` is code ``p``'s matrix row."""

    codes: Any
    rows: IntArray


class PqIndex(VectorIndex):
    """Approximate index: a 4-bit product-quantised fast scan (FAISS) proposes candidates, full rows re-score them.

    Full-precision rows live in one matrix (float32 or float16) as in ``ExactIndex``; FAISS holds a 16-centroid
    codebook per ``sub_dim`` dimensions and one code per row, in segments of ``segment`` codes (a removal re-packs
    only its segment). A query scans every code with SIMD table lookups, keeps the ``max(k, rerank)`` best rows and
    returns their exact scores, so the answer is exact whenever the true best rows are among the candidates. Until
    ``train_min`` rows exist the index scans the rows exactly; the codebooks are trained on up to ``train_max`` rows
    and retrained when the collection has grown ``retrain_growth`` times since. Removals take the row and its code
    out before the call returns.
    """

    kind = "pq"

    def __init__(
        self,
        dim: int,
        metric: Metric = "cos",
        dtype: StorageDType = "float32",
        params: PqParams | None = None,
        initial_capacity: int = 1024,
    ) -> None:
        super().__init__(dim, metric)
        self._faiss = _faiss()
        if self._faiss is None:
            raise FaceAtlasError(
                "index_unavailable", "the product-quantised index needs the 'faiss-cpu' package (pip install faiss-cpu)"
            )
        if dtype not in ("float32", "float16"):
            raise InvalidInputError("invalid_input", f"unsupported storage dtype {dtype!r}")
        self.dtype: StorageDType = dtype
        self.params = params or PqParams()
        self._m = -(-self.dim // self.params.sub_dim)  # sub-quantisers; rows are zero-padded to m * sub_dim
        cap = max(16, int(initial_capacity))
        self._mat: npt.NDArray[Any] = np.zeros((cap, self.dim), dtype=np.dtype(dtype))
        self._row_ids: IntArray = np.full(cap, -1, dtype=np.int64)  # matrix row -> id (-1: free)
        self._row_seg: IntArray = np.full(cap, -1, dtype=np.int64)  # matrix row -> code segment (-1: none)
        self._row: dict[int, int] = {}  # id -> matrix row
        self._free: list[int] = []
        self._top = 0  # rows [0, top) have been used
        self._quantizer: Any = None  # trained, empty faiss.IndexPQ: the codebooks every segment copies
        self._segments: list[_CodeSegment] = []
        self._trained_on = 0

    def __repr__(self) -> str:
        return (
            f"PqIndex(dim={self.dim}, metric={self.metric!r}, dtype={self.dtype!r}, params={self.params}, "
            f"size={len(self._row)}, trained_on={self._trained_on}, segments={len(self._segments)})"
        )

    # -- storage --------------------------------------------------------------------------------------------

    def _take_rows(self, count: int) -> IntArray:
        """Reserve ``count`` matrix rows (free slots first, then growing the matrix by doubling)."""
        reuse = [self._free.pop() for _ in range(min(count, len(self._free)))]
        fresh = count - len(reuse)
        if self._top + fresh > self._mat.shape[0]:
            new_cap = max(self._top + fresh, self._mat.shape[0] * 2)
            mat = np.zeros((new_cap, self.dim), dtype=self._mat.dtype)
            mat[: self._top] = self._mat[: self._top]
            row_ids = np.full(new_cap, -1, dtype=np.int64)
            row_ids[: self._top] = self._row_ids[: self._top]
            row_seg = np.full(new_cap, -1, dtype=np.int64)
            row_seg[: self._top] = self._row_seg[: self._top]
            self._mat, self._row_ids, self._row_seg = mat, row_ids, row_seg
        rows = np.asarray(reuse + list(range(self._top, self._top + fresh)), dtype=np.int64)
        self._top += fresh
        return rows

    def _padded(self, rows: npt.NDArray[Any]) -> FloatArray:
        """Rows as float32, zero-padded to the quantiser's width."""
        width = self._m * self.params.sub_dim
        out = np.zeros((rows.shape[0], width), dtype=np.float32)
        out[:, : self.dim] = rows
        return out

    # -- codes ----------------------------------------------------------------------------------------------

    def code_count(self) -> int:
        """Number of rows that currently have a code (0 before training)."""
        return sum(int(seg.codes.ntotal) for seg in self._segments)

    def _retrain(self) -> None:
        """Train codebooks on a sample of the live rows and encode every live row."""
        live = np.fromiter(self._row.values(), dtype=np.int64, count=len(self._row))
        live.sort()
        rng = np.random.default_rng(len(live))
        sample = live if len(live) <= self.params.train_max else rng.choice(live, self.params.train_max, replace=False)
        quantizer = self._faiss.IndexPQ(self._m * self.params.sub_dim, self._m, 4, self._faiss.METRIC_INNER_PRODUCT)
        quantizer.pq.cp.min_points_per_centroid = 8  # train_min >= 128 rows suffice for 16 centroids (quiet FAISS)
        quantizer.train(self._padded(self._mat[np.sort(sample)]))
        self._quantizer, self._trained_on = quantizer, len(live)
        self._reencode(live)
        logger.debug("product-quantised codes trained on %d of %d rows", len(sample), len(live))

    def _reencode(self, live: IntArray) -> None:
        """Drop every code segment and encode ``live`` rows afresh with the current codebooks."""
        self._segments = []
        self._row_seg[: self._top] = -1
        self._append_codes(live)

    def _append_codes(self, rows: IntArray) -> None:
        """Encode rows into the last segment, opening new segments as they fill."""
        start = 0
        while start < rows.shape[0]:
            if not self._segments or self._segments[-1].codes.ntotal >= self.params.segment:
                codes = self._faiss.IndexPQFastScan(self._quantizer)  # copies the trained codebooks, no codes
                self._segments.append(_CodeSegment(codes, np.zeros(0, dtype=np.int64)))
            seg = self._segments[-1]
            take = rows[start : start + self.params.segment - int(seg.codes.ntotal)]
            for block in range(0, take.shape[0], 262_144):
                seg.codes.add(self._padded(self._mat[take[block : block + 262_144]]))
            seg.rows = np.concatenate([seg.rows, take])
            self._row_seg[take] = len(self._segments) - 1
            start += take.shape[0]

    def _encode(self, rows: IntArray) -> None:
        """Append codes for new rows, training (or retraining) the codebooks when the collection has grown enough."""
        live = len(self._row)
        if self._quantizer is None:
            if live >= self.params.train_min:
                self._retrain()
            return
        if self._trained_on < self.params.train_max and live >= self.params.retrain_growth * self._trained_on:
            self._retrain()
            return
        self._append_codes(rows)

    def _drop_codes(self, rows: IntArray) -> None:
        """Remove the codes of some rows; each touched segment re-packs its later codes (and its row map)."""
        segs = self._row_seg[rows]
        for s in np.unique(segs[segs >= 0]).tolist():
            seg = self._segments[s]
            positions = np.flatnonzero(np.isin(seg.rows, rows[segs == s]))
            seg.codes.remove_ids(self._faiss.IDSelectorBatch(positions.astype(np.int64)))
            seg.rows = np.delete(seg.rows, positions)
        self._row_seg[rows] = -1
        needed = -(-len(self._row) // self.params.segment)
        if len(self._segments) > needed + 2:  # removals thinned the segments out: pack them again
            self._reencode(np.sort(np.fromiter(self._row.values(), dtype=np.int64, count=len(self._row))))

    # -- VectorIndex ------------------------------------------------------------------------------------------

    def add(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert vectors under the given ids (an existing id has its vector replaced)."""
        id_arr, mat = self._validated(ids, vectors)
        if not id_arr.size:
            return
        with self._lock:
            existing = [key for key in id_arr.tolist() if key in self._row]
            if existing:
                self.remove(existing)
            rows = self._take_rows(id_arr.shape[0])
            self._mat[rows] = mat
            self._row_ids[rows] = id_arr
            self._row.update(zip(id_arr.tolist(), rows.tolist(), strict=True))
            self._encode(rows)

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ids (unknown ones are ignored): rows are zeroed and their codes dropped at once."""
        with self._lock:
            rows = [self._row.pop(key) for key in _as_ids(ids).tolist() if key in self._row]
            if not rows:
                return 0
            row_arr = np.asarray(rows, dtype=np.int64)
            self._mat[row_arr] = 0  # no template copy left behind in a free slot
            self._row_ids[row_arr] = -1
            self._free.extend(rows)
            self._drop_codes(row_arr)
            return len(rows)

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """Return the ``k`` best ids and scores per query: code scan for candidates, exact scores for the answer."""
        k = self._check_k(k)
        q = self._queries(queries)
        with self._lock:
            kk = min(k, len(self._row))
            if kk == 0 or q.shape[0] == 0:
                return np.full((q.shape[0], kk), -1, dtype=np.int64), np.full((q.shape[0], kk), -np.inf, np.float32)
            if self._quantizer is None:  # fewer than train_min rows: score them all
                rows = np.fromiter(self._row.values(), dtype=np.int64, count=len(self._row))
                pos, vals = _top_k(np.asarray(q @ self._mat[rows].astype(np.float32).T, dtype=np.float32), kk)
                return self._row_ids[rows][pos], vals
            if self._faiss.omp_get_max_threads() != 1:
                self._faiss.omp_set_num_threads(1)  # this calling thread only, as in the exact index
            depth = max(kk, self.params.rerank)
            out = [self._rescore(block, self._code_candidates(block, depth)[1], kk) for block in _blocks(q, 256)]
            return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def _code_candidates(self, q: FloatArray, depth: int) -> tuple[FloatArray, IntArray]:
        """Code-estimated scores and matrix rows of the ``depth`` best codes per query (-inf / -1 padding)."""
        padded = self._padded(q)
        scores, rows = [], []
        for seg in self._segments:
            n = int(seg.codes.ntotal)
            if n == 0:
                continue
            d, pos = seg.codes.search(padded, min(depth, n))
            rows.append(np.where(pos >= 0, seg.rows[np.maximum(pos, 0)], -1))
            scores.append(np.where(pos >= 0, d, -np.inf).astype(np.float32))
        if not rows:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        all_scores, all_rows = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
        if all_rows.shape[1] > depth:
            best = np.argpartition(-all_scores, depth - 1, axis=1)[:, :depth]
            all_scores, all_rows = np.take_along_axis(all_scores, best, 1), np.take_along_axis(all_rows, best, 1)
        return all_scores, all_rows

    def _rescore(self, q: FloatArray, rows: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        """Exact scores of candidate rows per query, and the best ``k`` as (ids, scores)."""
        safe = np.maximum(rows, 0)
        cand = self._mat[safe].astype(np.float32, copy=False)
        scores = np.einsum("qcd,qd->qc", cand, q, optimize=False).astype(np.float32)
        scores[rows < 0] = -np.inf
        pos, vals = _top_k(scores, k)
        ids = np.take_along_axis(self._row_ids[safe], pos, axis=1)
        return np.where(np.isfinite(vals), ids, -1), vals

    def get(self, ids: Iterable[int] | npt.ArrayLike) -> FloatArray:
        """Return the stored vectors of ``ids`` as float32 rows (``KeyError`` for an unknown id)."""
        id_list = _as_ids(ids).tolist()
        with self._lock:
            rows = [self._row[key] for key in id_list]
            return np.asarray(self._mat[rows], dtype=np.float32).reshape(len(rows), self.dim)

    def ids(self) -> IntArray:
        """Return all ids currently in the index."""
        with self._lock:
            return np.fromiter(self._row.keys(), dtype=np.int64, count=len(self._row))

    def __len__(self) -> int:
        """Number of vectors in the index."""
        return len(self._row)

    def __contains__(self, item: object) -> bool:
        """Tell whether an id is in the index."""
        return isinstance(item, (int, np.integer)) and int(item) in self._row


def _blocks(q: FloatArray, size: int) -> list[FloatArray]:
    """Split a query batch into blocks of at most ``size`` rows."""
    return [q[start : start + size] for start in range(0, q.shape[0], size)]


@dataclass(frozen=True)
class HnswParams:
    """usearch HNSW knobs: graph degree and the candidate-list sizes used when adding and searching.

    The fallback approximate index (``PqIndex`` is the default). Measured with ``benchmarks/search.py`` (2 cores, real
    LFW templates among random unit vectors, these defaults with float16 storage): at 100k recall@1 99.7 % at p50
    0.9 ms (expansion_search 192); at 1M the graph takes 4.6 min to build and reaches 98.9 % at p50 4.0 ms (queries
    near random rows are the hard ones). Degree 32 / expansion 48 builds in 5 min and needs 10 ms for 99.8 %
    (``benchmarks/search.py --sizes 1000000 --methods hnsw --hnsw-configs 32:48:float16 --ef-sweep 512,768,1024
    --hnsw-build-limit-s 900``).
    """

    connectivity: int = 16
    expansion_add: int = 64
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
        id_arr, mat = self._validated(ids, vectors)
        if not id_arr.size:
            return
        with self._lock:
            existing = [key for key in id_arr.tolist() if key in self._keys]
            if existing:
                self.remove(existing)
            self._index.add(id_arr.astype(np.uint64), mat, threads=_hnsw_add_threads(len(mat)))
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
                self._index.add(keys.astype(np.uint64), vectors, threads=_hnsw_add_threads(len(vectors)))
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


def _hnsw_add_threads(batch: int) -> int:
    """usearch threads for adding ``batch`` vectors: one for small batches, every core (0) for bulk loads.

    Vectors of one small batch inserted concurrently can end up unreachable from the rest of the graph (seen with
    4-vector adds: some stored vectors were never returned, whatever ``expansion_search``); one thread links each
    to the ones before it, and a small batch gains nothing from threads anyway."""
    return 1 if batch < _HNSW_PARALLEL_MIN else 0


def hnsw_available() -> bool:
    """Tell whether the usearch package can be imported."""
    try:
        import usearch.index  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


def pq_available() -> bool:
    """Tell whether the faiss package (needed by ``PqIndex``) can be imported."""
    return _faiss() is not None


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


def make_index(dim: int, config: IndexConfig | None = None, size_hint: int = 0) -> VectorIndex:
    """Build an empty index for ``dim``-dimensional vectors, choosing an approximate one above the threshold."""
    cfg = config or IndexConfig()
    kind = cfg.kind_for(size_hint)
    if kind == "pq":
        return PqIndex(dim, metric=cfg.metric, dtype=cfg.dtype, params=cfg.pq, initial_capacity=max(1024, size_hint))
    if kind == "hnsw":
        return HnswIndex(dim, metric=cfg.metric, dtype=cfg.dtype, params=cfg.hnsw)
    return ExactIndex(dim, metric=cfg.metric, dtype=cfg.dtype, initial_capacity=max(1024, size_hint))
