"""Scores between templates and thresholds as operating points (a raw score or ``far=…`` via calibration).

:func:`resolve_threshold` is the one rule that turns a user's threshold into a cosine; every surface reaches it
through :meth:`faceatlas.pipeline.Pipeline.operating_point`, which adds the fallbacks (pipeline default,
``FACEATLAS_THRESHOLD``, the model's measured default).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import FaceAtlasError, InvalidInputError
from .types import Template

log = logging.getLogger(__name__)


def cosine(a: Template, b: Template) -> float:
    """Cosine similarity of two templates from the same model."""
    if a.model_id != b.model_id:
        raise FaceAtlasError(
            "model_mismatch", f"cannot compare templates of different models ({a.model_id} vs {b.model_id})"
        )
    return float(np.dot(a.vector, b.vector))


def similarity_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """All cosine similarities between rows of two L2-normalised matrices."""
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold actually used, where it came from, and the FAR it targets when known."""

    threshold: float
    source: str
    far_target: float | None = None


class Calibrations:
    """Per-model score → FAR calibrations: package data first, then ``$FACEATLAS_HOME/calibrations``."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self.extra_dir = extra_dir
        self._cache: dict[str, object | None] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> object | None:
        """The ``Calibration`` for a model id, or None when none is shipped or configured."""
        with self._lock:
            if model_id not in self._cache:
                self._cache[model_id] = self._load(model_id)
            return self._cache[model_id]

    def _load(self, model_id: str) -> object | None:
        """Read a calibration file for ``model_id`` if one exists."""
        from .calibration import Calibration

        name = f"{model_id}.json"
        if self.extra_dir is not None and (self.extra_dir / name).is_file():
            return Calibration.load(self.extra_dir / name)
        ref = resources.files("faceatlas") / "calibrations" / name
        if ref.is_file():
            return Calibration.from_json(ref.read_text())
        return None


def resolve_threshold(
    threshold: float | str | None,
    model_id: str,
    default: float | None,
    calibrations: Calibrations,
) -> OperatingPoint:
    """Turn a user threshold (number, ``"far=1e-3"`` or None) into the cosine threshold to apply."""
    from .calibration import Calibration, parse_threshold

    if threshold is None or (isinstance(threshold, str) and threshold.strip() == ""):
        if default is None:
            raise InvalidInputError("invalid_threshold", f"model {model_id!r} has no default threshold; pass one")
        return OperatingPoint(float(default), "model default")
    spec = parse_threshold(threshold)
    if spec.kind == "score":
        return OperatingPoint(float(spec.value), "user")
    cal = calibrations.get(model_id)
    if not isinstance(cal, Calibration):
        raise FaceAtlasError(
            "calibration_missing",
            f"no calibration for model {model_id!r}: give a numeric threshold or run 'faceatlas calibrate'",
        )
    return OperatingPoint(float(cal.threshold_for(spec.value)), f"far={spec.value:g} ({cal.source})", spec.value)


def estimated_far(score: float, model_id: str, calibrations: Calibrations) -> float | None:
    """Estimated false-accept rate of a score under the model's calibration, or None if uncalibrated."""
    from .calibration import Calibration

    cal = calibrations.get(model_id)
    if not isinstance(cal, Calibration):
        return None
    return float(cal.far_at(score))

