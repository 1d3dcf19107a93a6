"""Scores between templates and thresholds as operating points (a raw score or ``far=…`` via calibration).

:func:`resolve_threshold` is the one rule that turns a user's threshold into a cosine; every surface reaches it
through :meth:`faceatlas.pipeline.Pipeline.operating_point`, which adds the fallbacks (pipeline default,
``FACEATLAS_THRESHOLD``, the model's measured default).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
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
    """Per-model score → FAR calibrations: the shipped one, or a user calibration chosen explicitly by name or path.

    A user calibration (``faceatlas calibrate --name NAME``, saved as ``$FACEATLAS_HOME/calibrations/NAME.json``)
    is used only when chosen (``choice``); it never replaces the shipped calibration by sitting in that folder.
    """

    def __init__(self, extra_dir: Path | None = None, choice: str | Path | None = None) -> None:
        self.extra_dir = extra_dir
        self.choice = None if choice is None or str(choice).strip() == "" else choice
        self._cache: dict[str, object | None] = {}
        self._chosen: object | None = None
        self._lock = threading.Lock()

    def get(self, model_id: str) -> object | None:
        """The ``Calibration`` for a model id, or None when none is shipped or chosen."""
        with self._lock:
            if self.choice is not None:
                return self._chosen_for(model_id)
            if model_id not in self._cache:
                self._cache[model_id] = self._shipped(model_id)
            return self._cache[model_id]

    def label(self, model_id: str) -> str:
        """How to name the calibration used for ``model_id`` in messages (its name or path, or 'shipped')."""
        return str(self.choice) if self.choice is not None else f"shipped {model_id}"

    def locate(self, choice: str | Path) -> Path | None:
        """The file a calibration name or path refers to (user folder first, then the shipped ones), or None."""
        text = str(choice)
        path = Path(text).expanduser()
        if path.suffix == ".json" or path.is_file() or "/" in text or "\\" in text:
            return path if path.is_file() else None
        if self.extra_dir is not None and (self.extra_dir / f"{text}.json").is_file():
            return self.extra_dir / f"{text}.json"
        from importlib import resources  # imported here: ~10 ms of startup that embedding never needs

        ref = resources.files("faceatlas") / "calibrations" / f"{text}.json"
        return Path(str(ref)) if ref.is_file() else None

    def _chosen_for(self, model_id: str) -> object:
        """The explicitly chosen calibration, checked to belong to ``model_id``."""
        from .calibration import Calibration

        assert self.choice is not None
        if self._chosen is None:
            path = self.locate(self.choice)
            if path is None:
                where = f" or {self.extra_dir}/{self.choice}.json" if self.extra_dir is not None else ""
                raise InvalidInputError(
                    "invalid_input",
                    f"calibration {str(self.choice)!r} not found (looked for a file{where} and a shipped calibration); "
                    "create one with 'faceatlas calibrate FOLDER --name NAME'",
                    calibration=str(self.choice),
                )
            self._chosen = Calibration.load(path)
        cal = self._chosen
        assert isinstance(cal, Calibration)
        if cal.model_id != model_id:
            raise InvalidInputError(
                "invalid_input",
                f"calibration {str(self.choice)!r} was measured for model {cal.model_id!r}, not {model_id!r}",
                calibration=str(self.choice), calibration_model=cal.model_id, model_id=model_id,
            )
        return cal

    def _shipped(self, model_id: str) -> object | None:
        """The calibration shipped in the package for ``model_id``, if any."""
        from .calibration import Calibration

        name = f"{model_id}.json"
        if self.extra_dir is not None and (self.extra_dir / name).is_file():
            log.warning("ignoring %s: user calibrations are used only when chosen (--calibration %s)",
                        self.extra_dir / name, model_id)
        from importlib import resources  # imported here: ~10 ms of startup that embedding never needs

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
            f"no calibration for model {model_id!r}: give a numeric threshold, or run "
            "'faceatlas calibrate FOLDER --name NAME' and choose it with --calibration NAME",
        )
    if spec.value < cal.min_far * (1.0 - 1e-9):
        name = calibrations.label(model_id)
        raise InvalidInputError(
            "far_unresolvable",
            f"far={spec.value:g} is below what calibration {name!r} resolves: it measured {cal.n_impostors} "
            f"impostor pairs, so the lowest resolvable FAR is {cal.min_far:.3g}",
            far=spec.value, lowest_far=cal.min_far, n_impostors=cal.n_impostors, calibration=name,
        )
    return OperatingPoint(float(cal.threshold_for(spec.value)), f"far={spec.value:g} ({cal.source})", spec.value)


def estimated_far(score: float, model_id: str, calibrations: Calibrations) -> float | None:
    """Estimated false-accept rate of a score under the model's calibration, or None if uncalibrated."""
    from .calibration import Calibration

    cal = calibrations.get(model_id)
    if not isinstance(cal, Calibration):
        return None
    return float(cal.far_at(score))

