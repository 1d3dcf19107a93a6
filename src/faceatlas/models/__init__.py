"""Model manifest, resolution (package data, FACEATLAS_MODELS, cache, download) and ONNX sessions."""

from .manifest import (
    BUILTIN_MODELS,
    DEFAULT_DETECTOR,
    DEFAULT_EMBEDDER,
    PREPROCESSING_VERSION,
    InputSpec,
    Manifest,
    ModelSpec,
    Source,
)
from .session import create_session
from .store import ModelStatus, ModelStore, ResolvedModel, sha256_file

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_DETECTOR",
    "DEFAULT_EMBEDDER",
    "PREPROCESSING_VERSION",
    "InputSpec",
    "Manifest",
    "ModelSpec",
    "ModelStatus",
    "ModelStore",
    "ResolvedModel",
    "Source",
    "create_session",
    "sha256_file",
]
