"""``faceatlas cluster --ray``: the per-photo work of clustering on Ray actors; the graph step stays on the driver."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cluster.algorithms import FloatMatrix
from ..cluster.photos import PhotoFaces, Progress, gather_faces
from ..cluster.results import ClusterFace, ImageProblem
from .ray_runner import NodeTally, RayPhotoPool, chunks_of


class RayPhotoEmbedder:
    """Turns image paths into faces and templates on Ray actors, in image order (an ``embed`` for cluster_folder).

    Each actor owns one pipeline built from ``settings`` (one model thread) and reads the images itself from the
    paths, so every node must see the same paths. The pool is started per call and stopped when the call returns;
    a call without images does not touch Ray.
    """

    def __init__(self, address: str, settings: dict[str, Any], dim: int, *, actors: int = 0) -> None:
        self.address = address
        self.settings = settings
        self.dim = dim
        self.actors = actors
        self.nodes = NodeTally()
        self.images = 0
        self.seconds = 0.0
        self.actors_used = 0

    def __call__(
        self, paths: Sequence[Path], progress: Progress | None = None
    ) -> tuple[list[ClusterFace], FloatMatrix, list[ImageProblem]]:
        """Every face of every image with its template, and the images that could not be used."""
        if not paths:
            return [], np.zeros((0, self.dim), np.float32), []
        start = time.perf_counter()
        pool = RayPhotoPool(self.address, self.settings, actors=self.actors)
        self.actors_used = len(pool.actors)
        items: list[PhotoFaces] = []
        try:
            for res in pool.map_ordered("cluster_faces", chunks_of([str(p) for p in paths])):
                self.nodes.add(res)
                items.extend(res.items)
                if progress is not None:
                    progress(len(items), len(paths))
        finally:
            pool.shutdown()
        self.images += len(items)
        self.seconds += time.perf_counter() - start
        return gather_faces(items, self.dim)

    def note(self) -> str:
        """Throughput and images per Ray node of the calls so far (empty before any image)."""
        if not self.images:
            return ""
        per_node = ", ".join(f"{node[:8]} {n}" for node, n in sorted(self.nodes.nodes.items()))
        return (f"ray: {self.images} images in {self.seconds:.1f}s ({self.images / max(self.seconds, 1e-9):.1f} "
                f"images/s on {self.actors_used} actors; images per node: {per_node})")
