"""Approximate index on a usearch HNSW graph (the fallback when FAISS is absent)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.index.base import (
    FloatArray,
    HnswParams,
    IntArray,
    Metric,
    StorageDType,
    VectorIndex,
    as_ids,
)

_HNSW_PARALLEL_MIN = 1024  # HNSW adds of fewer vectors run on one thread (see _hnsw_add_threads)

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
            present = [key for key in as_ids(ids).tolist() if key in self._keys]
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
        id_list = as_ids(ids).tolist()
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
