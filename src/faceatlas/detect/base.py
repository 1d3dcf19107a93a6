"""What every detector shares: letterboxing, multi-scale passes, non-maximum suppression, face selection."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError, NoFaceError
from ..images import LoadedImage
from ..models import ModelSpec, ModelStore, create_session
from ..types import Box, Detection

SelectPolicy = Literal["largest", "central", "score"]
SELECT_POLICIES: tuple[str, ...] = ("largest", "central", "score")


@dataclass(frozen=True)
class RawDetections:
    """Decoded network output in canvas pixel coordinates."""

    boxes: npt.NDArray[np.float32]  # (N, 4) x1 y1 x2 y2
    scores: npt.NDArray[np.float32]  # (N,)
    landmarks: npt.NDArray[np.float32]  # (N, 5, 2)

    @staticmethod
    def empty() -> RawDetections:
        """No detections."""
        return RawDetections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


@dataclass(frozen=True)
class Pass:
    """One network run: the image region ``(x0, y0, x1, y1)`` resized by ``scale`` into the canvas."""

    scale: float
    region: tuple[int, int, int, int]
    canvas: tuple[int, int]  # network input (width, height)


class OnnxDetector:
    """Base class of ONNX face detectors; subclasses implement ``_decode``. Thread-safe."""

    #: Bump when the pass/canvas policy changes what a detector returns (invalidates evaluation caches).
    POLICY_VERSION = "3"  # 3: boxes nested inside a larger face are dropped

    def __init__(
        self,
        store: ModelStore,
        spec: ModelSpec,
        *,
        threads: int | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        input_size: int = 640,
        multiscale: bool = True,
        min_face_size: float = 0.0,
        max_faces: int = 200,
        max_tiles: int = 12,
    ) -> None:
        resolved = store.resolve(spec.name, "detection")
        self.spec = spec
        self.name = spec.name
        self.model_sha256 = spec.sha256
        self.runtime_sha256 = resolved.runtime_sha256
        self.session: Any = create_session(resolved.runtime_path, threads, cache_dir=store.cache_dir)
        self.input_name: str = self.session.get_inputs()[0].name
        fixed = spec.input.size
        self.dynamic = fixed is None
        self.canvas = fixed[0] if fixed is not None else int(math.ceil(input_size / 32) * 32)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.multiscale = multiscale
        self.min_face_size = min_face_size
        self.max_faces = max_faces
        self.max_tiles = max_tiles
        self._normalise = spec.input.mean != (0.0, 0.0, 0.0) or spec.input.std != (1.0, 1.0, 1.0)
        self._local = threading.local()  # per-thread input buffers, reused across calls

    # -- public ---------------------------------------------------------------------------------------------

    def detect(self, image: LoadedImage) -> list[Detection]:
        """All faces in the image, highest score first, in original image coordinates."""
        w, h = image.width, image.height
        fit = min(self.canvas / w, self.canvas / h, 1.0 if self.dynamic else math.inf)
        canvas = self._canvas_for(w * fit, h * fit)
        passes = [Pass(fit, (0, 0, w, h), canvas)]
        if self.multiscale and fit < 0.75:
            passes += self._tile_passes(w, h)
        found = [self._run_pass(image, p) for p in passes]
        merged = _concat(found)
        if self.multiscale and self._needs_zoom_out(merged, w, h):
            found.append(self._run_pass(image, Pass(fit * 0.5, (0, 0, w, h), canvas)))
            merged = _concat(found)
        return self._finish(merged, w, h)

    # -- to implement -----------------------------------------------------------------------------------------

    def _decode(
        self, outputs: list[npt.NDArray[np.float32]], width: int, height: int, threshold: float = -math.inf
    ) -> RawDetections:
        """Canvas-space detections scoring at least ``threshold`` from raw outputs for a ``width``×``height`` input."""
        raise NotImplementedError

    def _preprocess(self, canvas_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Canvas pixels (RGB) → network input tensor per the manifest's input spec."""
        ch, cw = canvas_rgb.shape[:2]
        return self._fill_input(canvas_rgb, cw, ch)

    def _fill_input(self, rgb: npt.NDArray[np.uint8], cw: int, ch: int) -> npt.NDArray[np.float32]:
        """Write pixels into the top-left of a reused (1, 3, ch, cw) float32 buffer, normalised, in one pass."""
        buffers: dict[tuple[int, int], npt.NDArray[np.float32]] = getattr(self._local, "buffers", None) or {}
        self._local.buffers = buffers
        buf = buffers.get((cw, ch))
        if buf is None:
            buf = buffers[(cw, ch)] = np.empty((1, 3, ch, cw), np.float32)
        spec = self.spec.input
        rh, rw = rgb.shape[:2]
        for c in range(3):
            plane = buf[0, c]
            src = rgb[:, :, c if spec.color == "rgb" else 2 - c]
            mean, std = np.float32(spec.mean[c]), np.float32(spec.std[c])
            plane[:rh, :rw] = src
            if self._normalise:
                np.subtract(plane[:rh, :rw], mean, out=plane[:rh, :rw])
                np.divide(plane[:rh, :rw], std, out=plane[:rh, :rw])
            pad = (np.float32(0.0) - mean) / std  # the canvas margin, as a zero pixel would normalise
            plane[rh:, :] = pad
            plane[:rh, rw:] = pad
        return buf

    # -- internals --------------------------------------------------------------------------------------------

    def _canvas_for(self, w: float, h: float) -> tuple[int, int]:
        """Network input (width, height): fixed by the model, or the resized image rounded up to 32 (at least 64)."""
        if not self.dynamic:
            return self.canvas, self.canvas
        return max(64, math.ceil(round(w) / 32) * 32), max(64, math.ceil(round(h) / 32) * 32)

    def _tile_passes(self, w: int, h: int) -> list[Pass]:
        """Overlapping tiles at up to native resolution, so small faces in big photos stay findable."""
        scale = 1.0
        while True:
            tile = int(math.ceil(self.canvas / scale))
            step = max(1, int(tile * 0.8))
            xs = list(range(0, max(1, w - tile), step)) + [max(0, w - tile)]
            ys = list(range(0, max(1, h - tile), step)) + [max(0, h - tile)]
            xs, ys = sorted(set(xs)), sorted(set(ys))
            if len(xs) * len(ys) <= self.max_tiles or scale < 0.05:
                break
            scale *= 0.85
        side = (self.canvas, self.canvas)
        return [Pass(scale, (x0, y0, min(w, x0 + tile), min(h, y0 + tile)), side) for y0 in ys for x0 in xs]

    def _needs_zoom_out(self, raw: RawDetections, w: int, h: int) -> bool:
        """A second, zoomed-out pass is needed when nothing was found or a face nearly fills the frame."""
        if len(raw.scores) == 0:
            return True
        big = (raw.boxes[:, 2] - raw.boxes[:, 0]) > 0.6 * min(w, h)
        return bool(big.any())

    def _run_pass(self, image: LoadedImage, p: Pass) -> RawDetections:
        """Resize one region into the canvas, run the network and map detections back to image coordinates."""
        import cv2

        x0, y0, x1, y1 = p.region
        rw, rh = max(1, int(round((x1 - x0) * p.scale))), max(1, int(round((y1 - y0) * p.scale)))
        cw, ch = p.canvas
        rw, rh = min(rw, cw), min(rh, ch)
        crop = image.rgb[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if p.scale < 1 else cv2.INTER_LINEAR
        resized: npt.NDArray[np.uint8] = crop
        if (rw, rh) != (crop.shape[1], crop.shape[0]):
            resized = np.asarray(cv2.resize(crop, (rw, rh), interpolation=interp), np.uint8)
        outputs = self.session.run(list(self.spec.outputs), {self.input_name: self._fill_input(resized, cw, ch)})
        raw = self._decode(outputs, cw, ch, self.score_threshold)
        keep = np.ones(len(raw.scores), bool)
        if (x0, y0, x1, y1) != (0, 0, image.width, image.height):
            keep &= _away_from_inner_edges(raw.boxes, rw, rh, (x0 > 0, y0 > 0, x1 < image.width, y1 < image.height))
        sx, sy = (x1 - x0) / rw, (y1 - y0) / rh
        boxes = raw.boxes[keep] * np.array([sx, sy, sx, sy], np.float32) + np.array([x0, y0, x0, y0], np.float32)
        lms = raw.landmarks[keep] * np.array([sx, sy], np.float32) + np.array([x0, y0], np.float32)
        return RawDetections(boxes.astype(np.float32), raw.scores[keep], lms.astype(np.float32))

    def _finish(self, raw: RawDetections, w: int, h: int) -> list[Detection]:
        """NMS, clipping, size filter and conversion to ``Detection`` objects."""
        keep = nms(raw.boxes, raw.scores, self.nms_threshold)
        keep = _drop_nested(raw.boxes, keep)[: self.max_faces]
        out = []
        for i in keep:
            x1, y1, x2, y2 = raw.boxes[i].tolist()
            box = Box(max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            if box.width <= 1 or box.height <= 1 or min(box.width, box.height) < self.min_face_size:
                continue
            out.append(Detection(box, float(raw.scores[i]), raw.landmarks[i], self.name))
        return out


#: A box lying at least this much inside a larger kept box is a phantom part of that face (seen on large close-up
#: portraits, where a second pass or tile finds the eyes-nose region again with scores of 0.8-0.9).
NESTED_INSIDE = 0.8


def _drop_nested(boxes: npt.NDArray[np.float32], keep: list[int]) -> list[int]:
    """The kept indices without boxes that lie mostly inside a larger kept box (across scales and tiles)."""
    if len(keep) < 2:
        return keep
    b = boxes[keep].astype(np.float64)
    area = np.maximum(0.0, b[:, 2] - b[:, 0]) * np.maximum(0.0, b[:, 3] - b[:, 1])
    out = []
    for i in range(len(keep)):
        ix = np.maximum(0.0, np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]))
        iy = np.maximum(0.0, np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]))
        nested = (area > area[i]) & (ix * iy >= NESTED_INSIDE * area[i])
        if not nested.any():
            out.append(keep[i])
    return out


def _away_from_inner_edges(
    boxes: npt.NDArray[np.float32], rw: int, rh: int, inner: tuple[bool, bool, bool, bool], margin: float = 3.0
) -> npt.NDArray[np.bool_]:
    """Mask of tile detections not cut by a tile edge that lies inside the image (those are truncated faces)."""
    ok = np.ones(len(boxes), bool)
    left, top, right, bottom = inner
    if left:
        ok &= boxes[:, 0] > margin
    if top:
        ok &= boxes[:, 1] > margin
    if right:
        ok &= boxes[:, 2] < rw - margin
    if bottom:
        ok &= boxes[:, 3] < rh - margin
    return ok


def _concat(parts: list[RawDetections]) -> RawDetections:
    """Stack detections from several passes."""
    parts = [p for p in parts if len(p.scores)]
    if not parts:
        return RawDetections.empty()
    return RawDetections(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.landmarks for p in parts]),
    )


def nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices by descending score."""
    if len(scores) == 0:
        return []
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1, yy1 = np.maximum(x1[i], x1[rest]), np.maximum(y1[i], y1[rest])
        xx2, yy2 = np.minimum(x2[i], x2[rest]), np.minimum(y2[i], y2[rest])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def select_face(detections: list[Detection], width: int, height: int, policy: SelectPolicy = "largest") -> int:
    """Index of the face a single-face operation should use, by policy: largest, most central or best score."""
    if not detections:
        raise NoFaceError()
    if policy not in SELECT_POLICIES:
        raise InvalidInputError("invalid_input", f"face selection policy must be one of {SELECT_POLICIES}, got {policy!r}")
    if policy == "score":
        return int(np.argmax([d.score for d in detections]))
    if policy == "largest":
        return int(np.argmax([d.box.area for d in detections]))
    cx, cy = width / 2.0, height / 2.0
    dists = [math.hypot(d.box.center[0] - cx, d.box.center[1] - cy) for d in detections]
    return int(np.argmin(dists))


def check_face_index(index: int, count: int) -> None:
    """Raise a clear error when an explicit face index is out of range."""
    if not 0 <= index < count:
        raise FaceAtlasError("face_index", f"face index {index} out of range: the image has {count} face(s)")
