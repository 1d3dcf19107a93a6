"""Gallery of known persons: SQLite storage, optional encryption at rest, and 1:N vector search."""

from __future__ import annotations

from faceatlas.gallery.gallery import Gallery
from faceatlas.gallery.index import ExactIndex, HnswIndex, HnswParams, IndexConfig, VectorIndex, make_index
from faceatlas.gallery.models import (
    AuditEvent,
    Candidate,
    Collection,
    CollectionStats,
    EmbeddingContract,
    GalleryStats,
    Person,
    Sample,
)

__all__ = [
    "AuditEvent",
    "Candidate",
    "Collection",
    "CollectionStats",
    "EmbeddingContract",
    "ExactIndex",
    "Gallery",
    "GalleryStats",
    "HnswIndex",
    "HnswParams",
    "IndexConfig",
    "Person",
    "Sample",
    "VectorIndex",
    "make_index",
]
