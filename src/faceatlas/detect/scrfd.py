"""SCRFD decoder: two anchors per location at strides 8/16/32, distance-encoded boxes and keypoints."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .base import OnnxDetector, RawDetections

STRIDES = (8, 16, 32)
ANCHORS_PER_LOCATION = 2


class ScrfdDetector(OnnxDetector):
    """InsightFace SCRFD (KPS variants) face detector."""

    def _decode(
        self, outputs: list[npt.NDArray[np.float32]], width: int, height: int, threshold: float = -math.inf
    ) -> RawDetections:
        """Decode the 9 SCRFD outputs (scores, box distances, keypoint offsets per stride) scoring ``threshold``+."""
        boxes, scores, lms = [], [], []
        for i, stride in enumerate(STRIDES):
            cols = width // stride
            score = outputs[i].reshape(-1)
            idx = np.flatnonzero(score >= threshold)
            if idx.size == 0:
                continue
            loc = idx // ANCHORS_PER_LOCATION
            cx = (loc % cols).astype(np.float32) * stride
            cy = (loc // cols).astype(np.float32) * stride
            d = outputs[i + 3].reshape(-1, 4)[idx] * stride
            k = outputs[i + 6].reshape(-1, 5, 2)[idx] * stride
            boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1))
            lms.append(np.stack([k[:, :, 0] + cx[:, None], k[:, :, 1] + cy[:, None]], axis=2))
            scores.append(score[idx])
        if not scores:
            return RawDetections.empty()
        return RawDetections(
            np.concatenate(boxes).astype(np.float32),
            np.concatenate(scores).astype(np.float32),
            np.concatenate(lms).astype(np.float32),
        )
