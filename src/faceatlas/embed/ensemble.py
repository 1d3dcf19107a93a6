"""Ensemble embedders: several embedders on the same aligned crop, fused into one template.

Each member's unit template is scaled by the square root of its weight and the parts are concatenated, so the
cosine of two fused templates is the weight-averaged cosine of the members: score fusion that still behaves as a
single template everywhere (verification, galleries, clustering).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..models import ModelSpec
from .base import CropEmbedder


class EnsembleEmbedder(CropEmbedder):
    """Weighted concatenation of member templates (members must share the crop size)."""

    def __init__(self, spec: ModelSpec, members: list[tuple[CropEmbedder, float]]) -> None:
        if not members:
            raise InvalidInputError("invalid_input", "an ensemble needs at least one member")
        self.spec = spec
        self.members = members
        self.flip = False
        self.model_id = spec.name
        self.size = members[0][0].size
        self.template = members[0][0].template
        self.dim = sum(m.dim for m, _ in members)
        parts = [f"{m.model_id}:{m.model_sha256}:{w:.6g}" for m, w in members]
        import hashlib  # imported here: hashlib loads OpenSSL, and only ensembles need it

        self.model_sha256 = hashlib.sha256("|".join(parts).encode()).hexdigest()
        self._weights = [w for _, w in members]

    def embed_faces(self, faces: Sequence[tuple[npt.NDArray[np.uint8], npt.ArrayLike]]) -> npt.NDArray[np.float32]:
        """Fused unit templates; each member aligns the faces with its own template."""
        if not faces:
            return np.zeros((0, self.dim), np.float32)
        return self._fuse([m.embed_faces(faces) for m, _ in self.members])

    def embed_crops(self, crops: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Fused templates from crops (only when every member uses the same alignment and size)."""
        if len({(m.template, m.size) for m, _ in self.members}) != 1:
            raise InvalidInputError("invalid_input", "this ensemble's members align differently: use embed_faces")
        return self._fuse([m.embed_crops(crops) for m, _ in self.members])

    def _fuse(self, member_vectors: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """Weighted concatenation of member templates, re-normalised."""
        return fuse_templates(member_vectors, self._weights)


def fuse_templates(member_vectors: Sequence[npt.NDArray[np.float32]], weights: Sequence[float]) -> npt.NDArray[np.float32]:
    """Fused unit templates: each member's (N, dim_i) unit rows scaled by sqrt(weight / total), concatenated."""
    total = float(sum(weights))
    parts = [np.asarray(v, np.float32) * float(np.sqrt(w / total)) for v, w in zip(member_vectors, weights, strict=True)]
    fused = np.concatenate(parts, axis=1)
    norms = np.linalg.norm(fused, axis=1, keepdims=True)
    return (fused / np.maximum(norms, 1e-12)).astype(np.float32)
