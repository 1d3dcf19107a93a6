"""Drawing on frames (boxes, track ids, names), face redaction (pixelate + blur) and video writing."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError
from ..types import Box

log = logging.getLogger(__name__)

RedactMode = Literal["all", "unknown"]
REDACT_MODES: tuple[str, ...] = ("all", "unknown")

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


@dataclass(frozen=True)
class Overlay:
    """One face to draw or redact: its box, track id (None = not yet tracked), label and whether it is known."""

    box: Box
    track: int | None
    label: str
    known: bool


class VideoWriter:
    """Writes RGB frames to a video file (codec from the extension: mp4v for .mp4/.mov, MJPG for .avi)."""

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        import cv2

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise InvalidInputError("invalid_input", f"{self.path}: output video must end in {', '.join(sorted(_FOURCC))}")
        if not self.path.parent.is_dir():
            raise FaceAtlasError("video_write_failed", f"{self.path}: folder {self.path.parent} does not exist")
        self._cv2: Any = cv2
        self.size = (int(width), int(height))
        fourcc = self._cv2.VideoWriter_fourcc(*_FOURCC[suffix])
        self._w: Any = cv2.VideoWriter(str(self.path), fourcc, float(fps), self.size)
        if not self._w.isOpened():
            raise FaceAtlasError("video_write_failed", f"{self.path}: OpenCV cannot write this video file")
        self.frames = 0

    def write(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Append one RGB frame (resized if its size differs from the first one)."""
        cv2 = self._cv2
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(bgr)
        self.frames += 1

    def close(self) -> None:
        """Finish the file."""
        if self._w is not None:
            self._w.release()
            self._w = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _color(track: int | None, known: bool) -> tuple[int, int, int]:
    """A stable RGB colour per track (grey for untracked faces, red-ish tones kept for unknown people)."""
    if track is None:
        return (160, 160, 160)
    if not known:
        return (230, 60, 60)
    hue = (track * 47) % 180
    import cv2

    hsv = np.array([[[hue, 200, 235]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].tolist()
    return (int(r), int(g), int(b))


def annotate(rgb: npt.NDArray[np.uint8], faces: Sequence[Overlay], header: str | None = None) -> npt.NDArray[np.uint8]:
    """A copy of the frame with a box and a ``#track label`` tag per face."""
    import cv2

    out = rgb.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(w, h) / 360))
    scale = max(0.4, min(w, h) / 900)
    for f in faces:
        x1, y1, x2, y2 = (round(v) for v in (f.box.x1, f.box.y1, f.box.x2, f.box.y2))
        cv2.rectangle(out, (x1, y1), (x2, y2), _color(f.track, f.known), thick + 1)
    drawn: list[tuple[int, int, int, int]] = []
    for f in sorted(faces, key=lambda o: (o.known, o.track is not None)):  # names last: on top of the rest
        x1, y1, x2, y2 = (round(v) for v in (f.box.x1, f.box.y1, f.box.x2, f.box.y2))
        color = _color(f.track, f.known)
        tag = f"#{f.track} {f.label}" if f.track is not None else f.label
        (tw, th), base = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        above, below = y1 - 4, min(h - 1, y2 + th + base + 4)
        ty = above if above - th - base >= 0 else below
        rect = (x1, ty - th - base, x1 + tw + 4, ty + base // 2)
        if any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in drawn):
            ty = below if ty == above else above  # another label is there: use the other side of the box
            rect = (x1, ty - th - base, x1 + tw + 4, ty + base // 2)
        drawn.append(rect)
        cv2.rectangle(out, (rect[0], rect[1]), (rect[2], rect[3]), color, -1)
        cv2.putText(out, tag, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    if header:
        cv2.putText(out, header, (8, 8 + int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick + 1,
                    cv2.LINE_AA)
    return out


def redact(rgb: npt.NDArray[np.uint8], boxes: Sequence[Box], margin: float = 0.25) -> npt.NDArray[np.uint8]:
    """A copy of the frame with each box (grown by ``margin`` on every side) pixelated and blurred beyond recognition."""
    import cv2

    out = rgb.copy()
    h, w = out.shape[:2]
    for b in boxes:
        mx, my = b.width * margin, b.height * margin
        x1, y1 = max(0, int(b.x1 - mx)), max(0, int(b.y1 - my))
        x2, y2 = min(w, int(np.ceil(b.x2 + mx))), min(h, int(np.ceil(b.y2 + my)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        region = out[y1:y2, x1:x2]
        bw, bh = x2 - x1, y2 - y1
        cell = min(bw, bh) / max(2, round(min(bw, bh) / 24))  # about 4 blocks across a 100 px face
        small = cv2.resize(region, (max(1, round(bw / cell)), max(1, round(bh / cell))), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (bw, bh), interpolation=cv2.INTER_LINEAR)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(coarse, (0, 0), max(1.0, min(bw, bh) / 8))
    return out
