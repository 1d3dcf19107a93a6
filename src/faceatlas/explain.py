""""Why this match": occlusion sensitivity maps over the two aligned faces of a comparison.

Each aligned face is covered by a ``grid × grid`` mesh of patches; every patch is greyed out in turn, the masked crop
is embedded again and the cosine with the *other, unmasked* face is measured. The drop from the unmasked score is the
patch's importance: a large drop means the match relies on that region. Model-agnostic (only the embedder is called),
and one batch of ``2·grid²`` crops per pair.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidInputError

if TYPE_CHECKING:
    from .facade import FaceAtlas
    from .images import ColorOrder, ImageInput
    from .types import Face

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_GRID", "Explanation", "explain_pair", "occlusion_maps"]

DEFAULT_GRID = 7
"""Patches per side of the aligned crop (7 → 16×16-pixel patches on a 112×112 crop)."""

GREY = 128
"""The value a masked patch is filled with (mid grey, close to the crops' mean)."""


@dataclass(frozen=True, eq=False)
class Explanation:
    """Occlusion maps of one comparison: ``map_a[i, j]`` is the score drop when patch (i, j) of face A is greyed out."""

    score: float
    threshold: float
    same: bool
    model_id: str
    grid: int
    map_a: npt.NDArray[np.float32]
    map_b: npt.NDArray[np.float32]
    crop_a: npt.NDArray[np.uint8]
    crop_b: npt.NDArray[np.uint8]
    seconds: float

    def region_drop(self, rows: slice, cols: slice) -> float:
        """Mean score drop over a block of patches of both maps (e.g. the eyes-and-nose band)."""
        return float((self.map_a[rows, cols].mean() + self.map_b[rows, cols].mean()) / 2)

    def to_dict(self, include_crops: bool = True) -> dict[str, Any]:
        """JSON-ready: score, decision, maps as nested lists and (optionally) the crops as base64 PNG."""
        out: dict[str, Any] = {
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "same": self.same,
            "model_id": self.model_id,
            "grid": self.grid,
            "map_a": np.round(self.map_a.astype(np.float64), 4).tolist(),
            "map_b": np.round(self.map_b.astype(np.float64), 4).tolist(),
            "max_drop": round(float(max(self.map_a.max(), self.map_b.max())), 4),
            "ms": round(self.seconds * 1000, 1),
        }
        if include_crops:
            out["crop_a_png"] = _png_b64(self.crop_a)
            out["crop_b_png"] = _png_b64(self.crop_b)
        return out


def _png_b64(rgb: npt.NDArray[np.uint8]) -> str:
    """An RGB image as base64 PNG text."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover - encoding a small uint8 image does not fail
        raise InvalidInputError("invalid_input", "could not encode the aligned face")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _masked(crop: npt.NDArray[np.uint8], grid: int) -> npt.NDArray[np.uint8]:
    """``grid²`` copies of a crop, copy k with patch k (row-major) greyed out."""
    size = crop.shape[0]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    out = np.repeat(crop[None], grid * grid, axis=0)
    for i in range(grid):
        for j in range(grid):
            out[i * grid + j, edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = GREY
    return out


def occlusion_maps(atlas: FaceAtlas, crop_a: npt.NDArray[np.uint8], crop_b: npt.NDArray[np.uint8],
                   grid: int = DEFAULT_GRID) -> tuple[float, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Unmasked score and the two ``grid × grid`` score-drop maps of a pair of aligned crops."""
    if not 2 <= grid <= 16:
        raise InvalidInputError("invalid_input", f"grid must be between 2 and 16, got {grid}")
    batch = np.concatenate([crop_a[None], crop_b[None], _masked(crop_a, grid), _masked(crop_b, grid)])
    vecs = np.stack([t.vector for t in atlas.embed_aligned(batch)]).astype(np.float32)
    ta, tb = vecs[0], vecs[1]
    n = grid * grid
    score = float(ta @ tb)
    drop_a = score - vecs[2:2 + n] @ tb
    drop_b = score - vecs[2 + n:] @ ta
    return score, drop_a.reshape(grid, grid).astype(np.float32), drop_b.reshape(grid, grid).astype(np.float32)


def explain_pair(
    atlas: FaceAtlas,
    a: ImageInput | Face,
    b: ImageInput | Face,
    *,
    grid: int = DEFAULT_GRID,
    threshold: float | str | None = None,
    color: ColorOrder | None = None,
    face_a: int | None = None,
    face_b: int | None = None,
) -> Explanation:
    """Occlusion maps of the selected face of each image (or of two embedded Faces with their images' crops)."""
    from .types import Face

    started = time.perf_counter()
    crops = []
    for x, index in ((a, face_a), (b, face_b)):
        if isinstance(x, Face):
            if x.crop is None:
                raise InvalidInputError("invalid_input", "explain needs images, or Faces carrying their crop ('crop' head)")
            crops.append(np.asarray(x.crop, np.uint8))
            continue
        loaded = atlas.load(x, color)
        face, _ = atlas.template(loaded, face_index=index)
        crops.append(atlas.align(loaded, face))
    score, map_a, map_b = occlusion_maps(atlas, crops[0], crops[1], grid)
    point = atlas.operating_point(threshold)
    seconds = time.perf_counter() - started
    log.debug("explained a pair in %.0f ms (grid %d)", seconds * 1000, grid)
    return Explanation(score, point.threshold, score >= point.threshold, atlas.model_id, grid, map_a, map_b,
                       crops[0], crops[1], seconds)
