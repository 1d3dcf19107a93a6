"""ArcFace-style ONNX embedders: aligned 112×112 crop in, L2-normalised vector out, batched, optional flip TTA."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError, ModelError
from ..models import ModelSpec, ModelStore, create_session

log = logging.getLogger(__name__)


class OnnxEmbedder:
    """Maps aligned face crops to unit-length templates with one ONNX model; thread-safe."""

    def __init__(
        self,
        store: ModelStore,
        spec: ModelSpec,
        *,
        threads: int | None = None,
        flip: bool = False,
        batch_size: int = 32,
    ) -> None:
        if spec.task != "recognition" or spec.dim is None or spec.input.size is None:
            raise ModelError("model_task", f"model {spec.name!r} is not an embedder with a fixed input size")
        resolved = store.resolve(spec.name, "recognition")
        self.spec = spec
        self.flip = flip
        self.batch_size = max(1, batch_size)
        self.model_id = spec.name + ("+flip" if flip else "")
        self.model_sha256 = spec.sha256
        self.dim: int = spec.dim
        self.size: tuple[int, int] = spec.input.size
        self.session: Any = create_session(resolved.runtime_path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        batch_dim = inp.shape[0] if inp.shape else 1
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self._mean = np.asarray(spec.input.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(spec.input.std, np.float32).reshape(1, 3, 1, 1)

    def embed_crops(self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Templates (N, dim), L2-normalised, for aligned RGB uint8 crops of the model's input size."""
        batch = np.asarray(crops)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:3] != (self.size[1], self.size[0]) or batch.shape[3] != 3:
            raise InvalidInputError(
                "invalid_input", f"crops must be (N, {self.size[1]}, {self.size[0]}, 3) uint8, got {batch.shape}"
            )
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._run(batch)
        if self.flip:
            vectors = vectors + self._run(np.ascontiguousarray(batch[:, :, ::-1]))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def _run(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw network outputs for a batch of crops, chunked to the batch size the model accepts."""
        x = batch[..., ::-1] if self.spec.input.color == "bgr" else batch
        x = x.transpose(0, 3, 1, 2).astype(np.float32)
        x = (x - self._mean) / self._std
        step = self.fixed_batch or self.batch_size
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            n = len(chunk)
            if self.fixed_batch and n < self.fixed_batch:
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch - n, *chunk.shape[1:]), np.float32)])
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0]
            outs.append(np.asarray(out, np.float32).reshape(len(chunk), -1)[:n])
        return np.concatenate(outs)
