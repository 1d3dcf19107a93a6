"""Approximate index: FAISS 4-bit product-quantised fast scan, best candidates re-scored exactly."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.index.base import (
    FloatArray,
    IntArray,
    Metric,
    PqParams,
    StorageDType,
    VectorIndex,
    as_ids,
    load_faiss,
    query_blocks,
    top_k,
)

logger = logging.getLogger(__name__)

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
        self._faiss = load_faiss()
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
            rows = [self._row.pop(key) for key in as_ids(ids).tolist() if key in self._row]
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
                pos, vals = top_k(np.asarray(q @ self._mat[rows].astype(np.float32).T, dtype=np.float32), kk)
                return self._row_ids[rows][pos], vals
            if self._faiss.omp_get_max_threads() != 1:
                self._faiss.omp_set_num_threads(1)  # this calling thread only, as in the exact index
            depth = max(kk, self.params.rerank)
            out = [self._rescore(block, self._code_candidates(block, depth)[1], kk) for block in query_blocks(q, 256)]
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
        pos, vals = top_k(scores, k)
        ids = np.take_along_axis(self._row_ids[safe], pos, axis=1)
        return np.where(np.isfinite(vals), ids, -1), vals

    def get(self, ids: Iterable[int] | npt.ArrayLike) -> FloatArray:
        """Return the stored vectors of ``ids`` as float32 rows (``KeyError`` for an unknown id)."""
        id_list = as_ids(ids).tolist()
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
