"""Shared behaviour of crop embedders: input checks, flip test-time augmentation, L2 normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..models import ModelSpec


class CropEmbedder:
    """Base class: subclasses implement ``_infer`` (raw vectors for a uint8 RGB crop batch)."""

    spec: ModelSpec
    model_id: str
    model_sha256: str
    dim: int
    size: tuple[int, int]
    flip: bool
    template: str = "arcface112"

    def _setup(self, spec: ModelSpec, flip: bool) -> None:
        """Set the attributes every embedder exposes from its manifest entry."""
        assert spec.dim is not None and spec.input.size is not None
        self.spec = spec
        self.flip = flip
        self.model_id = spec.name + ("+flip" if flip else "")
        self.model_sha256 = spec.sha256
        self.dim = spec.dim
        self.size = spec.input.size
        self.template = spec.template or "arcface112"

    def align(self, rgb: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """This model's aligned crop of one face (its template and input size)."""
        from ..align import align_face

        return align_face(rgb, landmarks, self.size[0], self.template)

    def embed_faces(self, faces: Sequence[tuple[npt.NDArray[np.uint8], npt.ArrayLike]]) -> npt.NDArray[np.float32]:
        """Templates (N, dim) for faces given as (RGB image, five landmarks); each model aligns its own way."""
        if not faces:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_crops(np.stack([self.align(rgb, lms) for rgb, lms in faces]))

    def embed_crops(self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Templates (N, dim), L2-normalised, for aligned RGB uint8 crops of the model's input size."""
        batch = self._as_batch(crops)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_crops_both(batch)[1] if self.flip else _unit(self._infer(batch))

    def embed_crops_both(
        self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Templates without and with flip TTA from one pass (each crop and its mirror are embedded once)."""
        batch = self._as_batch(crops)
        if len(batch) == 0:
            empty = np.zeros((0, self.dim), np.float32)
            return empty, empty
        raw = self._infer(batch)
        return _unit(raw), _unit(raw + self._infer(np.ascontiguousarray(batch[:, :, ::-1])))

    def _as_batch(self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Crops as an (N, H, W, 3) array of this model's input size (a single crop becomes a batch of one)."""
        batch = np.asarray(crops)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:3] != (self.size[1], self.size[0]) or batch.shape[3] != 3:
            raise InvalidInputError(
                "invalid_input", f"crops must be (N, {self.size[1]}, {self.size[0]}, 3) uint8, got {batch.shape}"
            )
        return batch

    def _infer(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw (unnormalised) network outputs for a batch of crops."""
        raise NotImplementedError

    def _normalised(self, batch: npt.NDArray[np.uint8], layout: str) -> npt.NDArray[np.float32]:
        """Crops → float tensor in the model's colour order, normalisation and layout."""
        spec = self.spec.input
        x = batch[..., ::-1] if spec.color == "bgr" else batch
        xf = x.astype(np.float32)
        if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
            xf = ((xf - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)).astype(np.float32)
        if layout == "nchw":
            xf = xf.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(xf)


def _unit(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (float32)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def run_in_chunks(
    x: npt.NDArray[np.float32], step: int, fixed: bool, fn: object
) -> npt.NDArray[np.float32]:
    """Call ``fn`` on slices of ``step`` rows (zero-padding the last one when the model's batch is fixed)."""
    assert callable(fn)
    outs = []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        n = len(chunk)
        if fixed and n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
        out = np.asarray(fn(np.ascontiguousarray(chunk)), np.float32)
        outs.append(out.reshape(len(chunk), -1)[:n])
    return np.concatenate(outs)
