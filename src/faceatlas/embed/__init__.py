"""Face embedders: the ``Embedder`` protocol and ONNX ArcFace-style models from the manifest."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import ModelError
from ..models import ModelStore
from .onnx import OnnxEmbedder


class Embedder(Protocol):
    """Anything that maps aligned crops to L2-normalised templates."""

    model_id: str
    dim: int
    size: tuple[int, int]

    def embed_crops(self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Templates for aligned crops."""
        ...


def create_embedder(name: str, store: ModelStore, **options: Any) -> OnnxEmbedder:
    """Build the embedder for manifest model ``name``."""
    spec = store.spec(name, "recognition")
    if spec.architecture != "arcface-onnx":
        raise ModelError("model_invalid", f"no runtime for embedder architecture {spec.architecture!r}")
    return OnnxEmbedder(store, spec, **options)


__all__ = ["Embedder", "OnnxEmbedder", "create_embedder"]
