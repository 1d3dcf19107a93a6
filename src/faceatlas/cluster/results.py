"""What a clustering run reports: faces, clusters, the result of a run, and image problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Box, Rejection, _r


@dataclass(frozen=True)
class ClusterFace:
    """One face of the photo collection: which image, which face in it, where, and how good it is."""

    image: str
    box: Box
    score: float
    quality: float
    face: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"image": self.image, "face": self.face, "box": self.box.to_list(), "score": _r(self.score, 4)}


@dataclass(frozen=True)
class Cluster:
    """A group of faces believed to be one person, with its most typical face and how tight it is."""

    id: int
    faces: tuple[ClusterFace, ...]
    representative: ClusterFace
    cohesion: float
    person: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        out: dict[str, Any] = {
            "id": self.id,
            "size": len(self.faces),
            "cohesion": _r(self.cohesion, 4),
            "representative": self.representative.to_dict(),
            "faces": [f.to_dict() for f in self.faces],
        }
        if self.person is not None:
            out["person"] = self.person
        return out


#: An image that could not be used, with the error code and message (the same type enrolment reports).
ImageProblem = Rejection


@dataclass(frozen=True)
class ClusterResult:
    """Clusters (largest first), noise faces, the parameters used and what this run added."""

    clusters: tuple[Cluster, ...]
    noise: tuple[ClusterFace, ...]
    algorithm: str
    threshold: float
    model_id: str
    images: int
    new_images: int
    new_faces: int
    assigned_to_existing: int
    problems: tuple[ImageProblem, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Serialise as ONE JSON object (``clusters`` with their faces, ``noise``, parameters and counts)."""
        return {
            "clusters": [c.to_dict() for c in self.clusters],
            "noise": [f.to_dict() for f in self.noise],
            "algorithm": self.algorithm,
            "threshold": _r(self.threshold, 4),
            "model_id": self.model_id,
            "images": self.images,
            "faces": sum(len(c.faces) for c in self.clusters) + len(self.noise),
            "new_images": self.new_images,
            "new_faces": self.new_faces,
            "assigned_to_existing": self.assigned_to_existing,
            "problems": [p.to_dict() for p in self.problems],
            "seconds": {k: _r(v, 3) for k, v in self.seconds.items()},
        }
