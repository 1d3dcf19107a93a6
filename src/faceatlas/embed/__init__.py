"""Face embedders: ONNX and TFLite models from the manifest, flip TTA, and weighted ensembles."""

from __future__ import annotations

from ..errors import ModelError
from ..models import ModelStore
from .base import CropEmbedder
from .dlib import DlibEmbedder
from .ensemble import EnsembleEmbedder
from .onnx import OnnxEmbedder
from .tflite import TfliteEmbedder

Embedder = CropEmbedder


def create_embedder(name: str, store: ModelStore, *, threads: int | None = None, flip: bool = False) -> CropEmbedder:
    """Build the embedder for manifest model ``name`` (a ``+flip`` suffix turns on flip TTA)."""
    if name.endswith("+flip"):
        name, flip = name[: -len("+flip")], True
    spec = store.spec(name, "recognition")
    if spec.architecture == "arcface-onnx":
        return OnnxEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "tflite":
        return TfliteEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "dlib":
        return DlibEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "ensemble":
        if flip:
            raise ModelError("model_invalid", f"set flip per member of ensemble {name!r}, not on the ensemble")
        members = [(create_embedder(m, store, threads=threads), w) for m, w in spec.members]
        return EnsembleEmbedder(spec, members)
    raise ModelError("model_invalid", f"no runtime for embedder architecture {spec.architecture!r}")


def member_ids(name: str, store: ModelStore) -> list[str]:
    """Model names an embedder needs on disk (itself, or an ensemble's members)."""
    base = name.removesuffix("+flip")
    spec = store.spec(base, "recognition")
    if spec.architecture != "ensemble":
        return [base]
    return [n for m, _ in spec.members for n in member_ids(m, store)]


__all__ = [
    "CropEmbedder",
    "DlibEmbedder",
    "Embedder",
    "EnsembleEmbedder",
    "OnnxEmbedder",
    "TfliteEmbedder",
    "create_embedder",
    "member_ids",
]
