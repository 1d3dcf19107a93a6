"""The per-core photo worker: one pipeline, one model thread, reads its own images (no Ray needed to use it)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError
from ..recognition import MultiFacePolicy, PreparedFace, QualityGates, prepare_face
from ..types import Rejection


@dataclass(frozen=True)
class Skipped:
    """An image whose exact bytes the collection already holds (a resumed run does not analyse it again)."""

    source: str
    image_sha256: str
    #: Lets callers tell it apart without importing this module.
    skipped: ClassVar[bool] = True


#: What a worker hands back for one enrolment image, in the order the images were given.
EnrolItem = PreparedFace | Rejection | Skipped


@dataclass(frozen=True)
class FaceRow:
    """One face of one image for ``embed-dir``: template, box, detection score, quality and the image hash."""

    source: str
    image_sha256: str | None
    face_index: int
    box: tuple[float, float, float, float]
    det_score: float
    quality: float | None
    template: npt.NDArray[np.float32]


@dataclass(frozen=True)
class ImageRows:
    """All faces of one ``embed-dir`` image, or the reason it gave none."""

    source: str
    image_sha256: str | None
    faces: tuple[FaceRow, ...]
    error: str | None = None


@dataclass(frozen=True)
class ChunkResult:
    """A worker's answer for one chunk of images, with where it ran (node id and process id)."""

    node: str
    pid: int
    items: list[Any]


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a file's bytes (the same hash the pipeline records), or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class PhotoWorker:
    """Owns one pipeline (models loaded once, one model thread) and turns image paths into enrolment or embed results."""

    def __init__(self, settings: dict[str, Any], known: frozenset[str] | None = None, node: str = "local",
                 pipeline: Any = None) -> None:
        self.settings = {"threads": 1, **settings}
        self.known = known or frozenset()
        self.node = node
        self._pipe: Any = pipeline

    def pipeline(self) -> Any:
        """The worker's pipeline, built on first use."""
        if self._pipe is None:
            from ..facade import FaceAtlas

            self._pipe = FaceAtlas(**self.settings)
        return self._pipe

    def where(self) -> tuple[str, int]:
        """The node id and process id this worker runs in."""
        return self.node, os.getpid()

    def warm(self) -> tuple[str, int]:
        """Load the models now (so the first chunk is not slower than the rest); returns :meth:`where`."""
        pipe = self.pipeline()
        _ = pipe.detector, pipe.embedder
        return self.where()

    def prepare(self, paths: Sequence[str], multi_face: MultiFacePolicy = "reject",
                gates: QualityGates | None = None) -> ChunkResult:
        """Each image's enrolment face, rejection reason, or Skipped when the collection already holds it."""
        items: list[Any] = []
        for path in paths:
            digest = file_sha256(path) if self.known else None
            if digest is not None and digest in self.known:
                items.append(Skipped(path, digest))
                continue
            try:
                items.append(prepare_face(self.pipeline(), Path(path), source=path, multi_face=multi_face,
                                          gates=gates))
            except FaceAtlasError as exc:
                items.append(Rejection(path, exc.code, exc.message))
        return ChunkResult(self.node, os.getpid(), items)

    def embed(self, paths: Sequence[str]) -> ChunkResult:
        """Every face of each image with template, box, scores and image hash."""
        from ..pipeline import EMBEDDING, QUALITY, FaceRequest

        request = FaceRequest(faces="all", heads=(EMBEDDING, QUALITY), hash_image=True)
        items: list[ImageRows] = []
        for path, res in zip(paths, self.pipeline().iter_many([Path(p) for p in paths], request, errors="keep"),
                             strict=True):
            if res.error is not None:
                items.append(ImageRows(path, res.sha256, (), f"{res.error.code}: {res.error.message}"))
                continue
            rows = []
            for i, face in enumerate(res.faces):
                b = face.detection.box
                assert face.template is not None
                rows.append(FaceRow(path, res.sha256, i, (float(b.x1), float(b.y1), float(b.width), float(b.height)),
                                    float(face.detection.score), None if face.quality is None else float(face.quality),
                                    np.asarray(face.template.vector, dtype=np.float32)))
            items.append(ImageRows(path, res.sha256, tuple(rows)))
        return ChunkResult(self.node, os.getpid(), items)

    def cluster_faces(self, paths: Sequence[str]) -> ChunkResult:
        """Each image's faces and templates for ``faceatlas cluster`` (the same as the local run), or its problem."""
        from ..cluster.photos import photo_faces

        return ChunkResult(self.node, os.getpid(), list(photo_faces(self.pipeline(), [Path(p) for p in paths])))
