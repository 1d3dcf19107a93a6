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
from .profiles import PROFILES, Profile, apply_profile, get_profile
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
    "PROFILES",
    "Profile",
    "ResolvedModel",
    "Source",
    "apply_profile",
    "create_session",
    "get_profile",
    "sha256_file",
]
