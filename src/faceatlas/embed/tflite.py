"""TFLite embedders (e.g. MobileFaceNet-192), run with the LiteRT interpreter (``pip install ai-edge-litert``)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import config
from ..errors import ModelError
from ..models import ModelSpec, ModelStore
from .base import CropEmbedder, run_in_chunks


class TfliteEmbedder(CropEmbedder):
    """A TFLite face embedder; calls are serialised with a lock (the interpreter is not thread-safe)."""

    def __init__(self, store: ModelStore, spec: ModelSpec, *, threads: int | None = None, flip: bool = False) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError(
                "model_runtime_missing",
                f"model {spec.name!r} needs the LiteRT runtime: pip install 'faceatlas[tflite]' (ai-edge-litert)",
            ) from None
        resolved = store.resolve(spec.name, "recognition")
        self._setup(spec, flip)
        self._interp: Any = Interpreter(model_path=str(resolved.runtime_path), num_threads=threads or config.default_threads())
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self._in_index = inp["index"]
        self._out_index = self._interp.get_output_details()[0]["index"]
        self._batch = int(inp["shape"][0])
        self._lock = threading.Lock()

    def _infer(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw embeddings, run in the model's fixed batch size."""
        x = self._normalised(batch, self.spec.input.layout)
        return run_in_chunks(x, self._batch, True, self._forward)

    def _forward(self, chunk: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One interpreter call."""
        with self._lock:
            self._interp.set_tensor(self._in_index, chunk)
            self._interp.invoke()
            return np.array(self._interp.get_tensor(self._out_index), np.float32)
