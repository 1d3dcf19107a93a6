"""The HTML contact sheet of a clustering result (self-contained, thumbnails inlined)."""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError
from ..types import Box
from .results import ClusterFace, ClusterResult

log = logging.getLogger(__name__)


def _thumbnail(rgb: npt.NDArray[np.uint8], box: Box, size: int) -> str:
    """A base64 JPEG data URI of a face with some context, ``size`` pixels square."""
    from PIL import Image

    h, w = rgb.shape[:2]
    side = max(box.width, box.height) * 1.4
    cx, cy = box.center
    x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x2, y2 = int(min(w, math.ceil(cx + side / 2))), int(min(h, math.ceil(cy + side / 2)))
    crop = Image.fromarray(rgb[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)])
    crop.thumbnail((size, size))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_contact_sheet(
    result: ClusterResult, path: str | os.PathLike[str], *, thumb: int = 96, max_per_cluster: int = 60, max_noise: int = 200
) -> Path:
    """Write a self-contained HTML page: one row per cluster (representative first), then the noise faces."""
    from ..images import load_image

    cache: dict[str, npt.NDArray[np.uint8] | None] = {}

    def pixels(image: str) -> npt.NDArray[np.uint8] | None:
        """Decoded pixels of an image (None when it cannot be read any more), cached per image."""
        if image not in cache:
            if len(cache) > 64:
                cache.clear()
            try:
                cache[image] = load_image(image).rgb
            except FaceAtlasError as exc:
                log.warning("contact sheet: %s", exc)
                cache[image] = None
        return cache[image]

    def tile(face: ClusterFace, css: str = "") -> str:
        """HTML of one thumbnail."""
        rgb = pixels(face.image)
        title = html.escape(f"{face.image} face {face.face} score {face.score:.2f}", quote=True)
        if rgb is None:
            return f'<div class="miss {css}" title="{title}">?</div>'
        return f'<img class="{css}" src="{_thumbnail(rgb, face.box, thumb)}" title="{title}" alt="">'

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>faceatlas clusters</title><style>",
        "body{font-family:sans-serif;margin:16px;background:#fafafa}h2{font-size:15px;margin:18px 0 6px}",
        f"img,.miss{{width:{thumb}px;height:{thumb}px;object-fit:cover;margin:2px;border-radius:4px}}",
        ".rep{outline:3px solid #2a7}.miss{display:inline-block;background:#ddd;text-align:center}",
        ".meta{color:#666;font-size:12px}</style></head><body>",
        f"<h1>{len(result.clusters)} clusters, {len(result.noise)} unclustered faces</h1>",
        f"<p class='meta'>algorithm {html.escape(result.algorithm)}, threshold {result.threshold:.3f}, "
        f"model {html.escape(result.model_id)}, {result.images} images</p>",
    ]
    for c in result.clusters:
        who = f" — {html.escape(c.person)}" if c.person else ""
        parts.append(f"<h2>Cluster {c.id}{who} <span class='meta'>{len(c.faces)} faces, cohesion {c.cohesion:.2f}</span></h2>")
        parts.append(tile(c.representative, "rep"))
        shown = [f for f in c.faces if f is not c.representative][: max_per_cluster - 1]
        parts.extend(tile(f) for f in shown)
        if len(c.faces) > len(shown) + 1:
            parts.append(f"<span class='meta'>+{len(c.faces) - len(shown) - 1} more</span>")
    if result.noise:
        parts.append(f"<h2>Noise <span class='meta'>{len(result.noise)} faces</span></h2>")
        parts.extend(tile(f) for f in result.noise[:max_noise])
    parts.append("</body></html>")
    target = Path(path)
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
