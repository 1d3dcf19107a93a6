"""Frozen record types of the gallery: what it returns (collections, persons, samples, candidates, stats) and what
the store exchanges with the backends (new samples, write receipts, loaded vectors, export rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError
from faceatlas.types import Box, Template

PersonRef = int | str  # a person by internal id (int) or external id (str)


def _freeze_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return a read-only shallow copy of a mapping (empty when ``None``)."""
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class EmbeddingContract:
    """What every template in a collection must come from: model, its file hash, dimension, preprocessing."""

    model_id: str
    model_sha256: str
    dim: int
    preprocessing: str = "v1"

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "model_id": self.model_id,
            "model_sha256": self.model_sha256,
            "dim": self.dim,
            "preprocessing": self.preprocessing,
        }


@dataclass(frozen=True)
class Collection:
    """A named set of persons whose templates all follow one embedding contract."""

    id: int
    name: str
    created_at: float
    contract: EmbeddingContract
    persons: int = 0
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "name": self.name,
            "created_at": self.created_at,
            "contract": self.contract.to_dict(),
            "persons": self.persons,
            "samples": self.samples,
        }


@dataclass(frozen=True, eq=False)
class Person:
    """A known identity in a collection: internal id, caller's external id, display name, metadata."""

    id: int
    collection: str
    external_id: str
    name: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    samples: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "id": self.id,
            "collection": self.collection,
            "external_id": self.external_id,
            "name": self.name,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "samples": self.samples,
        }


@dataclass(frozen=True, eq=False)
class Sample:
    """One enrolled face of a person; the template is only filled in when explicitly asked for."""

    id: int
    person_id: int
    collection: str
    quality: float | None
    detection_score: float | None
    box: Box | None
    image_sha256: str | None
    created_at: float
    has_crop: bool = False
    template: Template | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise without the template vector (biometric data)."""
        return {
            "id": self.id,
            "person_id": self.person_id,
            "collection": self.collection,
            "quality": self.quality,
            "detection_score": self.detection_score,
            "box": self.box.to_list() if self.box is not None else None,
            "image_sha256": self.image_sha256,
            "created_at": self.created_at,
            "has_crop": self.has_crop,
        }


@dataclass(frozen=True)
class Candidate:
    """One person returned by a search, with its score and the sample that matched best."""

    person_id: int
    external_id: str
    name: str | None
    score: float
    sample_id: int | None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "person_id": self.person_id,
            "external_id": self.external_id,
            "name": self.name,
            "score": round(float(self.score), 4),
            "sample_id": self.sample_id,
        }


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit trail (never contains templates)."""

    id: int
    timestamp: float
    actor: str
    action: str
    collection: str | None
    person_id: int | None
    sample_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "action": self.action,
            "collection": self.collection,
            "person_id": self.person_id,
            "sample_ids": list(self.sample_ids),
        }


@dataclass(frozen=True)
class CollectionStats:
    """Size of one collection and of its in-memory index."""

    name: str
    persons: int
    samples: int
    indexed: int
    index_kind: str | None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "name": self.name,
            "persons": self.persons,
            "samples": self.samples,
            "indexed": self.indexed,
            "index_kind": self.index_kind,
        }


@dataclass(frozen=True)
class GalleryStats:
    """Whole-gallery figures: file, backend, encryption, schema and per-collection sizes."""

    path: str
    encrypted: bool
    schema_version: int
    file_bytes: int
    wal_bytes: int
    collections: tuple[CollectionStats, ...]
    backend: str = "sqlite"

    @property
    def persons(self) -> int:
        """Total persons over all collections."""
        return sum(c.persons for c in self.collections)

    @property
    def samples(self) -> int:
        """Total samples over all collections."""
        return sum(c.samples for c in self.collections)

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "path": self.path,
            "backend": self.backend,
            "encrypted": self.encrypted,
            "schema_version": self.schema_version,
            "file_bytes": self.file_bytes,
            "wal_bytes": self.wal_bytes,
            "persons": self.persons,
            "samples": self.samples,
            "collections": [c.to_dict() for c in self.collections],
        }


@dataclass(frozen=True, eq=False)
class NewSample:
    """A sample to store: normalised float32 vector plus its optional provenance and crop."""

    vector: npt.NDArray[np.float32]
    quality: float | None = None
    detection_score: float | None = None
    box: Box | None = None
    image_sha256: str | None = None
    crop: bytes | None = None


@dataclass(frozen=True, eq=False)
class NewPerson:
    """One new person for ``Gallery.add_people``: external id, templates, and the optional fields of ``add_samples``."""

    external_id: str
    templates: Template | Sequence[Template]
    name: str | None = None
    metadata: Mapping[str, Any] | None = None
    qualities: float | Sequence[float | None] | None = None
    detection_scores: float | Sequence[float | None] | None = None
    boxes: Box | Sequence[Any] | None = None
    image_sha256: str | Sequence[str | None] | None = None
    crops: bytes | Sequence[bytes | None] | None = None


@dataclass(frozen=True)
class WriteReceipt:
    """What a committed write changed: ids, generation before and after, and whether deleted bytes left the disk."""

    collection_id: int
    generation_before: int
    generation_after: int
    person_id: int | None = None
    sample_ids: tuple[int, ...] = ()
    erased: bool = True
    sample_persons: tuple[int, ...] = ()  # owner of each of ``sample_ids`` when a write spans several persons


@dataclass(frozen=True, eq=False)
class LoadedVectors:
    """A consistent snapshot of one collection's templates for building an index."""

    collection_id: int
    generation: int
    contract: EmbeddingContract
    sample_ids: npt.NDArray[np.int64]
    person_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]


@dataclass(frozen=True)
class CollectionBrief:
    """What a search needs to know about a collection: id, name and contract (no counts: they cost a scan)."""

    id: int
    name: str
    contract: EmbeddingContract


@dataclass(frozen=True, eq=False)
class ExportPerson:
    """One person with its samples, their exact stored template vectors and crops, as streamed for export."""

    person: Person
    samples: tuple[Sample, ...]
    vectors: tuple[npt.NDArray[np.float32], ...]
    crops: tuple[bytes | None, ...]


class DeleteResult(int):
    """What a delete removed: the number of samples (it is that int) and whether erasure from disk is complete."""

    erased: bool

    def __new__(cls, samples: int, erased: bool = True) -> DeleteResult:
        obj = super().__new__(cls, samples)
        obj.erased = bool(erased)
        return obj

    @property
    def samples(self) -> int:
        """The number of samples removed."""
        return int(self)

    def __repr__(self) -> str:
        return f"DeleteResult(samples={int(self)}, erased={self.erased})"


def check_contract(
    contract: EmbeddingContract, model_id: str, dim: int, *, model_sha256: str | None = None, what: str = "template"
) -> None:
    """The one model-contract rule: a collection only takes and answers templates of its own model and dimension."""
    same_file = not (model_sha256 and contract.model_sha256 and model_sha256 != contract.model_sha256)
    if model_id != contract.model_id or dim != contract.dim or not same_file:
        raise FaceAtlasError(
            "model_mismatch",
            f"{what} from model {model_id!r} (dim {dim}) does not fit a collection of {contract.model_id!r} "
            f"(dim {contract.dim}"
            + ("" if same_file else ", another model file")
            + "): use the collection's model or re-embed the collection",
            collection_model=contract.model_id,
            model=model_id,
        )
