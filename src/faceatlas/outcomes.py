"""Frozen results of verification, identification and enrolment (also importable from ``faceatlas.types``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import Face, _r


@dataclass(frozen=True, eq=False)
class Verification:
    """Result of a 1:1 comparison: decision, score, the threshold used and which faces were compared."""

    same: bool
    score: float
    threshold: float
    model_id: str
    face_a: Face
    face_b: Face
    faces_in_a: int = 1
    faces_in_b: int = 1
    far: float | None = None
    threshold_source: str = "model default"

    def to_dict(self) -> dict[str, Any]:
        """Serialise for ``--json`` and REST."""
        return {
            "same": self.same,
            "score": _r(self.score, 4),
            "threshold": _r(self.threshold, 4),
            "threshold_source": self.threshold_source,
            "far": self.far,
            "model_id": self.model_id,
            "face_a": self.face_a.to_dict(),
            "face_b": self.face_b.to_dict(),
            "faces_in_a": self.faces_in_a,
            "faces_in_b": self.faces_in_b,
        }


@dataclass(frozen=True)
class ImageInfo:
    """Where an image came from and its decoded size."""

    source: str
    width: int
    height: int
    orientation: int = 1
    format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """One candidate person for a face: gallery ids, similarity and its estimated false-accept rate."""

    person_id: int
    external_id: str
    name: str | None
    score: float
    far: float | None = None
    sample_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for ``--json`` and REST."""
        return {
            "person_id": self.person_id,
            "person": self.external_id,
            "name": self.name,
            "score": _r(self.score, 4),
            "far": self.far,
            "sample_id": self.sample_id,
        }


@dataclass(frozen=True, eq=False)
class Identification:
    """Open-set 1:N answer for one face: ranked candidates, the decision, the threshold used and the margin."""

    face: Face
    matches: tuple[Match, ...]
    decision: Match | None
    threshold: float
    threshold_source: str
    model_id: str
    margin: float | None = None
    #: Liveness verdict when identification ran with ``liveness=True`` (a spoof is not searched: no decision).
    live: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise; ``person`` is null when the face is unknown (``score`` is the best match's similarity)."""
        face = self.face.to_dict()
        face["detection_score"] = face.pop("score")
        if self.live is not None:
            face["live"] = self.live
        return {
            **face,
            "person": None if self.decision is None else self.decision.external_id,
            "name": None if self.decision is None else self.decision.name,
            "score": None if not self.matches else _r(self.matches[0].score, 4),
            "threshold": _r(self.threshold, 4),
            "threshold_source": self.threshold_source,
            "model_id": self.model_id,
            "margin": None if self.margin is None else _r(self.margin, 4),
            "candidates": [m.to_dict() for m in self.matches],
        }


@dataclass(frozen=True)
class Rejection:
    """Why an image was not enrolled (a stable code and a message)."""

    image: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Serialise."""
        return {"image": self.image, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Enrolment:
    """Outcome of enrolling images for one person: samples added and images rejected, with reasons."""

    collection: str
    person_id: int
    person: str
    sample_ids: tuple[int, ...]
    accepted: tuple[str, ...]
    rejected: tuple[Rejection, ...]

    def to_dict(self) -> dict[str, Any]:
        """Serialise."""
        return {
            "collection": self.collection,
            "person_id": self.person_id,
            "person": self.person,
            "sample_ids": list(self.sample_ids),
            "accepted": list(self.accepted),
            "rejected": [r.to_dict() for r in self.rejected],
        }
