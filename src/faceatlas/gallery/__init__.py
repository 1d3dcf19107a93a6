"""Gallery of known persons: SQLite metadata, templates in SQLite (optionally encrypted) or Milvus, 1:N search."""

from __future__ import annotations

from faceatlas.gallery.backends import GalleryLocation, parse_location
from faceatlas.gallery.gallery import Gallery
from faceatlas.gallery.index import (
    ExactIndex,
    HnswIndex,
    HnswParams,
    IndexConfig,
    PqIndex,
    PqParams,
    VectorIndex,
    make_index,
)
from faceatlas.gallery.records import (
    AuditEvent,
    Candidate,
    Collection,
    CollectionStats,
    DeleteResult,
    EmbeddingContract,
    GalleryStats,
    NewPerson,
    NewSample,
    Person,
    Sample,
)

__all__ = [
    "AuditEvent",
    "Candidate",
    "Collection",
    "CollectionStats",
    "DeleteResult",
    "EmbeddingContract",
    "ExactIndex",
    "Gallery",
    "GalleryLocation",
    "GalleryStats",
    "HnswIndex",
    "HnswParams",
    "IndexConfig",
    "NewPerson",
    "NewSample",
    "Person",
    "PqIndex",
    "PqParams",
    "Sample",
    "VectorIndex",
    "make_index",
    "parse_location",
]
