"""68 facial landmarks and eye state (open/closed per eye, read from the landmarks' eye regions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .common import AnalysisModel, Crop, box_crop, r, shared, softmax

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

LANDMARKS68, EYES = "landmarks68", "eyes"
#: An eye counts as open when its open probability reaches this.
EYE_OPEN_THRESHOLD = 0.5
#: iBUG 68-point indices of the eye on the image's left (the subject's right eye) and on the image's right.
_EYE_IMAGE_LEFT, _EYE_IMAGE_RIGHT = range(36, 42), range(42, 48)


@dataclass(frozen=True, eq=False)
class Landmarks68:
    """68 points (x, y) in image pixels, iBUG 300-W order (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, mouth 48–67)."""

    points: npt.NDArray[np.float32]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: a list of [x, y]."""
        return {"points": [[round(float(x), 1), round(float(y), 1)] for x, y in self.points]}


@dataclass(frozen=True)
class Eyes:
    """Probability that each eye is open; ``left`` is the eye on the image's left (the subject's right eye)."""

    left_open: float
    right_open: float

    @property
    def open(self) -> bool:
        """Both eyes open."""
        return min(self.left_open, self.right_open) >= EYE_OPEN_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"left_open": r(self.left_open, 3), "right_open": r(self.right_open, 3), "open": self.open}


def eye_square(points: npt.NDArray[np.float32], idx: range, padding: float) -> tuple[int, int, int]:
    """Square (x, y, side) around one eye: centre of its lid points, side = padded corner-to-corner width."""
    pts = points[list(idx)]
    cx, cy = pts[[1, 2, 4, 5]].mean(axis=0)
    side = max(int((pts[3, 0] - pts[0, 0]) * padding), 4)
    return int(cx - side / 2), int(cy - side / 2), side


def cut_square(rgb: Crop, x: int, y: int, side: int, size: int) -> Crop:
    """A square region (padded with edge pixels beyond the image) resized to ``size``²."""
    import cv2

    h, w = rgb.shape[:2]
    pad = max(0, -x, -y, x + side - w, y + side - h)
    src = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    region = src[y + pad:y + pad + side, x + pad:x + pad + side]
    return np.asarray(cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA), np.uint8)


class LandmarksHead:
    """The ``landmarks68`` head: a grey 64×64 crop of 1.2× the box → 68 points relative to that crop."""

    name = LANDMARKS68

    def __init__(self, pipeline: Pipeline) -> None:
        self.model = AnalysisModel(pipeline, "faceplugin-landmark68")

    def points(self, batch: FaceBatch) -> list[npt.NDArray[np.float32]]:
        """68×2 image coordinates for every face (computed once per batch)."""
        return shared(batch, LANDMARKS68, lambda: self._points(batch))

    def _points(self, batch: FaceBatch) -> list[npt.NDArray[np.float32]]:
        m = self.model
        if not len(batch):
            return []
        cuts = [box_crop(img.rgb, det.box.to_list(), m.setting("crop_scale", 1.2), m.size) for img, det in batch.items]
        raw = m.run(m.prepare([c for c, _ in cuts]))[0].reshape(-1, 68, 2)
        out = []
        for pts, (_, (left, top, right, bottom)) in zip(raw, cuts, strict=True):
            out.append((pts * [right - left, bottom - top] + [left, top]).astype(np.float32))
        return out

    def run(self, batch: FaceBatch) -> list[Landmarks68]:
        """A :class:`Landmarks68` per face."""
        return [Landmarks68(p) for p in self.points(batch)]


class EyesHead:
    """The ``eyes`` head: each eye's grey 24×24 square (from the 68 landmarks) → open/closed."""

    name = EYES

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.model = AnalysisModel(pipeline, "faceplugin-eye")

    def run(self, batch: FaceBatch) -> list[Eyes]:
        """An :class:`Eyes` per face."""
        m = self.model
        if not len(batch):
            return []
        pad = m.setting("eye_padding", 1.6)
        crops = []
        marks = self._pipeline.head(LANDMARKS68)
        assert isinstance(marks, LandmarksHead)
        for (img, _), pts in zip(batch.items, marks.points(batch), strict=True):
            for idx in (_EYE_IMAGE_LEFT, _EYE_IMAGE_RIGHT):
                crops.append(cut_square(img.rgb, *eye_square(pts, idx, pad), m.size))
        p_open = softmax(m.run(m.prepare(crops))[0])[:, int(m.setting("open_class", 1))]
        return [Eyes(float(p_open[2 * i]), float(p_open[2 * i + 1])) for i in range(len(batch))]
