"""Scene-cut detection: a jump in the colour histogram and the coarse picture between consecutive analysed frames."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Side of the thumbnail frames are compared on (keeps the check well under a millisecond).
_THUMB = (64, 36)
#: A cut also needs the coarse grey picture to change by this much (mean absolute difference / 255): lighting
#: changes move the histogram but keep the picture, pans move the picture but keep the histogram.
_PICTURE_CHANGE = 0.08


class SceneCutDetector:
    """Flags frames that start a new shot (``threshold``: Hellinger distance of hue/saturation/value histograms)."""

    def __init__(self, threshold: float = 0.45) -> None:
        self.threshold = threshold
        self._hist: npt.NDArray[np.float32] | None = None
        self._grey: npt.NDArray[np.float32] | None = None
        self.last_distance = 0.0

    def update(self, rgb: npt.NDArray[np.uint8]) -> bool:
        """Compare a frame with the previous one; True when it starts a new shot."""
        import cv2

        small = cv2.resize(rgb, _THUMB, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel().astype(np.float32)
        hist /= max(float(hist.sum()), 1.0)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey -= float(grey.mean())  # a global brightness change is lighting, not a cut
        cut = False
        if self._hist is not None and self._grey is not None and self.threshold > 0:
            self.last_distance = float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(hist * self._hist))))))
            picture = float(np.mean(np.abs(grey - self._grey))) / 255.0
            cut = self.last_distance >= self.threshold and picture >= _PICTURE_CHANGE
        self._hist, self._grey = hist, grey
        return cut
