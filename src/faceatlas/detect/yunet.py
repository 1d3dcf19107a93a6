"""YuNet decoder: anchor-free heads at strides 8/16/32 with class, objectness, box and five keypoints."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .base import OnnxDetector, RawDetections

STRIDES = (8, 16, 32)


class YuNetDetector(OnnxDetector):
    """YuNet (OpenCV Zoo / libfacedetection) face detector."""

    def _decode(
        self, outputs: list[npt.NDArray[np.float32]], width: int, height: int, threshold: float = -math.inf
    ) -> RawDetections:
        """Decode the 12 YuNet outputs (cls, obj, bbox, kps per stride), only at locations scoring ``threshold``+."""
        cls, obj, bbox, kps = outputs[0:3], outputs[3:6], outputs[6:9], outputs[9:12]
        boxes, scores, lms = [], [], []
        for i, stride in enumerate(STRIDES):
            cols = width // stride
            c = np.clip(cls[i].reshape(-1), 0.0, 1.0)
            o = np.clip(obj[i].reshape(-1), 0.0, 1.0)
            score = np.sqrt(c * o)
            idx = np.flatnonzero(score >= threshold)
            if idx.size == 0:
                continue
            gx = (idx % cols).astype(np.float32)
            gy = (idx // cols).astype(np.float32)
            b = bbox[i].reshape(-1, 4)[idx]
            cx, cy = (gx + b[:, 0]) * stride, (gy + b[:, 1]) * stride
            w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
            k = kps[i].reshape(-1, 5, 2)[idx]
            lms.append(np.stack([(k[:, :, 0] + gx[:, None]) * stride, (k[:, :, 1] + gy[:, None]) * stride], axis=2))
            scores.append(score[idx])
        if not scores:
            return RawDetections.empty()
        return RawDetections(
            np.concatenate(boxes).astype(np.float32),
            np.concatenate(scores).astype(np.float32),
            np.concatenate(lms).astype(np.float32),
        )
