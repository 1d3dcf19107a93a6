"""SCRFD decoder: two anchors per location at strides 8/16/32, distance-encoded boxes and keypoints."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .base import OnnxDetector, RawDetections

STRIDES = (8, 16, 32)
ANCHORS_PER_LOCATION = 2


class ScrfdDetector(OnnxDetector):
    """InsightFace SCRFD (KPS variants) face detector."""

    def _decode(self, outputs: list[npt.NDArray[np.float32]], width: int, height: int) -> RawDetections:
        """Decode the 9 SCRFD outputs (scores, box distances, keypoint offsets for each stride)."""
        boxes, scores, lms = [], [], []
        for i, stride in enumerate(STRIDES):
            cols, rows = width // stride, height // stride
            gx = np.tile(np.arange(cols, dtype=np.float32), rows) * stride
            gy = np.repeat(np.arange(rows, dtype=np.float32), cols) * stride
            cx = np.repeat(gx, ANCHORS_PER_LOCATION)
            cy = np.repeat(gy, ANCHORS_PER_LOCATION)
            score = outputs[i].reshape(-1)
            d = outputs[i + 3].reshape(-1, 4) * stride
            k = outputs[i + 6].reshape(-1, 5, 2) * stride
            boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1))
            lms.append(np.stack([k[:, :, 0] + cx[:, None], k[:, :, 1] + cy[:, None]], axis=2))
            scores.append(score)
        return RawDetections(
            np.concatenate(boxes).astype(np.float32),
            np.concatenate(scores).astype(np.float32),
            np.concatenate(lms).astype(np.float32),
        )
