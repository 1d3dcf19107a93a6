"""Photo folders: finding image files, embedding every face of them, and clustering a folder incrementally."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FaceAtlasError, InvalidInputError, NotFoundError
from .algorithms import ALGORITHMS, DEFAULT_ALGORITHM, FloatMatrix, default_threshold
from .incremental import add_faces, drop_images, summarize
from .results import ClusterFace, ClusterResult, ImageProblem
from .state import ClusterState

if TYPE_CHECKING:
    from ..pipeline import Pipeline

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
Progress = Callable[[int, int], None]
#: Turns image paths into faces, templates and problems (``embed_photos`` on this machine, or a Ray pool).
Embedder = Callable[[Sequence[Path], Progress | None], tuple[list[ClusterFace], FloatMatrix, list[ImageProblem]]]


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under a folder (recursively, sorted); ``not_found`` when it is not a folder."""
    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError(f"no such folder: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _stamp(path: Path) -> str:
    """Size and modification time of a file."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class PhotoFaces:
    """The faces of one image with their templates (one row each), or the problem that made it unusable."""

    faces: tuple[ClusterFace, ...]
    vectors: FloatMatrix
    problem: ImageProblem | None = None


def photo_faces(atlas: Pipeline, paths: Sequence[Path]) -> Iterator[PhotoFaces]:
    """Every face of each image with its template, image by image in order (unreadable images carry a problem)."""
    from ..pipeline import EMBED_ALL
    from ..video.identity import sighting_weight

    dim = atlas.embedder.dim
    for n, result in enumerate(atlas.iter_many(paths, EMBED_ALL, errors="keep")):
        key = str(paths[n].resolve())
        problem = None
        if result.error is not None:
            problem = ImageProblem(key, result.error.code, result.error.message)
            log.warning("%s: %s", paths[n], result.error)
        kept = [(f, f.template.vector) for f in result.faces if f.template is not None]
        faces = tuple(ClusterFace(key, f.box, float(f.score), sighting_weight(f.score, f.box.width, f.box.height),
                                  f.index) for f, _ in kept)
        vecs = np.stack([v for _, v in kept]) if kept else np.zeros((0, dim), np.float32)
        yield PhotoFaces(faces, vecs.astype(np.float32, copy=False), problem)


def gather_faces(
    items: Iterable[PhotoFaces], dim: int
) -> tuple[list[ClusterFace], FloatMatrix, list[ImageProblem]]:
    """Faces, stacked templates and problems of many images, in image order."""
    faces: list[ClusterFace] = []
    vecs: list[FloatMatrix] = []
    problems: list[ImageProblem] = []
    for item in items:
        faces.extend(item.faces)
        vecs.append(item.vectors)
        if item.problem is not None:
            problems.append(item.problem)
    mat = np.concatenate(vecs).astype(np.float32, copy=False) if vecs else np.zeros((0, dim), np.float32)
    return faces, mat, problems


def embed_photos(
    atlas: Pipeline, paths: Sequence[Path], progress: Progress | None = None
) -> tuple[list[ClusterFace], FloatMatrix, list[ImageProblem]]:
    """Every face of every image with its template; unreadable images are reported, not fatal."""

    def ticking() -> Iterator[PhotoFaces]:
        """The images' faces, reporting progress after each image."""
        for n, item in enumerate(photo_faces(atlas, paths)):
            yield item
            if progress is not None:
                progress(n + 1, len(paths))

    return gather_faces(ticking(), atlas.embedder.dim)


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
    embed: Embedder | None = None,
) -> tuple[ClusterResult, ClusterState]:
    """Cluster every face in a folder, or (given a previous ``state``) add the folder's new images to it.

    ``embed`` does the per-photo work (default: ``embed_photos`` with ``atlas``; ``faceatlas cluster --ray`` passes a
    Ray pool); the clustering itself always runs here.
    """
    if atlas is None:
        from ..facade import FaceAtlas

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
        drop_images(state, known)
    t0 = time.perf_counter()
    if embed is None:
        faces, vecs, problems = embed_photos(atlas, todo, progress)
    else:
        faces, vecs, problems = embed(todo, progress)
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
