"""Map similarity scores to estimated false accept rates (FAR) measured on impostor pairs, and back.

A :class:`Calibration` is a compact monotone table ``(score, FAR)`` where FAR(t) is the fraction of impostor scores
``>= t``. It answers "what FAR does this score correspond to" (:meth:`Calibration.far_at`) and "which score gives this
FAR" (:meth:`Calibration.threshold_for`), interpolating log(FAR) linearly in score between table points, and refuses
to extrapolate below the smallest FAR the impostor sample can resolve.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceatlas.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "Calibration", "ThresholdSpec", "parse_threshold"]

FloatArray = npt.NDArray[np.float64]

FORMAT_VERSION = 1
"""Version of the JSON layout written by :meth:`Calibration.to_json`."""

_KIND = "faceatlas.calibration"
_RANK_POINTS = 256  # table points at log-spaced impostor ranks (FAR from 1 down to 1/n)
_GRID_POINTS = 101  # table points on an even score grid between the lowest and highest impostor score
_GRID_SUPPORT = 50  # a grid point is kept only if at least this many impostor scores are >= it
_SLACK = 1e-9  # relative tolerance when comparing a requested FAR with the resolution limit

_THRESHOLD_RE = re.compile(r"^\s*(far|score)\s*[=:]\s*(\S+)\s*$", re.IGNORECASE)


def _bad(message: str, **details: Any) -> InvalidInputError:
    """Build the ``invalid_input`` error used for bad arguments and bad calibration data."""
    return InvalidInputError("invalid_input", message, **details)


def _finite_vector(values: Any, name: str, allow_empty: bool = False) -> FloatArray:
    """Validate a 1-D array of finite numbers and return it as float64."""
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{name} must be a flat sequence of numbers") from exc
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iuf"):
        raise _bad(f"{name} must be a 1-D sequence of numbers")
    if raw.size == 0 and not allow_empty:
        raise _bad(f"{name} is empty")
    arr = raw.astype(np.float64)
    if not np.isfinite(arr).all():
        raise _bad(f"{name} contains NaN or infinite values")
    return arr


def _number(value: Any, name: str) -> float:
    """Validate a finite real number argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(f"{name} must be a number")
    out = float(value)
    if not math.isfinite(out):
        raise _bad(f"{name} must be finite")
    return out


def _count(value: Any, name: str, minimum: int) -> int:
    """Validate an integer count >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise _bad(f"{name} must be an integer >= {minimum}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Monotone score -> FAR table for one model, measured on ``n_impostors`` impostor scores."""

    model_id: str
    scores: FloatArray
    fars: FloatArray
    n_impostors: int
    n_genuine: int = 0
    source: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        """Check the table is a valid monotone FAR table and store it as read-only float64 arrays."""
        if not isinstance(self.model_id, str) or not self.model_id:
            raise _bad("calibration model_id must be a non-empty string")
        if not isinstance(self.source, str) or not isinstance(self.created, str):
            raise _bad("calibration source and created must be strings")
        scores = _finite_vector(self.scores, "calibration scores")
        fars = _finite_vector(self.fars, "calibration fars")
        if scores.shape != fars.shape:
            raise _bad("calibration scores and fars must have the same length")
        if np.any(np.diff(scores) <= 0):
            raise _bad("calibration scores must be strictly increasing")
        if np.any(np.diff(fars) > 0) or fars[-1] <= 0 or fars[0] > 1:
            raise _bad("calibration fars must be non-increasing and within (0, 1]")
        n_impostors = _count(self.n_impostors, "n_impostors", 1)
        if fars[-1] * n_impostors < 1.0 - _SLACK:
            raise _bad("calibration fars go below 1/n_impostors, which the impostor sample cannot resolve")
        scores.setflags(write=False)
        fars.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "fars", fars)
        object.__setattr__(self, "n_impostors", n_impostors)
        object.__setattr__(self, "n_genuine", _count(self.n_genuine, "n_genuine", 0))

    @classmethod
    def from_scores(
        cls,
        model_id: str,
        impostor_scores: npt.ArrayLike,
        genuine_scores: npt.ArrayLike | None = None,
        source: str = "unspecified",
        created: str | None = None,
    ) -> Calibration:
        """Build a calibration from impostor similarity scores (genuine scores are only counted and checked).

        The table holds the exact empirical FAR at a few hundred points: the impostor scores at log-spaced ranks
        (FAR from 1 down to 1/n_impostors) plus an even score grid where at least 50 impostor scores support it.
        """
        impostor = np.sort(_finite_vector(impostor_scores, "impostor_scores"))
        n = int(impostor.size)
        n_genuine = 0
        if genuine_scores is not None:
            n_genuine = int(_finite_vector(genuine_scores, "genuine_scores", allow_empty=True).size)
        ranks = np.unique(np.rint(np.geomspace(1, n, num=min(n, _RANK_POINTS))).astype(np.int64))
        grid = np.linspace(impostor[0], impostor[-1], _GRID_POINTS)
        grid = grid[n - np.searchsorted(impostor, grid, side="left") >= _GRID_SUPPORT]
        table = np.unique(np.r_[impostor[n - ranks], grid])
        fars = (n - np.searchsorted(impostor, table, side="left")) / n
        stamp = created if created is not None else datetime.now(timezone.utc).isoformat(timespec="seconds")
        logger.debug("calibration for %s: %d impostors -> %d table points", model_id, n, table.size)
        return cls(model_id, table, fars, n, n_genuine, source, stamp)

    @property
    def min_far(self) -> float:
        """Lowest FAR the data resolves (1/n_impostors unless the top impostor scores tie)."""
        return float(self.fars[-1])

    @property
    def max_score(self) -> float:
        """Highest measured impostor score; above it FAR is below what the data resolves."""
        return float(self.scores[-1])

    def fars_at(self, scores: npt.ArrayLike) -> FloatArray:
        """Estimated FAR for each score (vectorised :meth:`far_at`)."""
        x = _finite_vector(np.atleast_1d(np.asarray(scores)), "scores", allow_empty=True)
        out: FloatArray = np.clip(np.exp(np.interp(x, self.scores, np.log(self.fars))), 0.0, 1.0)
        return out

    def far_at(self, score: float) -> float:
        """Estimated FAR of accepting ``score`` and above; clamps to :attr:`min_far` beyond the measured range."""
        return float(self.fars_at([_number(score, "score")])[0])

    def below_resolution(self, score: float) -> bool:
        """Tell whether ``score`` lies above every impostor score, so its true FAR is below :attr:`min_far`."""
        return _number(score, "score") > self.max_score

    def threshold_for(self, far: float) -> float:
        """Smallest score whose estimated FAR is <= ``far`` (the inverse of :meth:`far_at`)."""
        rate = _number(far, "far")
        if not 0.0 < rate <= 1.0:
            raise _bad(f"far must be in (0, 1], got {rate:g}")
        if rate < self.min_far * (1.0 - _SLACK):
            raise InvalidInputError(
                "far_unresolvable",
                f"far={rate:g} is below what this calibration resolves: the lowest resolvable FAR is "
                f"{self.min_far:.3g} ({self.n_impostors} impostor scores)",
                far=rate,
                lowest_far=self.min_far,
                n_impostors=self.n_impostors,
            )
        log_fars = np.log(self.fars)
        target = max(math.log(rate), float(log_fars[-1]))
        i = int(np.searchsorted(-log_fars, -target, side="left"))
        if i == 0:
            return float(self.scores[0])
        hi, lo = float(log_fars[i - 1]), float(log_fars[i])
        s0, s1 = float(self.scores[i - 1]), float(self.scores[i])
        return s0 + (hi - target) / (hi - lo) * (s1 - s0)

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a JSON-ready dict carrying ``format_version``."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": _KIND,
            "model_id": self.model_id,
            "source": self.source,
            "created": self.created,
            "n_impostors": self.n_impostors,
            "n_genuine": self.n_genuine,
            "scores": self.scores.tolist(),
            "fars": self.fars.tolist(),
        }

    def to_json(self) -> str:
        """Serialise to JSON text (floats written with full precision)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Rebuild a calibration from :meth:`to_dict` output, checking the format version."""
        if not isinstance(data, dict):
            raise _bad("calibration JSON must be an object")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise _bad("calibration JSON has no integer format_version")
        if version != FORMAT_VERSION:
            raise _bad(f"calibration format_version {version} is not supported (this version reads {FORMAT_VERSION})")
        if data.get("kind", _KIND) != _KIND:
            raise _bad(f"not a calibration file (kind={data.get('kind')!r})")
        missing = [k for k in ("model_id", "n_impostors", "scores", "fars") if k not in data]
        if missing:
            raise _bad(f"calibration JSON lacks {', '.join(missing)}")
        return cls(
            model_id=data["model_id"],
            scores=_finite_vector(data["scores"], "calibration scores"),
            fars=_finite_vector(data["fars"], "calibration fars"),
            n_impostors=data["n_impostors"],
            n_genuine=data.get("n_genuine", 0),
            source=data.get("source", ""),
            created=data.get("created", ""),
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Parse JSON text written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise _bad(f"calibration is not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the calibration as JSON, atomically (temporary file then rename)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(self.to_json() + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _bad(f"cannot write calibration file {target} ({exc})", path=str(target)) from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration JSON file written by :meth:`save`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise _bad(f"calibration file not found: {path}", path=os.fspath(path)) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise _bad(f"cannot read calibration file {path} ({exc})", path=os.fspath(path)) from exc
        return cls.from_json(text)


@dataclass(frozen=True)
class ThresholdSpec:
    """A decision threshold given either as a raw similarity score or as a target false accept rate."""

    kind: Literal["score", "far"]
    value: float

    def resolve(self, calibration: Calibration | None) -> float:
        """Turn the spec into a score threshold, using ``calibration`` for FAR targets."""
        if self.kind == "score":
            return self.value
        if calibration is None:
            raise InvalidInputError("invalid_threshold", f"far={self.value:g} needs a calibration for the model")
        return calibration.threshold_for(self.value)

    def __str__(self) -> str:
        """Render as the user would type it: ``far=0.001`` or ``0.42``."""
        return f"far={self.value:g}" if self.kind == "far" else f"{self.value:g}"


def _invalid_threshold(value: Any, why: str) -> InvalidInputError:
    """Build the ``invalid_threshold`` error for an unparseable threshold."""
    return InvalidInputError(
        "invalid_threshold",
        f"invalid threshold {value!r}: {why} (use a score like 0.42 or a target FAR like far=1e-3)",
    )


def parse_threshold(value: str | float | ThresholdSpec) -> ThresholdSpec:
    """Parse ``0.42``, ``"0.42"``, ``"score=0.42"``, ``"far=1e-3"`` or ``"far:1e-3"`` into a :class:`ThresholdSpec`.

    Scores are cosine similarities, so a score threshold must lie in [-1, 1]; the sensible range for the bundled
    models is about 0.2-0.6 (each model's default is in its manifest). A target FAR must lie in the open interval
    (0, 1): 0 cannot be calibrated and 1 would accept every impostor; useful values are 1e-2 down to 1e-6, limited by
    how many impostor pairs the calibration measured. Anything else is ``invalid_threshold``.
    """
    if isinstance(value, ThresholdSpec):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise _invalid_threshold(value, "a boolean is not a threshold")
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise _invalid_threshold(value, "the score must be finite")
        return _score_spec(value, number)
    if not isinstance(value, str):
        raise _invalid_threshold(value, "expected a number or a string")
    match = _THRESHOLD_RE.match(value)
    kind, text = (match.group(1).lower(), match.group(2)) if match else ("score", value.strip())
    try:
        number = float(text)
    except ValueError:
        raise _invalid_threshold(value, "not a number") from None
    if not math.isfinite(number):
        raise _invalid_threshold(value, "the value must be finite")
    if kind == "far":
        if not 0.0 < number < 1.0:
            raise _invalid_threshold(value, "a FAR must be in the open interval (0, 1)")
        return ThresholdSpec("far", number)
    return _score_spec(value, number)


def _score_spec(value: Any, number: float) -> ThresholdSpec:
    """A score threshold, refused outside the cosine range [-1, 1]."""
    if not -1.0 <= number <= 1.0:
        raise _invalid_threshold(value, "a score threshold is a cosine similarity and must be in [-1, 1]")
    return ThresholdSpec("score", number)
