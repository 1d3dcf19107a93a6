"""What every analysis head shares: a lazily opened model, box crops and input normalisation."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..models import ModelSpec, create_session

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

T = TypeVar("T")
FloatArray = npt.NDArray[np.float32]
Crop = npt.NDArray[np.uint8]


class AnalysisModel:
    """One ONNX model of the manifest, opened on first use from the pipeline's model store; thread-safe."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.name = name
        self._store = pipeline.store
        self._threads = pipeline.threads
        self.spec: ModelSpec = self._store.spec(name)
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (resolved and checksummed on first use)."""
        with self._lock:
            if self._session is None:
                path = self._store.resolve(self.name).runtime_path
                if self.setting("flush_denormals", 0):
                    path = _flushed_copy(path, self._store.cache_dir / "derived", self.spec.sha256)
                self._session = create_session(path, self._threads)
            return self._session

    def setting(self, key: str, default: float) -> float:
        """A number from the manifest entry's ``extra`` (crop scale, class index...)."""
        return float(self.spec.extra.get(key, default))

    def prepare(self, crops: Sequence[Crop]) -> FloatArray:
        """RGB crops (already at the input size) as the network's normalised NCHW float batch."""
        inp = self.spec.input
        batch = np.stack(list(crops)).astype(np.float32)
        if inp.color == "bgr":
            batch = batch[..., ::-1]
        elif inp.color == "gray":
            batch = (batch @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        n = batch.shape[-1]
        mean = np.asarray(inp.mean[:n], np.float32)
        std = np.asarray(inp.std[:n], np.float32)
        batch = (batch - mean) / std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if inp.layout == "nchw" else batch)

    def run(self, x: FloatArray) -> list[FloatArray]:
        """Every output for a batch, one sample at a time when the model's batch size is fixed."""
        sess = self.session
        inp = sess.get_inputs()[0]
        if not len(x):
            return [np.zeros((0,), np.float32) for _ in sess.get_outputs()]
        batch_dim = inp.shape[0] if inp.shape else None
        if isinstance(batch_dim, int):
            parts = [sess.run(None, {inp.name: x[i:i + 1]}) for i in range(len(x))]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        return list(sess.run(None, {inp.name: x}))

    @property
    def size(self) -> int:
        """Square input size in pixels."""
        assert self.spec.input.size is not None
        return self.spec.input.size[0]


def _flushed_copy(path: Path, folder: Path, sha256: str) -> Path:
    """A cached copy of an ONNX file with denormal float weights set to zero (they make CPU kernels ~15x slower)."""
    target = folder / f"{path.stem}.nodenormals.{sha256[:12]}.onnx"
    if target.is_file():
        return target
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32:
            tiny = (arr != 0) & (np.abs(arr) < np.finfo(np.float32).tiny)
            if tiny.any():
                init.CopyFrom(numpy_helper.from_array(np.where(tiny, np.float32(0), arr), init.name))
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "wb") as fh:
        fh.write(model.SerializeToString())
    os.replace(tmp, target)
    return target


def box_crop(rgb: Crop, box: Sequence[float], scale: float, size: int) -> tuple[Crop, tuple[float, float, float, float]]:
    """The face box scaled about its centre (shifted, not cut, at the image border) resized to ``size``².

    Returns the crop and the region ``(left, top, right, bottom)`` it covers in the image.
    """
    import cv2

    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    scale = min((h - 1) / bh, (w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x1 + bw / 2, y1 + bh / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > w - 1:
        left, right = left - (right - w + 1), float(w - 1)
    if bottom > h - 1:
        top, bottom = top - (bottom - h + 1), float(h - 1)
    x0, y0 = max(int(left), 0), max(int(top), 0)
    x1e, y1e = max(int(right) + 1, x0 + 1), max(int(bottom) + 1, y0 + 1)
    crop: Crop = np.asarray(cv2.resize(rgb[y0:y1e, x0:x1e], (size, size), interpolation=cv2.INTER_LINEAR), np.uint8)
    return crop, (float(x0), float(y0), float(x1e), float(y1e))


def box_crops(batch: FaceBatch, scale: float, size: int) -> list[Crop]:
    """:func:`box_crop` for every face of a batch (shared by heads asking for the same scale and size)."""
    return shared(batch, ("box", scale, size), lambda: [box_crop(img.rgb, det.box.to_list(), scale, size)[0]
                                                        for img, det in batch.items])


def shared(batch: FaceBatch, key: Any, make: Callable[[], T]) -> T:
    """A per-batch value computed once for every head that asks for the same ``key``."""
    cache: dict[Any, Any] = batch.__dict__.setdefault("_analysis", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def softmax(x: FloatArray) -> FloatArray:
    """Row-wise softmax."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def r(value: float, digits: int = 4) -> float:
    """Round for JSON output."""
    return round(float(value), digits)
