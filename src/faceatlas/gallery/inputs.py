"""Validation of what callers pass with templates: per-sample fields, boxes, numbers; builds ``NewSample`` rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.records import EmbeddingContract, NewSample, check_contract
from faceatlas.gallery.store import check_sha256
from faceatlas.types import Box, Template

BoxLike = Box | Sequence[float]


def box(value: BoxLike | None) -> Box | None:
    """Accept a Box, four numbers ``[x1, y1, x2, y2]`` or ``None``."""
    if value is None or isinstance(value, Box):
        return value
    try:
        coords = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InvalidInputError("invalid_input", "a box must be a Box or [x1, y1, x2, y2]") from None
    if len(coords) != 4 or not all(math.isfinite(c) for c in coords):
        raise InvalidInputError("invalid_input", "a box must be four finite numbers [x1, y1, x2, y2]")
    return Box(*coords)


def per_sample(value: Any, n: int, what: str, scalar: tuple[type, ...]) -> list[Any]:
    """Expand an optional per-sample argument: ``None``, one value for every template, or ``n`` values."""
    if value is None:
        return [None] * n
    if isinstance(value, scalar) and not isinstance(value, bool):
        return [value] * n
    if what == "boxes" and is_box_numbers(value):
        if n == 1:
            return [value]
        raise InvalidInputError("invalid_input", "boxes: give one box per template")
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes, bytearray)):
        items = list(value)
        if len(items) == n:
            return items
    raise InvalidInputError("invalid_input", f"{what} must be None, one value, or a sequence of {n} values")


def is_box_numbers(value: Any) -> bool:
    """Tell whether ``value`` is a flat sequence of four numbers (one box)."""
    return (
        isinstance(value, (list, tuple, np.ndarray))
        and len(value) == 4
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value)
    )


def optional_number(value: Any, what: str) -> float | None:
    """Validate an optional finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError("invalid_input", f"{what} must be a number or None")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError("invalid_input", f"{what} must be finite")
    return out


def new_samples(
    templates: Template | Sequence[Template],
    qualities: float | Sequence[float | None] | None,
    detection_scores: float | Sequence[float | None] | None,
    boxes: BoxLike | Sequence[BoxLike | None] | None,
    image_sha256: str | Sequence[str | None] | None,
    crops: bytes | Sequence[bytes | None] | None,
) -> tuple[list[NewSample], str | None]:
    """Validate templates and their optional per-sample fields; return the samples to store and their model id."""
    items = [templates] if isinstance(templates, Template) else list(templates)
    if not all(isinstance(t, Template) for t in items):
        raise InvalidInputError("invalid_input", "templates must be faceatlas.types.Template objects")
    if not items:
        return [], None
    if len({t.model_id for t in items}) != 1:
        raise FaceAtlasError("model_mismatch", "templates from several models in one call")
    n = len(items)
    numbers = (int, float, np.number)
    q = per_sample(qualities, n, "qualities", numbers)
    d = per_sample(detection_scores, n, "detection_scores", numbers)
    b = [box(v) for v in per_sample(boxes, n, "boxes", (Box,))]
    h = [check_sha256(v) for v in per_sample(image_sha256, n, "image_sha256", (str,))]
    c = per_sample(crops, n, "crops", (bytes, bytearray, memoryview))
    for crop in c:
        if crop is not None and not isinstance(crop, (bytes, bytearray, memoryview)):
            raise InvalidInputError("invalid_input", "crops must be bytes (encoded image) or None")
    new = [
        NewSample(
            vector=t.vector,
            quality=optional_number(q[i], "quality"),
            detection_score=optional_number(d[i], "detection_score"),
            box=b[i],
            image_sha256=h[i],
            crop=None if c[i] is None else bytes(c[i]),
        )
        for i, t in enumerate(items)
    ]
    return new, items[0].model_id


def query_matrix(vectors: Any, contract: EmbeddingContract, model_id: str | None) -> npt.NDArray[np.float32]:
    """Turn search input into a normalised ``(n, dim)`` matrix after the model-contract check."""
    if isinstance(vectors, Template):
        items: list[Any] = [vectors]
    elif isinstance(vectors, (list, tuple)) and vectors and all(isinstance(v, Template) for v in vectors):
        items = list(vectors)
    else:
        items = []
    if items:
        for t in items:
            check_contract(contract, t.model_id, t.dim, what="query")
        if model_id is not None:
            check_contract(contract, model_id, items[0].dim, what="query")
        return np.stack([t.vector for t in items]).astype(np.float32)
    try:
        mat = np.array(vectors, dtype=np.float32, ndmin=2)
    except (TypeError, ValueError):
        raise InvalidInputError("invalid_input", "queries must be Templates or float vectors") from None
    if mat.ndim != 2:
        raise InvalidInputError("invalid_input", f"query vectors must be (dim,) or (n, dim), not {mat.shape}")
    if model_id is None:
        raise InvalidInputError(
            "invalid_input",
            "raw query vectors must say which model made them (model_id=...), or be passed as Templates",
        )
    check_contract(contract, model_id, int(mat.shape[1]), what="query")
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise InvalidInputError("invalid_input", "query vectors must be finite and non-zero")
    return (mat / norms).astype(np.float32)
