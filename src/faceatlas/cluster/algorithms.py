"""Clustering algorithms on L2-normalised templates, relabelling, and the default threshold per model."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError

ALGORITHMS: tuple[str, ...] = ("chinese_whispers", "components", "agglomerative", "hdbscan", "dbscan")
DEFAULT_ALGORITHM = "chinese_whispers"
#: Cosine threshold per embedding model for joining two faces (measured on LFW, see benchmarks/cluster_lfw.py).
DEFAULT_THRESHOLDS: dict[str, float] = {"sface": 0.50}
#: Used for models without a measured threshold: their verification default plus this margin.
UNMEASURED_MARGIN = 0.10

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]


def _normalised(vectors: npt.ArrayLike) -> FloatMatrix:
    """Validate an (n, d) matrix of finite non-zero rows and L2-normalise it."""
    mat = np.asarray(vectors, dtype=np.float32)
    if mat.ndim != 2:
        raise InvalidInputError("invalid_input", f"vectors must be an (n, dim) matrix, got shape {mat.shape}")
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    if mat.size and (not np.all(np.isfinite(norms)) or np.any(norms == 0)):
        raise InvalidInputError("invalid_input", "vectors must be finite and non-zero")
    return (mat / np.where(norms == 0, 1, norms)).astype(np.float32)


def similarity_edges(
    vectors: npt.ArrayLike, threshold: float, block: int = 2048
) -> tuple[IntArray, IntArray, npt.NDArray[np.float32]]:
    """Every pair ``i < j`` with cosine similarity >= ``threshold`` (computed block by block to bound memory)."""
    x = _normalised(vectors)
    n = len(x)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    sims: list[npt.NDArray[np.float32]] = []
    for a in range(0, n, block):
        s = x[a : a + block] @ x.T
        r, c = np.nonzero(s >= threshold)
        keep = c > r + a
        rows.append((r[keep] + a).astype(np.int64))
        cols.append(c[keep].astype(np.int64))
        sims.append(s[r[keep], c[keep]].astype(np.float32))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def connected_components(n: int, i: IntArray, j: IntArray) -> IntArray:
    """Component label of each of ``n`` nodes for undirected edges ``(i, j)`` (union-find)."""
    parent = np.arange(n)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = int(parent[root])
        while parent[a] != root:
            parent[a], a = root, int(parent[a])
        return root

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(a) for a in range(n)], np.int64)


def chinese_whispers(
    n: int, i: IntArray, j: IntArray, w: npt.NDArray[np.float32], iterations: int = 30, seed: int = 0
) -> IntArray:
    """Chinese-whispers labels of ``n`` nodes on weighted undirected edges (deterministic for a seed)."""
    labels = np.arange(n, dtype=np.int64)
    if n == 0 or len(i) == 0:
        return labels
    src = np.concatenate([i, j])
    dst = np.concatenate([j, i])
    wt = np.concatenate([w, w]).astype(np.float64)
    order = np.argsort(src, kind="stable")
    src, dst, wt = src[order], dst[order], wt[order]
    starts = np.searchsorted(src, np.arange(n + 1))
    rng = np.random.default_rng(seed)
    nodes = np.unique(src)
    for _ in range(iterations):
        changed = 0
        for v in rng.permutation(nodes).tolist():
            a, b = starts[v], starts[v + 1]
            neigh = labels[dst[a:b]]
            if len(neigh) == 1:
                best = int(neigh[0])
            else:
                uniq, inv = np.unique(neigh, return_inverse=True)
                totals = np.bincount(inv, weights=wt[a:b])
                top = np.flatnonzero(totals >= totals.max() - 1e-12)
                best = int(uniq[top].min()) if labels[v] not in uniq[top] else int(labels[v])
            if best != labels[v]:
                labels[v] = best
                changed += 1
        if changed == 0:
            break
    return labels


def agglomerative(vectors: npt.ArrayLike, threshold: float, linkage: str = "average") -> IntArray:
    """Hierarchical clustering cut at cosine distance ``1 - threshold`` (needs SciPy)."""
    x = _normalised(vectors)
    if len(x) < 2:
        return np.arange(len(x), dtype=np.int64)
    try:
        from scipy.cluster.hierarchy import fcluster
        from scipy.cluster.hierarchy import linkage as scipy_linkage
    except ImportError:
        raise FaceAtlasError(
            "missing_dependency", "the agglomerative algorithm needs SciPy: pip install 'faceatlas[cluster]'"
        ) from None
    dist = 1.0 - (x @ x.T).astype(np.float64)
    iu = np.triu_indices(len(x), 1)
    condensed = np.clip(dist[iu], 0.0, 2.0)
    del dist
    tree = scipy_linkage(condensed, method=linkage)
    return np.asarray(fcluster(tree, t=1.0 - threshold, criterion="distance"), np.int64)


def _sklearn(name: str) -> Any:
    """Import a scikit-learn clustering class, with a clear error when scikit-learn is missing."""
    try:
        from sklearn import cluster as skc
    except ImportError:
        raise FaceAtlasError(
            "missing_dependency", f"the {name} algorithm needs scikit-learn: pip install 'faceatlas[cluster]'"
        ) from None
    return getattr(skc, name)


def cluster_vectors(
    vectors: npt.ArrayLike,
    algorithm: str = DEFAULT_ALGORITHM,
    threshold: float = 0.50,
    min_size: int = 2,
    seed: int = 0,
) -> IntArray:
    """Cluster labels (0..k-1, largest cluster first) of L2-normalised templates; -1 marks noise."""
    if algorithm not in ALGORITHMS:
        raise InvalidInputError(
            "invalid_input", f"unknown clustering algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        )
    if not (isinstance(threshold, (int, float)) and -1.0 <= threshold <= 1.0):
        raise InvalidInputError("invalid_input", "the clustering threshold must be a cosine similarity in [-1, 1]")
    if min_size < 1:
        raise InvalidInputError("invalid_input", "min_size must be >= 1")
    x = _normalised(vectors)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    if algorithm in ("chinese_whispers", "components"):
        i, j, w = similarity_edges(x, threshold)
        raw = chinese_whispers(n, i, j, w, seed=seed) if algorithm == "chinese_whispers" else connected_components(n, i, j)
    elif algorithm == "agglomerative":
        raw = agglomerative(x, threshold)
    elif algorithm == "dbscan":
        model = _sklearn("DBSCAN")(eps=max(1e-6, 1.0 - threshold), min_samples=max(1, min_size), metric="cosine")
        raw = np.asarray(model.fit_predict(x), np.int64)
    else:
        if n < 2:
            return np.full(n, -1, np.int64) if min_size > 1 else np.zeros(n, np.int64)
        model = _sklearn("HDBSCAN")(min_cluster_size=max(2, min_size), min_samples=1, metric="euclidean", copy=True)
        raw = np.asarray(model.fit_predict(x), np.int64)
    return relabel(raw, min_size)


def relabel(raw: npt.ArrayLike, min_size: int = 2) -> IntArray:
    """Renumber cluster labels 0..k-1 by decreasing size (ties: first member); small clusters and -1 become -1."""
    lab = np.asarray(raw, np.int64)
    out = np.full(len(lab), -1, np.int64)
    valid = lab >= 0
    if not valid.any():
        return out
    uniq, first, counts = np.unique(lab[valid], return_index=True, return_counts=True)
    keep = counts >= min_size
    order = sorted(np.flatnonzero(keep).tolist(), key=lambda k: (-counts[k], first[k]))
    mapping = {int(uniq[k]): new for new, k in enumerate(order)}
    idx = np.flatnonzero(valid)
    out[idx] = [mapping.get(int(v), -1) for v in lab[valid]]
    return out


def default_threshold(model_id: str, verification_default: float | None) -> float:
    """The clustering threshold for a model: measured value, else its verification threshold plus a margin."""
    base = model_id.removesuffix("+flip")
    if base in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[base]
    return (verification_default if verification_default is not None else 0.3) + UNMEASURED_MARGIN
