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

from faceatlas.gallery.index.base import (
    DEFAULT_APPROX_THRESHOLD,
    ConcreteKind,
    HnswParams,
    IndexConfig,
    IndexKind,
    Metric,
    PqParams,
    StorageDType,
    VectorIndex,
    hnsw_available,
    pq_available,
)
from faceatlas.gallery.index.exact import ExactIndex
from faceatlas.gallery.index.hnsw import HnswIndex
from faceatlas.gallery.index.pq import PqIndex


def make_index(dim: int, config: IndexConfig | None = None, size_hint: int = 0) -> VectorIndex:
    """Build an empty index for ``dim``-dimensional vectors, choosing an approximate one above the threshold."""
    cfg = config or IndexConfig()
    kind = cfg.kind_for(size_hint)
    if kind == "pq":
        return PqIndex(dim, metric=cfg.metric, dtype=cfg.dtype, params=cfg.pq, initial_capacity=max(1024, size_hint))
    if kind == "hnsw":
        return HnswIndex(dim, metric=cfg.metric, dtype=cfg.dtype, params=cfg.hnsw)
    return ExactIndex(dim, metric=cfg.metric, dtype=cfg.dtype, initial_capacity=max(1024, size_hint))

__all__ = [
    "ConcreteKind",
    "DEFAULT_APPROX_THRESHOLD",
    "ExactIndex",
    "HnswIndex",
    "HnswParams",
    "IndexConfig",
    "IndexKind",
    "Metric",
    "PqIndex",
    "PqParams",
    "StorageDType",
    "VectorIndex",
    "hnsw_available",
    "make_index",
    "pq_available",
]
