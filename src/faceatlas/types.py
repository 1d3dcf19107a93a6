"""Small frozen result types shared by every stage, with one ``to_dict`` convention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _frozen_array(values: Any, shape: tuple[int, ...] | None = None) -> FloatArray:
    """Return a read-only float32 copy of ``values``, optionally checking its shape."""
    arr = np.array(values, dtype=np.float32, copy=True)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"expected shape {shape}, got {arr.shape}")
    arr.setflags(write=False)
    return arr


def _r(x: float, nd: int = 2) -> float:
    """Round a float for JSON output."""
    return round(float(x), nd)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in original image pixel coordinates (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y)."""
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def iou(self, other: Box) -> float:
        """Intersection over union with another box."""
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_list(self) -> list[float]:
        """Return ``[x1, y1, x2, y2]`` rounded for JSON."""
        return [_r(self.x1), _r(self.y1), _r(self.x2), _r(self.y2)]


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected face: box, confidence and five landmarks (eyes, nose, mouth corners) as (x, y)."""

    box: Box
    score: float
    landmarks: FloatArray
    detector: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "landmarks", _frozen_array(self.landmarks, (5, 2)))

    def to_dict(self) -> dict[str, Any]:
        """Serialise with box as ``[x1,y1,x2,y2]`` and landmarks as five ``[x,y]``."""
        return {
            "box": self.box.to_list(),
            "score": _r(self.score, 4),
            "landmarks": [[_r(x), _r(y)] for x, y in self.landmarks.tolist()],
        }


@dataclass(frozen=True, eq=False)
class Template:
    """An L2-normalised float32 embedding tagged with the id of the model that made it."""

    vector: FloatArray
    model_id: str

    def __post_init__(self) -> None:
        vec = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("template vector must be finite and non-zero")
        object.__setattr__(self, "vector", _frozen_array(vec / norm))

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.vector.shape[0])

    def to_dict(self, include_vector: bool = False) -> dict[str, Any]:
        """Serialise; the vector itself only when asked (templates are biometric data)."""
        out: dict[str, Any] = {"model_id": self.model_id, "dim": self.dim}
        if include_vector:
            out["vector"] = [round(float(v), 6) for v in self.vector]
        return out


@dataclass(frozen=True, eq=False)
class Face:
    """A face in an image: its detection, its index in the image's face list, and what the pipeline's heads made.

    ``template`` comes from the embedding head, ``quality`` (the score) from the quality head, ``crop`` (the
    canonical 112×112 RGB crop, never serialised) from the crop head; ``heads`` holds every head's full result
    by name (e.g. the :class:`faceatlas.quality.Quality` factors).
    """

    detection: Detection
    index: int = 0
    template: Template | None = None
    quality: float | None = None
    crop: npt.NDArray[np.uint8] | None = field(default=None, repr=False)
    heads: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", MappingProxyType(dict(self.heads)))

    def head(self, name: str) -> Any:
        """The result of the per-face head ``name`` (None when that head did not run)."""
        return self.heads.get(name)

    @property
    def box(self) -> Box:
        """Shortcut to the detection box."""
        return self.detection.box

    @property
    def score(self) -> float:
        """Shortcut to the detection score."""
        return self.detection.score

    @property
    def landmarks(self) -> FloatArray:
        """Shortcut to the five landmarks."""
        return self.detection.landmarks

    def to_dict(self, include_template: bool = False) -> dict[str, Any]:
        """Serialise the face; templates are summarised unless explicitly included."""
        out: dict[str, Any] = {"index": self.index, **self.detection.to_dict()}
        if self.quality is not None:
            out["quality"] = _r(self.quality, 4)
        if self.template is not None:
            out["template"] = self.template.to_dict(include_vector=include_template)
        for name, value in self.heads.items():
            if name not in out and hasattr(value, "to_dict"):
                out[name] = value.to_dict()
        return out


@dataclass(frozen=True, eq=False)
class Verification:
    """Result of a 1:1 comparison: decision, score, the threshold used and which faces were compared."""

    same: bool
    score: float
    threshold: float
    model_id: str
    face_a: Face
    face_b: Face
    faces_in_a: int = 1
    faces_in_b: int = 1
    far: float | None = None
    threshold_source: str = "model default"

    def to_dict(self) -> dict[str, Any]:
        """Serialise for ``--json`` and REST."""
        return {
            "same": self.same,
            "score": _r(self.score, 4),
            "threshold": _r(self.threshold, 4),
            "threshold_source": self.threshold_source,
            "far": self.far,
            "model_id": self.model_id,
            "face_a": self.face_a.to_dict(),
            "face_b": self.face_b.to_dict(),
            "faces_in_a": self.faces_in_a,
            "faces_in_b": self.faces_in_b,
        }


@dataclass(frozen=True)
class ImageInfo:
    """Where an image came from and its decoded size."""

    source: str
    width: int
    height: int
    orientation: int = 1
    format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """One candidate person for a face: gallery ids, similarity and its estimated false-accept rate."""

    person_id: int
    external_id: str
    name: str | None
    score: float
    far: float | None = None
    sample_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for ``--json`` and REST."""
        return {
            "person_id": self.person_id,
            "person": self.external_id,
            "name": self.name,
            "score": _r(self.score, 4),
            "far": self.far,
            "sample_id": self.sample_id,
        }


@dataclass(frozen=True, eq=False)
class Identification:
    """Open-set 1:N answer for one face: ranked candidates, the decision, the threshold used and the margin."""

    face: Face
    matches: tuple[Match, ...]
    decision: Match | None
    threshold: float
    threshold_source: str
    model_id: str
    margin: float | None = None
    #: Liveness verdict when identification ran with ``liveness=True`` (a spoof is not searched: no decision).
    live: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise; ``person`` is null when the face is unknown (``score`` is the best match's similarity)."""
        face = self.face.to_dict()
        face["detection_score"] = face.pop("score")
        if self.live is not None:
            face["live"] = self.live
        return {
            **face,
            "person": None if self.decision is None else self.decision.external_id,
            "name": None if self.decision is None else self.decision.name,
            "score": None if not self.matches else _r(self.matches[0].score, 4),
            "threshold": _r(self.threshold, 4),
            "threshold_source": self.threshold_source,
            "model_id": self.model_id,
            "margin": None if self.margin is None else _r(self.margin, 4),
            "candidates": [m.to_dict() for m in self.matches],
        }


@dataclass(frozen=True)
class Rejection:
    """Why an image was not enrolled (a stable code and a message)."""

    image: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Serialise."""
        return {"image": self.image, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Enrolment:
    """Outcome of enrolling images for one person: samples added and images rejected, with reasons."""

    collection: str
    person_id: int
    person: str
    sample_ids: tuple[int, ...]
    accepted: tuple[str, ...]
    rejected: tuple[Rejection, ...]

    def to_dict(self) -> dict[str, Any]:
        """Serialise."""
        return {
            "collection": self.collection,
            "person_id": self.person_id,
            "person": self.person,
            "sample_ids": list(self.sample_ids),
            "accepted": list(self.accepted),
            "rejected": [r.to_dict() for r in self.rejected],
        }
