"""Recognition: enrolment (a policy over pipeline output), identification and re-embedding over a gallery."""

from __future__ import annotations

from .. import config
from .enrol import MultiFacePolicy, PreparedFace, QualityGates, check_gates, enrol_request, prepare_face, prepare_faces
from .recognizer import Recognizer, retry_on_conflict
from .reembed import reembed_collection


def default_gallery_path() -> str:
    """Where the default gallery lives: ``$FACEATLAS_GALLERY`` or ``$FACEATLAS_HOME/gallery.db``."""
    return config.default_gallery()


__all__ = [
    "MultiFacePolicy",
    "PreparedFace",
    "QualityGates",
    "Recognizer",
    "check_gates",
    "default_gallery_path",
    "enrol_request",
    "prepare_face",
    "prepare_faces",
    "reembed_collection",
    "retry_on_conflict",
]
