"""The incremental cluster state: templates, labels, faces and parameters, saved as an owner-only .npz file."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FaceAtlasError, NotFoundError
from ..types import Box
from .algorithms import FloatMatrix, IntArray, _normalised
from .results import ClusterFace

STATE_VERSION = 1


@dataclass
class ClusterState:
    """Everything needed to add photos later: templates, labels, faces, parameters and promotions (mutable)."""

    model_id: str
    model_sha256: str
    dim: int
    algorithm: str
    threshold: float
    min_size: int = 2
    min_face: float = 20.0
    faces: list[ClusterFace] = field(default_factory=list)
    vectors: FloatMatrix = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: dict[str, str] = field(default_factory=dict)
    next_id: int = 0
    promoted: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.size == 0:
            self.vectors = np.zeros((0, self.dim), np.float32)

    def centroids(self) -> tuple[list[int], FloatMatrix]:
        """Cluster ids and their normalised mean templates."""
        valid = self.labels >= 0
        if not valid.any():
            return [], np.zeros((0, self.dim), np.float32)
        uniq, inv = np.unique(self.labels[valid], return_inverse=True)
        sums = np.zeros((len(uniq), self.dim), np.float64)
        np.add.at(sums, inv, self.vectors[valid])
        return [int(u) for u in uniq], _normalised(sums.astype(np.float32))

    def members(self, cluster: int) -> list[int]:
        """Face indices of one cluster."""
        return np.flatnonzero(self.labels == cluster).tolist()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state atomically as an .npz file readable only by its owner."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": "faceatlas.cluster_state", "version": STATE_VERSION, "model_id": self.model_id,
            "model_sha256": self.model_sha256, "dim": self.dim, "algorithm": self.algorithm,
            "threshold": self.threshold, "min_size": self.min_size, "min_face": self.min_face,
            "images": self.images, "next_id": self.next_id,
            "promoted": {str(k): v for k, v in self.promoted.items()},
            "face_images": [f.image for f in self.faces],
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=target.parent)
        os.close(fd)
        try:
            os.chmod(tmp, 0o600)
            boxes = np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in self.faces], np.float32).reshape(-1, 4)
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    meta=np.array(json.dumps(meta)),
                    vectors=self.vectors.astype(np.float32),
                    labels=self.labels.astype(np.int64),
                    boxes=boxes,
                    scores=np.array([f.score for f in self.faces], np.float32),
                    qualities=np.array([f.quality for f in self.faces], np.float32),
                    face_index=np.array([f.face for f in self.faces], np.int32),
                )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterState:
        """Read a state file written by :meth:`save` (``cluster_state_invalid`` when it is not one)."""
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"no cluster state file at {p}")
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                vectors = np.asarray(z["vectors"], np.float32)
                labels = np.asarray(z["labels"], np.int64)
                boxes, scores, quals = z["boxes"], z["scores"], z["qualities"]
                face_index = z["face_index"]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise FaceAtlasError("cluster_state_invalid", f"{p} is not a readable cluster state ({exc})") from None
        if meta.get("kind") != "faceatlas.cluster_state" or int(meta.get("version", 0)) > STATE_VERSION:
            raise FaceAtlasError("cluster_state_invalid", f"{p} is not a cluster state this version can read")
        names = meta["face_images"]
        if not (len(names) == len(vectors) == len(labels) == len(boxes)):
            raise FaceAtlasError("cluster_state_invalid", f"{p}: arrays of different lengths")
        faces = [
            ClusterFace(str(names[k]), Box(*(float(v) for v in boxes[k])), float(scores[k]), float(quals[k]), int(face_index[k]))
            for k in range(len(names))
        ]
        return cls(
            meta["model_id"], meta["model_sha256"], int(meta["dim"]), meta["algorithm"], float(meta["threshold"]),
            int(meta["min_size"]), float(meta["min_face"]), faces, vectors.reshape(-1, int(meta["dim"])), labels,
            dict(meta["images"]), int(meta["next_id"]), {int(k): v for k, v in meta.get("promoted", {}).items()},
        )
