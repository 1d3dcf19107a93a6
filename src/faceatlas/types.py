"""Small frozen result types shared by every stage, with one ``to_dict`` convention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    from .outcomes import Enrolment as Enrolment
    from .outcomes import Identification as Identification
    from .outcomes import ImageInfo as ImageInfo
    from .outcomes import Match as Match
    from .outcomes import Rejection as Rejection
    from .outcomes import Verification as Verification

FloatArray = npt.NDArray[np.float32]

#: Result types of verification, identification and enrolment, defined in ``faceatlas.outcomes`` and importable
#: from here too; a cold start that only embeds never creates them.
_OUTCOMES = ("Enrolment", "Identification", "ImageInfo", "Match", "Rejection", "Verification")


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


def __getattr__(name: str) -> Any:
    """The outcome types (``Verification``, ``Match``...), imported on first access."""
    if name in _OUTCOMES:
        from . import outcomes

        return getattr(outcomes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
