"""Face embedders: ONNX and TFLite models from the manifest, flip TTA, and weighted ensembles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .base import CropEmbedder

if TYPE_CHECKING:  # pragma: no cover
    from ..models import ModelStore
    from .dlib import DlibEmbedder as DlibEmbedder
    from .ensemble import EnsembleEmbedder as EnsembleEmbedder
    from .onnx import OnnxEmbedder as OnnxEmbedder
    from .tflite import TfliteEmbedder as TfliteEmbedder

Embedder = CropEmbedder

# Runtimes are imported when a model needs them (a cold start with SFace loads only the ONNX one).
_RUNTIMES = {"DlibEmbedder": ".dlib", "EnsembleEmbedder": ".ensemble", "OnnxEmbedder": ".onnx",
             "TfliteEmbedder": ".tflite"}


def __getattr__(name: str) -> Any:
    """The embedder classes, imported on first access."""
    module = _RUNTIMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


FLIP_SUFFIX = "+flip"


def split_flip(name: str, flip: bool = False) -> tuple[str, bool]:
    """A model id as (manifest name, flip TTA on?): the one parser of the ``+flip`` suffix."""
    if name.endswith(FLIP_SUFFIX):
        return name[: -len(FLIP_SUFFIX)], True
    return name, flip


def flip_id(name: str, flip: bool) -> str:
    """The template model id of manifest model ``name`` with or without flip TTA."""
    return name + (FLIP_SUFFIX if flip else "")


def create_embedder(name: str, store: ModelStore, *, threads: int | None = None, flip: bool = False) -> CropEmbedder:
    """Build the embedder for manifest model ``name`` (a ``+flip`` suffix turns on flip TTA)."""
    name, flip = split_flip(name, flip)
    spec = store.spec(name, "recognition")
    if spec.architecture == "arcface-onnx":
        from .onnx import OnnxEmbedder

        return OnnxEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "tflite":
        from .tflite import TfliteEmbedder

        return TfliteEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "dlib":
        from .dlib import DlibEmbedder

        return DlibEmbedder(store, spec, threads=threads, flip=flip)
    if spec.architecture == "ensemble":
        from .ensemble import EnsembleEmbedder

        if flip:
            raise ModelError("model_invalid", f"set flip per member of ensemble {name!r}, not on the ensemble")
        members = [(create_embedder(m, store, threads=threads), w) for m, w in spec.members]
        return EnsembleEmbedder(spec, members)
    raise ModelError("model_invalid", f"no runtime for embedder architecture {spec.architecture!r}")


def member_ids(name: str, store: ModelStore) -> list[str]:
    """Model names an embedder needs on disk (itself, or an ensemble's members)."""
    base, _ = split_flip(name)
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
    "FLIP_SUFFIX",
    "create_embedder",
    "flip_id",
    "member_ids",
    "split_flip",
]
