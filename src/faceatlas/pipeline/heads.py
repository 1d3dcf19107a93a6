"""Per-face heads: steps that run on every kept face, sharing aligned crops made once per (template, size).

A head declares its input through :class:`FaceBatch`: ``batch.crops(CropSpec(...))`` gives aligned crops (made on
first request, then shared by every head that asks for the same spec), ``batch.items`` the image and detection of
each face. The embedder is one head; quality and the canonical crop are others; the face-analysis heads (liveness,
age, ...) register the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..align import align_face
from ..errors import InvalidInputError
from ..types import Template
from .request import CROP, EMBEDDING, QUALITY

if TYPE_CHECKING:  # pragma: no cover
    import numpy.typing as npt

    from ..images import LoadedImage
    from ..types import Detection
    from .pipeline import Pipeline


@dataclass(frozen=True)
class CropSpec:
    """An aligned crop: landmark template name and square size in pixels."""

    template: str = "arcface112"
    size: int = 112


CANONICAL = CropSpec()


class FaceBatch:
    """The faces of one batch (from one or several images) with their aligned crops, made once per spec."""

    def __init__(self, items: Sequence[tuple[LoadedImage, Detection]], heads: Sequence[str] = ()) -> None:
        self.items = list(items)
        self.heads = tuple(heads)  # every head asked for on this batch (quality folds pose in when "pose" is one)
        self._crops: dict[CropSpec, npt.NDArray[np.uint8]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def crops(self, spec: CropSpec = CANONICAL) -> npt.NDArray[np.uint8]:
        """Aligned RGB crops ``(N, size, size, 3)`` of every face for ``spec`` (computed on first use)."""
        got = self._crops.get(spec)
        if got is None:
            if self.items:
                got = np.stack([align_face(img.rgb, det.landmarks, spec.size, spec.template) for img, det in self.items])
            else:
                got = np.zeros((0, spec.size, spec.size, 3), np.uint8)
            self._crops[spec] = got
        return got


class Head(Protocol):
    """A per-face step: one result per face of the batch, in order."""

    name: str

    def run(self, batch: FaceBatch) -> Sequence[Any]:
        """Results for every face of ``batch``."""
        ...


class EmbeddingHead:
    """The embedder as a head: a :class:`Template` per face."""

    name = EMBEDDING

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def run(self, batch: FaceBatch) -> list[Template]:
        """Templates of every face (each ensemble member on its own alignment)."""
        emb = self._pipeline.embedder
        if not len(batch):
            return []
        members = getattr(emb, "members", None)
        if members:
            from ..embed.ensemble import fuse_templates

            parts = [m.embed_crops(batch.crops(CropSpec(m.template, m.size[0]))) for m, _ in members]
            vectors = fuse_templates(parts, [w for _, w in members])
        else:
            vectors = emb.embed_crops(batch.crops(CropSpec(emb.template, emb.size[0])))
        return [Template(v, emb.model_id) for v in vectors]


class QualityHead:
    """Explainable quality (size, sharpness, frontality, confidence) from the canonical crop."""

    name = QUALITY

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def run(self, batch: FaceBatch) -> list[Any]:
        """A :class:`faceatlas.quality.Quality` per face (frontality from the pose head when it is asked for too)."""
        from ..quality import face_quality

        crops = batch.crops(CANONICAL)
        poses: list[Any] = list(self._pipeline.head("pose").run(batch)) if "pose" in batch.heads else [None] * len(crops)
        return [face_quality(det, crop, None if p is None else (p.yaw, p.pitch))
                for (_, det), crop, p in zip(batch.items, crops, poses, strict=True)]


class CropHead:
    """The canonical 112×112 RGB crop itself (kept for re-embedding when the user asks to store crops)."""

    name = CROP

    def __init__(self, pipeline: Pipeline) -> None:
        del pipeline

    def run(self, batch: FaceBatch) -> list[npt.NDArray[np.uint8]]:
        """One crop per face."""
        return list(batch.crops(CANONICAL))


HeadFactory = Callable[["Pipeline"], Head]

_REGISTRY: dict[str, HeadFactory] = {EMBEDDING: EmbeddingHead, QUALITY: QualityHead, CROP: CropHead}


def register_head(name: str, factory: HeadFactory) -> None:
    """Make a head available to every pipeline under ``name`` (the factory gets the pipeline)."""
    if not name or not isinstance(name, str):
        raise InvalidInputError("invalid_input", "a head needs a non-empty name")
    _REGISTRY[name] = factory


def head_names() -> tuple[str, ...]:
    """Names of every registered head."""
    return tuple(_REGISTRY)


def head_factory(name: str) -> HeadFactory:
    """The factory registered under ``name`` (``invalid_input`` when unknown)."""
    factory = _REGISTRY.get(name)
    if factory is None:
        from .. import analysis  # noqa: F401  (importing it registers the face-analysis heads: liveness, age, ...)

        factory = _REGISTRY.get(name)
    if factory is None:
        raise InvalidInputError("invalid_input", f"unknown head {name!r}; known: {', '.join(_REGISTRY)}")
    return factory
