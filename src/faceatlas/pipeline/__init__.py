"""The face pipeline: one request type, one pipeline, pluggable per-face heads."""

from __future__ import annotations

from .heads import CANONICAL, CropSpec, FaceBatch, Head, head_names, register_head
from .pipeline import DetectorOptions, ImageResult, Pipeline
from .request import CROP, DETECT, EMBED_ALL, EMBED_ONE, EMBEDDING, QUALITY, FaceRequest

__all__ = [
    "CANONICAL",
    "CROP",
    "DETECT",
    "EMBED_ALL",
    "EMBED_ONE",
    "EMBEDDING",
    "QUALITY",
    "CropSpec",
    "DetectorOptions",
    "FaceBatch",
    "FaceRequest",
    "Head",
    "ImageResult",
    "Pipeline",
    "head_names",
    "register_head",
]
