"""A simple, explainable face-quality score in [0, 1] from size, sharpness, pose and detector confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .types import Detection


@dataclass(frozen=True)
class Quality:
    """Overall quality and the factors it is the product of (each in [0, 1])."""

    score: float
    size: float
    sharpness: float
    frontal: float
    confidence: float
    #: What ``frontal`` was measured from: "landmarks" (nose offset proxy) or "pose" (the pose head's yaw/pitch).
    frontal_from: str = "landmarks"


def face_quality(det: Detection, crop: npt.NDArray[np.uint8] | None = None,
                 pose: tuple[float, float] | None = None) -> Quality:
    """Quality of a detected face; ``crop`` (the aligned 112×112 crop) adds a sharpness term.

    ``pose`` (yaw, pitch in degrees, from the pose head) replaces the landmark yaw proxy in the frontal factor.
    """
    lm = det.landmarks.astype(np.float64)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    # Inter-ocular distance: ~40 px in a 112 crop is native resolution; below ~10 px little identity is left.
    size = float(np.clip((eye_dist - 8.0) / 32.0, 0.0, 1.0))
    eye_mid = (lm[0] + lm[1]) / 2.0
    mouth_mid = (lm[3] + lm[4]) / 2.0
    axis = mouth_mid - eye_mid
    length = float(np.linalg.norm(axis)) or 1.0
    # Yaw proxy: how far the nose sits off the eye–mouth axis, relative to the face's height.
    normal = np.array([-axis[1], axis[0]]) / length
    offset = abs(float(np.dot(lm[2] - eye_mid, normal))) / length
    frontal = float(np.clip(1.0 - offset / 0.6, 0.0, 1.0))
    if pose is not None:
        frontal = pose_frontal(*pose)
    sharp = 1.0 if crop is None else _sharpness(crop)
    conf = float(np.clip(det.score, 0.0, 1.0))
    return Quality(size * sharp * frontal * conf, size, sharp, frontal, conf,
                   "landmarks" if pose is None else "pose")


def pose_frontal(yaw: float, pitch: float) -> float:
    """Frontality in [0, 1] from head pose: 1 when facing the camera, 0 at 90° of yaw or pitch (linear in each)."""
    return float(np.clip(1.0 - abs(yaw) / 90.0, 0.0, 1.0) * np.clip(1.0 - abs(pitch) / 90.0, 0.0, 1.0))


def _sharpness(crop: npt.NDArray[np.uint8]) -> float:
    """Sharpness from the variance of the Laplacian of the grey crop, squashed to [0, 1]."""
    import cv2

    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    var = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return float(np.clip(var / 100.0, 0.0, 1.0))
