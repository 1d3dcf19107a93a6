"""Head pose (yaw, pitch, roll in degrees) from a HopeNet-style binned classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import AnalysisModel, box_crops, shared, softmax

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

POSE = "pose"


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees.

    ``yaw`` > 0: the face turns towards the image's left (the subject's right); ``pitch`` > 0: the face tilts up;
    ``roll`` > 0: the head leans towards the image's right shoulder side (clockwise in the image).
    """

    yaw: float
    pitch: float
    roll: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"yaw": round(self.yaw, 1), "pitch": round(self.pitch, 1), "roll": round(self.roll, 1)}


class PoseHead:
    """The ``pose`` head: 66 bins of 3 degrees (−99…+99) per angle, read as the softmax expectation."""

    name = POSE

    def __init__(self, pipeline: Pipeline) -> None:
        self.model = AnalysisModel(pipeline, "faceplugin-pose")

    def run(self, batch: FaceBatch) -> list[Pose]:
        """A :class:`Pose` per face (computed once per batch: the quality head reads it too)."""
        return shared(batch, (POSE, "result"), lambda: self._run(batch))

    def _run(self, batch: FaceBatch) -> list[Pose]:
        """Run the network on every face of the batch."""
        m = self.model
        crops = box_crops(batch, m.setting("crop_scale", 1.5), m.size)
        if not crops:
            return []
        yaw, pitch, roll = (softmax(o) @ np.arange(66, dtype=np.float32) * 3.0 - 99.0 for o in m.run(m.prepare(crops)))
        return [Pose(float(y), float(p), float(q)) for y, p, q in zip(yaw, pitch, roll, strict=True)]
