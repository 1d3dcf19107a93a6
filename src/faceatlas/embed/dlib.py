"""dlib's ResNet face recogniser (128-d) on dlib-style 150×150 chips (``pip install dlib-bin``)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ModelError
from ..models import ModelSpec, ModelStore
from .base import CropEmbedder


class DlibEmbedder(CropEmbedder):
    """dlib ``face_recognition_model_v1``; calls are serialised with a lock."""

    def __init__(self, store: ModelStore, spec: ModelSpec, *, threads: int | None = None, flip: bool = False) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelError(
                "model_runtime_missing", f"model {spec.name!r} needs dlib: pip install 'faceatlas[dlib]' (dlib-bin)"
            ) from None
        resolved = store.resolve(spec.name, "recognition")
        self._setup(spec, flip)
        self._model: Any = dlib.face_recognition_model_v1(str(resolved.runtime_path))
        self._lock = threading.Lock()

    def _infer(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw descriptors for a batch of 150×150 RGB chips."""
        chips = [np.ascontiguousarray(c) for c in batch]
        with self._lock:
            out = self._model.compute_face_descriptor(chips)
        return np.asarray([np.asarray(v, np.float32) for v in out], np.float32)
