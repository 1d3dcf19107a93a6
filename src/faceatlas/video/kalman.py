"""Constant-velocity Kalman filter on a face box (centre, width, height), as in SORT / ByteTrack."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..types import Box

#: Time unit of the motion model in seconds (noise is specified per tick, so any frame rate behaves alike).
TICK = 0.1
#: Process noise per tick, as fractions of the face height: position and velocity.
POS_NOISE = 0.05
VEL_NOISE = 0.03
#: Measurement noise as a fraction of the face height.
MEAS_NOISE = 0.06


def box_to_z(box: Box) -> npt.NDArray[np.float64]:
    """Measurement vector (cx, cy, w, h) of a box."""
    return np.array([(box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2, box.width, box.height], np.float64)


def z_to_box(z: npt.NDArray[np.float64]) -> Box:
    """Box from a (cx, cy, w, h) vector (sizes kept at least one pixel)."""
    cx, cy = float(z[0]), float(z[1])
    w, h = max(1.0, float(z[2])), max(1.0, float(z[3]))
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


class BoxKalman:
    """Kalman filter with state (cx, cy, w, h, vcx, vcy, vw, vh); time in seconds, velocities per tick."""

    def __init__(self, box: Box, t: float) -> None:
        z = box_to_z(box)
        self.x = np.concatenate([z, np.zeros(4)])
        h = max(float(z[3]), 1.0)
        self.P = np.diag(np.square([2 * MEAS_NOISE * h] * 4 + [10 * VEL_NOISE * h] * 4))
        self.t = t
        self._H = np.hstack([np.eye(4), np.zeros((4, 4))])

    def _transition(self, dt: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """State transition and process noise for ``dt`` seconds."""
        ticks = max(0.0, dt) / TICK
        f = np.eye(8)
        f[:4, 4:] = ticks * np.eye(4)
        h = max(float(self.x[3]), 1.0)
        q = np.diag(np.square([POS_NOISE * h] * 4 + [VEL_NOISE * h] * 4)) * max(ticks, 1e-3)
        return f, q

    def predict_at(self, t: float, horizon: float) -> Box:
        """Predicted box at time ``t`` (extrapolating at most ``horizon`` seconds past the last update)."""
        f, _ = self._transition(min(t - self.t, horizon))
        x = f @ self.x
        x[2] = max(x[2], 0.5 * self.x[2])
        x[3] = max(x[3], 0.5 * self.x[3])
        return z_to_box(x[:4])

    def update(self, box: Box, t: float, horizon: float) -> None:
        """Predict to ``t`` and correct with a measured box."""
        f, q = self._transition(min(t - self.t, horizon))
        x = f @ self.x
        p = f @ self.P @ f.T + q
        h = max(float(x[3]), 1.0)
        r = np.diag(np.square([MEAS_NOISE * h] * 4))
        s = self._H @ p @ self._H.T + r
        k = p @ self._H.T @ np.linalg.inv(s)
        self.x = x + k @ (box_to_z(box) - self._H @ x)
        self.P = (np.eye(8) - k @ self._H) @ p
        self.t = t

    def stop(self) -> None:
        """Forget the velocity (after a scene cut the old motion means nothing)."""
        self.x[4:] = 0.0
