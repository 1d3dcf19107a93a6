"""Face detectors (YuNet default, SCRFD) behind one interface, plus the single-face selection policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .base import SELECT_POLICIES, OnnxDetector, SelectPolicy, nms, select_face
from .scrfd import ScrfdDetector
from .yunet import YuNetDetector

if TYPE_CHECKING:  # pragma: no cover
    from ..models import ModelStore

DECODERS: dict[str, type[OnnxDetector]] = {"yunet": YuNetDetector, "scrfd": ScrfdDetector}


def create_detector(name: str, store: ModelStore, **options: Any) -> OnnxDetector:
    """Build the detector for manifest model ``name`` with the decoder its architecture names."""
    spec = store.spec(name, "detection")
    cls = DECODERS.get(spec.architecture)
    if cls is None:
        raise ModelError("model_invalid", f"no decoder for detector architecture {spec.architecture!r}")
    return cls(store, spec, **options)


__all__ = [
    "DECODERS",
    "SELECT_POLICIES",
    "OnnxDetector",
    "ScrfdDetector",
    "SelectPolicy",
    "YuNetDetector",
    "create_detector",
    "nms",
    "select_face",
]
