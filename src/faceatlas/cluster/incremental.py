"""Adding faces to a cluster state (nearest centroid, then clustering the rest) and the result view of a state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from .algorithms import _normalised, cluster_vectors
from .results import Cluster, ClusterFace, ClusterResult, ImageProblem
from .state import ClusterState


def drop_images(state: ClusterState, images: set[str]) -> None:
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
