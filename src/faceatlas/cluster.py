"""Group the faces of a photo collection by person without labels, incrementally, and promote groups to a gallery.

Every face of every image is embedded; the L2-normalised templates are clustered with one of:

- ``chinese_whispers`` (default, NumPy only): label propagation on the graph whose edges join faces with cosine
  similarity >= ``threshold`` (edge weight = similarity). Each node repeatedly takes the label with the largest total
  edge weight among its neighbours (random order, fixed seed) until no label changes.
- ``components``: connected components of the same graph (simple, but one wrong edge merges two people).
- ``agglomerative``: average-linkage hierarchical clustering cut at cosine distance ``1 - threshold`` (SciPy).
- ``hdbscan`` / ``dbscan``: density-based clustering from scikit-learn (``hdbscan`` ignores ``threshold``).

Clusters smaller than ``min_size`` faces become noise. Faces too small to be recognised reliably (shorter side below
``min_face`` pixels) are never clustered and always reported as noise. The default algorithm and threshold were chosen
by measurement on LFW (``benchmarks/cluster_lfw.py``).

Incremental use: :class:`ClusterState` keeps the templates, labels and per-cluster centroids; adding photos embeds only
the new images, attaches each new face to the most similar existing centroid when the similarity reaches the
threshold, and clusters the rest together with the old noise into new clusters (existing cluster ids never change).
The state file holds face templates, which are biometric data: it is written with owner-only permissions.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FaceAtlasError, InvalidInputError
from .types import Box, Rejection, Template, _r

log = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("chinese_whispers", "components", "agglomerative", "hdbscan", "dbscan")
DEFAULT_ALGORITHM = "chinese_whispers"
#: Cosine threshold per embedding model for joining two faces (measured on LFW, see benchmarks/cluster_lfw.py).
DEFAULT_THRESHOLDS: dict[str, float] = {"sface": 0.50}
#: Used for models without a measured threshold: their verification default plus this margin.
UNMEASURED_MARGIN = 0.10
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
STATE_VERSION = 1

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]


# -- results -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterFace:
    """One face of the photo collection: which image, which face in it, where, and how good it is."""

    image: str
    box: Box
    score: float
    quality: float
    face: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"image": self.image, "face": self.face, "box": self.box.to_list(), "score": _r(self.score, 4)}


@dataclass(frozen=True)
class Cluster:
    """A group of faces believed to be one person, with its most typical face and how tight it is."""

    id: int
    faces: tuple[ClusterFace, ...]
    representative: ClusterFace
    cohesion: float
    person: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        out: dict[str, Any] = {
            "id": self.id,
            "size": len(self.faces),
            "cohesion": _r(self.cohesion, 4),
            "representative": self.representative.to_dict(),
            "faces": [f.to_dict() for f in self.faces],
        }
        if self.person is not None:
            out["person"] = self.person
        return out


#: An image that could not be used, with the error code and message (the same type enrolment reports).
ImageProblem = Rejection


@dataclass(frozen=True)
class ClusterResult:
    """Clusters (largest first), noise faces, the parameters used and what this run added."""

    clusters: tuple[Cluster, ...]
    noise: tuple[ClusterFace, ...]
    algorithm: str
    threshold: float
    model_id: str
    images: int
    new_images: int
    new_faces: int
    assigned_to_existing: int
    problems: tuple[ImageProblem, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Serialise as ONE JSON object (``clusters`` with their faces, ``noise``, parameters and counts)."""
        return {
            "clusters": [c.to_dict() for c in self.clusters],
            "noise": [f.to_dict() for f in self.noise],
            "algorithm": self.algorithm,
            "threshold": _r(self.threshold, 4),
            "model_id": self.model_id,
            "images": self.images,
            "faces": sum(len(c.faces) for c in self.clusters) + len(self.noise),
            "new_images": self.new_images,
            "new_faces": self.new_faces,
            "assigned_to_existing": self.assigned_to_existing,
            "problems": [p.to_dict() for p in self.problems],
            "seconds": {k: _r(v, 3) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True)
class ClusterMetrics:
    """Agreement of a clustering with true labels: pairwise and BCubed precision/recall/F, and counts."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    clusters: int
    singletons: int
    classes: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class PromoteResult:
    """What promoting a cluster did to the gallery."""

    cluster: int
    collection: str
    person: str
    samples: int
    created_collection: bool
    created_person: bool

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return dict(self.__dict__)


# -- algorithms --------------------------------------------------------------------------------------------------


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


def cluster_metrics(predicted: npt.ArrayLike, truth: Sequence[Any]) -> ClusterMetrics:
    """Pairwise and BCubed precision/recall/F of predicted labels (-1 = noise, each its own singleton) vs truth."""
    pred = np.asarray(predicted, np.int64).copy()
    if len(pred) != len(truth):
        raise InvalidInputError("invalid_input", "predicted and true labels must have the same length")
    n = len(pred)
    if n == 0:
        raise InvalidInputError("invalid_input", "no items to score")
    noise = pred < 0
    pred[noise] = pred.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    _, p_idx = np.unique(pred, return_inverse=True)
    _, t_idx = np.unique(np.asarray([str(t) for t in truth]), return_inverse=True)
    joint = p_idx.astype(np.int64) * (int(t_idx.max()) + 1) + t_idx
    _, cell_counts = np.unique(joint, return_counts=True)
    cell_of = np.unique(joint, return_inverse=True)[1]
    p_size = np.bincount(p_idx).astype(np.float64)
    t_size = np.bincount(t_idx).astype(np.float64)
    n_ij = cell_counts.astype(np.float64)

    def pairs(x: npt.NDArray[np.float64]) -> float:
        """Number of unordered pairs inside groups of these sizes."""
        return float((x * (x - 1) / 2).sum())

    tp, pp, tt = pairs(n_ij), pairs(p_size), pairs(t_size)
    pw_p = tp / pp if pp else 1.0
    pw_r = tp / tt if tt else 1.0
    per_item = n_ij[cell_of]
    b_p = float((per_item / p_size[p_idx]).mean())
    b_r = float((per_item / t_size[t_idx]).mean())
    return ClusterMetrics(
        pw_p, pw_r, _f(pw_p, pw_r), b_p, b_r, _f(b_p, b_r),
        clusters=int((p_size >= 2).sum()), singletons=int((p_size == 1).sum()), classes=len(t_size), items=n,
    )


def _f(p: float, r: float) -> float:
    """Harmonic mean of precision and recall."""
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def default_threshold(model_id: str, verification_default: float | None) -> float:
    """The clustering threshold for a model: measured value, else its verification threshold plus a margin."""
    base = model_id.removesuffix("+flip")
    if base in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[base]
    return (verification_default if verification_default is not None else 0.3) + UNMEASURED_MARGIN


# -- state -------------------------------------------------------------------------------------------------------


@dataclass
class ClusterState:
    """Everything needed to add photos later: templates, labels, faces, parameters and promotions (mutable)."""

    model_id: str
    model_sha256: str
    dim: int
    algorithm: str
    threshold: float
    min_size: int = 2
    min_face: float = 20.0
    faces: list[ClusterFace] = field(default_factory=list)
    vectors: FloatMatrix = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: dict[str, str] = field(default_factory=dict)
    next_id: int = 0
    promoted: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.size == 0:
            self.vectors = np.zeros((0, self.dim), np.float32)

    def centroids(self) -> tuple[list[int], FloatMatrix]:
        """Cluster ids and their normalised mean templates."""
        valid = self.labels >= 0
        if not valid.any():
            return [], np.zeros((0, self.dim), np.float32)
        uniq, inv = np.unique(self.labels[valid], return_inverse=True)
        sums = np.zeros((len(uniq), self.dim), np.float64)
        np.add.at(sums, inv, self.vectors[valid])
        return [int(u) for u in uniq], _normalised(sums.astype(np.float32))

    def members(self, cluster: int) -> list[int]:
        """Face indices of one cluster."""
        return np.flatnonzero(self.labels == cluster).tolist()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state atomically as an .npz file readable only by its owner."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": "faceatlas.cluster_state", "version": STATE_VERSION, "model_id": self.model_id,
            "model_sha256": self.model_sha256, "dim": self.dim, "algorithm": self.algorithm,
            "threshold": self.threshold, "min_size": self.min_size, "min_face": self.min_face,
            "images": self.images, "next_id": self.next_id,
            "promoted": {str(k): v for k, v in self.promoted.items()},
            "face_images": [f.image for f in self.faces],
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=target.parent)
        os.close(fd)
        try:
            os.chmod(tmp, 0o600)
            boxes = np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in self.faces], np.float32).reshape(-1, 4)
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    meta=np.array(json.dumps(meta)),
                    vectors=self.vectors.astype(np.float32),
                    labels=self.labels.astype(np.int64),
                    boxes=boxes,
                    scores=np.array([f.score for f in self.faces], np.float32),
                    qualities=np.array([f.quality for f in self.faces], np.float32),
                    face_index=np.array([f.face for f in self.faces], np.int32),
                )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterState:
        """Read a state file written by :meth:`save` (``cluster_state_invalid`` when it is not one)."""
        p = Path(path)
        if not p.is_file():
            raise FaceAtlasError("not_found", f"no cluster state file at {p}")
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                vectors = np.asarray(z["vectors"], np.float32)
                labels = np.asarray(z["labels"], np.int64)
                boxes, scores, quals = z["boxes"], z["scores"], z["qualities"]
                face_index = z["face_index"]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise FaceAtlasError("cluster_state_invalid", f"{p} is not a readable cluster state ({exc})") from None
        if meta.get("kind") != "faceatlas.cluster_state" or int(meta.get("version", 0)) > STATE_VERSION:
            raise FaceAtlasError("cluster_state_invalid", f"{p} is not a cluster state this version can read")
        names = meta["face_images"]
        if not (len(names) == len(vectors) == len(labels) == len(boxes)):
            raise FaceAtlasError("cluster_state_invalid", f"{p}: arrays of different lengths")
        faces = [
            ClusterFace(str(names[k]), Box(*(float(v) for v in boxes[k])), float(scores[k]), float(quals[k]), int(face_index[k]))
            for k in range(len(names))
        ]
        return cls(
            meta["model_id"], meta["model_sha256"], int(meta["dim"]), meta["algorithm"], float(meta["threshold"]),
            int(meta["min_size"]), float(meta["min_face"]), faces, vectors.reshape(-1, int(meta["dim"])), labels,
            dict(meta["images"]), int(meta["next_id"]), {int(k): v for k, v in meta.get("promoted", {}).items()},
        )


# -- folders -----------------------------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under a folder (recursively, sorted); ``not_found`` when it is not a folder."""
    from .errors import NotFoundError

    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError(f"no such folder: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _stamp(path: Path) -> str:
    """Size and modification time of a file."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def embed_faces(
    atlas: Any, paths: Sequence[Path], progress: Progress | None = None
) -> tuple[list[ClusterFace], FloatMatrix, list[ImageProblem]]:
    """Every face of every image with its template; unreadable images are reported, not fatal."""
    from .video.identity import quality

    faces: list[ClusterFace] = []
    vecs: list[npt.NDArray[np.float32]] = []
    problems: list[ImageProblem] = []
    for n, path in enumerate(paths):
        key = str(path.resolve())
        try:
            found = atlas.embed(path, faces="all")
        except FaceAtlasError as exc:
            problems.append(ImageProblem(key, exc.code, exc.message))
            log.warning("%s: %s", path, exc)
            found = []
        for f in found:
            faces.append(ClusterFace(key, f.box, float(f.score), quality(f.score, f.box.width, f.box.height), f.index))
            vecs.append(f.template.vector)
        if progress is not None:
            progress(n + 1, len(paths))
    dim = atlas.embedder.dim
    return faces, (np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)), problems


def cluster_folder(
    folder: str | os.PathLike[str],
    atlas: Any = None,
    *,
    state: ClusterState | None = None,
    algorithm: str | None = None,
    threshold: float | None = None,
    min_size: int = 2,
    min_face: float = 20.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[ClusterResult, ClusterState]:
    """Cluster every face in a folder, or (given a previous ``state``) add the folder's new images to it."""
    if atlas is None:
        from .atlas import FaceAtlas

        atlas = FaceAtlas()
    paths = list_images(folder)
    if state is None:
        spec_default = atlas.store.spec(atlas.embedder_name).default_threshold
        state = ClusterState(
            atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim, algorithm or DEFAULT_ALGORITHM,
            threshold if threshold is not None else default_threshold(atlas.model_id, spec_default), min_size, min_face,
        )
    else:
        if state.model_id != atlas.model_id or state.dim != atlas.embedder.dim:
            raise FaceAtlasError(
                "model_mismatch", f"the cluster state holds {state.model_id!r} templates; this run embeds with {atlas.model_id!r}"
            )
        if algorithm is not None:
            state.algorithm = algorithm
        if threshold is not None:
            state.threshold = threshold
    if state.algorithm not in ALGORITHMS:
        raise InvalidInputError("invalid_input", f"unknown clustering algorithm {state.algorithm!r}")
    todo = [p for p in paths if state.images.get(str(p.resolve())) != _stamp(p)]
    known = {str(p.resolve()) for p in todo} & set(state.images)
    if known:  # changed files: forget their old faces, they are embedded again
        _drop_images(state, known)
    t0 = time.perf_counter()
    faces, vecs, problems = embed_faces(atlas, todo, progress)
    t_embed = time.perf_counter() - t0
    t1 = time.perf_counter()
    assigned = add_faces(state, faces, vecs, seed=seed)
    t_cluster = time.perf_counter() - t1
    failed = {p.image for p in problems}
    for p in todo:
        key = str(p.resolve())
        if key not in failed:  # unreadable images are tried again next time
            state.images[key] = _stamp(p)
    result = summarize(state, problems=problems, new_images=len(todo), new_faces=len(faces), assigned=assigned,
                       seconds={"embed": t_embed, "cluster": t_cluster})
    return result, state


def _drop_images(state: ClusterState, images: set[str]) -> None:
    """Remove the faces of some images from the state (their files changed)."""
    keep = [k for k, f in enumerate(state.faces) if f.image not in images]
    state.faces = [state.faces[k] for k in keep]
    state.vectors = state.vectors[keep]
    state.labels = state.labels[keep]
    for img in images:
        state.images.pop(img, None)


def add_faces(state: ClusterState, faces: Sequence[ClusterFace], vectors: npt.ArrayLike, seed: int = 0) -> int:
    """Add faces to the state: join existing clusters by centroid, cluster the rest with the old noise; return joins."""
    vecs = np.asarray(vectors, np.float32).reshape(-1, state.dim)
    if len(faces) != len(vecs):
        raise InvalidInputError("invalid_input", "one template per face is needed")
    if len(vecs):
        vecs = _normalised(vecs)
    n_old = len(state.faces)
    ids, cents = state.centroids()
    state.faces = list(state.faces) + list(faces)
    state.vectors = np.concatenate([state.vectors, vecs]) if n_old else vecs.copy()
    new_labels = np.full(len(faces), -1, np.int64)
    assigned = 0
    small = np.array([min(f.box.width, f.box.height) < state.min_face for f in faces], bool)
    if ids and len(vecs):
        sims = vecs @ cents.T
        best = sims.argmax(axis=1)
        ok = (sims[np.arange(len(vecs)), best] >= state.threshold) & ~small
        new_labels[ok] = np.asarray(ids, np.int64)[best[ok]]
        assigned = int(ok.sum())
    state.labels = np.concatenate([state.labels, new_labels]) if n_old else new_labels
    pool = np.flatnonzero(state.labels < 0)
    pool = np.array([k for k in pool.tolist() if min(state.faces[k].box.width, state.faces[k].box.height) >= state.min_face],
                    np.int64)
    if len(pool):
        sub = cluster_vectors(state.vectors[pool], state.algorithm, state.threshold, state.min_size, seed)
        for c in range(int(sub.max(initial=-1)) + 1):
            state.labels[pool[sub == c]] = state.next_id
            state.next_id += 1
    return assigned


def summarize(
    state: ClusterState,
    *,
    problems: Sequence[ImageProblem] = (),
    new_images: int = 0,
    new_faces: int = 0,
    assigned: int = 0,
    seconds: dict[str, float] | None = None,
) -> ClusterResult:
    """The result view of a state: clusters (largest first) with representatives and cohesion, and the noise."""
    ids, cents = state.centroids()
    clusters = []
    for cid, cent in zip(ids, cents, strict=True):
        members = state.members(cid)
        sims = state.vectors[members] @ cent
        quals = np.array([state.faces[k].quality for k in members], np.float32)
        rep = members[int(np.argmax(sims * (0.5 + 0.5 * quals)))]
        promoted = state.promoted.get(cid)
        clusters.append(Cluster(cid, tuple(state.faces[k] for k in members), state.faces[rep], float(sims.mean()),
                                promoted.get("person") if promoted else None))
    clusters.sort(key=lambda c: (-len(c.faces), c.id))
    noise = tuple(state.faces[k] for k in np.flatnonzero(state.labels < 0).tolist())
    return ClusterResult(tuple(clusters), noise, state.algorithm, state.threshold, state.model_id, len(state.images),
                         new_images, new_faces, assigned, tuple(problems), dict(seconds or {}))


# -- promotion ---------------------------------------------------------------------------------------------------


def promote(
    state: ClusterState, cluster: int, gallery: Any, collection: str, person: str, name: str | None = None
) -> PromoteResult:
    """Enrol every face of a cluster as samples of a gallery person (collection and person created when missing)."""
    from .errors import NotFoundError

    members = state.members(cluster)
    if not members:
        raise NotFoundError(f"no cluster {cluster} in this state", cluster=cluster)
    if not person.strip():
        raise InvalidInputError("invalid_input", "the person id must not be empty")
    created_collection = False
    try:
        contract = gallery.get_collection(collection).contract
    except NotFoundError:
        gallery.create_collection(collection, state.model_id, state.model_sha256, state.dim)
        created_collection = True
    else:
        if contract.model_id != state.model_id or contract.dim != state.dim or contract.model_sha256 != state.model_sha256:
            raise FaceAtlasError(
                "model_mismatch",
                f"collection {collection!r} holds {contract.model_id!r} templates; this cluster has {state.model_id!r} ones",
            )
    created_person = False
    try:
        gallery.get_person(collection, person)
    except NotFoundError:
        gallery.add_person(collection, person, name or person, {"source": "faceatlas cluster promote"})
        created_person = True
    templates = [Template(state.vectors[k], state.model_id) for k in members]
    faces = [state.faces[k] for k in members]
    gallery.add_samples(
        collection, person, templates,
        qualities=[f.quality for f in faces], detection_scores=[f.score for f in faces], boxes=[f.box for f in faces],
    )
    state.promoted[cluster] = {"collection": collection, "person": person, "samples": len(members)}
    return PromoteResult(cluster, collection, person, len(members), created_collection, created_person)


# -- contact sheet -----------------------------------------------------------------------------------------------


def _thumbnail(rgb: npt.NDArray[np.uint8], box: Box, size: int) -> str:
    """A base64 JPEG data URI of a face with some context, ``size`` pixels square."""
    from PIL import Image

    h, w = rgb.shape[:2]
    side = max(box.width, box.height) * 1.4
    cx, cy = box.center
    x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x2, y2 = int(min(w, math.ceil(cx + side / 2))), int(min(h, math.ceil(cy + side / 2)))
    crop = Image.fromarray(rgb[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)])
    crop.thumbnail((size, size))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_contact_sheet(
    result: ClusterResult, path: str | os.PathLike[str], *, thumb: int = 96, max_per_cluster: int = 60, max_noise: int = 200
) -> Path:
    """Write a self-contained HTML page: one row per cluster (representative first), then the noise faces."""
    from .images import load_image

    cache: dict[str, npt.NDArray[np.uint8] | None] = {}

    def pixels(image: str) -> npt.NDArray[np.uint8] | None:
        """Decoded pixels of an image (None when it cannot be read any more), cached per image."""
        if image not in cache:
            if len(cache) > 64:
                cache.clear()
            try:
                cache[image] = load_image(image).rgb
            except FaceAtlasError as exc:
                log.warning("contact sheet: %s", exc)
                cache[image] = None
        return cache[image]

    def tile(face: ClusterFace, css: str = "") -> str:
        """HTML of one thumbnail."""
        rgb = pixels(face.image)
        title = html.escape(f"{face.image} face {face.face} score {face.score:.2f}", quote=True)
        if rgb is None:
            return f'<div class="miss {css}" title="{title}">?</div>'
        return f'<img class="{css}" src="{_thumbnail(rgb, face.box, thumb)}" title="{title}" alt="">'

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>faceatlas clusters</title><style>",
        "body{font-family:sans-serif;margin:16px;background:#fafafa}h2{font-size:15px;margin:18px 0 6px}",
        f"img,.miss{{width:{thumb}px;height:{thumb}px;object-fit:cover;margin:2px;border-radius:4px}}",
        ".rep{outline:3px solid #2a7}.miss{display:inline-block;background:#ddd;text-align:center}",
        ".meta{color:#666;font-size:12px}</style></head><body>",
        f"<h1>{len(result.clusters)} clusters, {len(result.noise)} unclustered faces</h1>",
        f"<p class='meta'>algorithm {html.escape(result.algorithm)}, threshold {result.threshold:.3f}, "
        f"model {html.escape(result.model_id)}, {result.images} images</p>",
    ]
    for c in result.clusters:
        who = f" — {html.escape(c.person)}" if c.person else ""
        parts.append(f"<h2>Cluster {c.id}{who} <span class='meta'>{len(c.faces)} faces, cohesion {c.cohesion:.2f}</span></h2>")
        parts.append(tile(c.representative, "rep"))
        shown = [f for f in c.faces if f is not c.representative][: max_per_cluster - 1]
        parts.extend(tile(f) for f in shown)
        if len(c.faces) > len(shown) + 1:
            parts.append(f"<span class='meta'>+{len(c.faces) - len(shown) - 1} more</span>")
    if result.noise:
        parts.append(f"<h2>Noise <span class='meta'>{len(result.noise)} faces</span></h2>")
        parts.extend(tile(f) for f in result.noise[:max_noise])
    parts.append("</body></html>")
    target = Path(path)
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
