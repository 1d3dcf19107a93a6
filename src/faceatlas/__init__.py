"""faceatlas: face detection, alignment, embedding and matching — as a library, a CLI and a REST service.

Importing the package does no work: models load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import config as _config

_config.privacy_defaults()  # dependency telemetry off before onnxruntime & co. are imported (opt in: see README)

__version__ = "0.1.0"

_EXPORTS = {
    "FaceAtlas": "faceatlas.facade",
    "Pipeline": "faceatlas.pipeline",
    "FaceRequest": "faceatlas.pipeline",
    "ImageResult": "faceatlas.pipeline",
    "Recognizer": "faceatlas.recognition",
    "Gallery": "faceatlas.gallery",
    "FaceAtlasError": "faceatlas.errors",
    "ImageError": "faceatlas.errors",
    "ModelError": "faceatlas.errors",
    "NoFaceError": "faceatlas.errors",
    "InvalidInputError": "faceatlas.errors",
    "Box": "faceatlas.types",
    "Detection": "faceatlas.types",
    "Face": "faceatlas.types",
    "Template": "faceatlas.types",
    "Verification": "faceatlas.types",
    "LoadedImage": "faceatlas.images",
    "load_image": "faceatlas.images",
    "ModelStore": "faceatlas.models.store",
}

if TYPE_CHECKING:  # pragma: no cover
    from .errors import FaceAtlasError as FaceAtlasError
    from .errors import ImageError as ImageError
    from .errors import InvalidInputError as InvalidInputError
    from .errors import ModelError as ModelError
    from .errors import NoFaceError as NoFaceError
    from .facade import FaceAtlas as FaceAtlas
    from .gallery import Gallery as Gallery
    from .images import LoadedImage as LoadedImage
    from .images import load_image as load_image
    from .models.store import ModelStore as ModelStore
    from .pipeline import FaceRequest as FaceRequest
    from .pipeline import ImageResult as ImageResult
    from .pipeline import Pipeline as Pipeline
    from .recognition import Recognizer as Recognizer
    from .types import Box as Box
    from .types import Detection as Detection
    from .types import Face as Face
    from .types import Template as Template
    from .types import Verification as Verification


def __getattr__(name: str) -> Any:
    """Import public names lazily so ``import faceatlas`` stays instant."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'faceatlas' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS) + ["__version__"]
