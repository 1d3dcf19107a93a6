"""Exact index: every row scored (FAISS brute-force kernel for a few queries, else a BLAS product)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import InvalidInputError
from faceatlas.gallery.index.base import (
    FloatArray,
    IntArray,
    Metric,
    StorageDType,
    VectorIndex,
    as_ids,
    faiss_top_k,
    top_k,
)

_SCORE_BLOCK = 1 << 24  # max query x row scores materialised at once (64 MiB of float32)
_FAISS_MAX_QUERIES = 16  # query blocks up to this size use faiss.knn; larger ones a BLAS matrix product

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
            for key in as_ids(ids).tolist():
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
                found = faiss_top_k(q, self._mat[:n], kk)
                if found is not None:
                    return self._ids[found[0]], found[1]
            rows_per_block = max(1, _SCORE_BLOCK // n)
            for start in range(0, q.shape[0], rows_per_block):
                block = q[start : start + rows_per_block]
                scores = self._scores(block, n)
                pos, vals = top_k(scores, kk)
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
        id_list = as_ids(ids).tolist()
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
