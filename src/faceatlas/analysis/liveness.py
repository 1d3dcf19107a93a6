"""Passive single-frame liveness (presentation-attack detection): a deterrent, not a certified PAD.

Two small anti-spoofing networks look at the face with context (2.7x the box): MiniFASNetV2
(Silent-Face-Anti-Spoofing) and faceplugin's MiniFASNet-SE-like model. Their probabilities of "real" are fused by
averaging their log-odds (equal weights, not tuned); the face counts as live when the fused probability reaches the
operating point (see :data:`DEFAULT_THRESHOLD`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .common import AnalysisModel, box_crops, r, softmax

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

LIVENESS = "liveness"
#: The models fused by default (probability of "real", averaged).
LIVENESS_MODELS: tuple[str, ...] = ("minifasnet-v2", "faceplugin-liveness")
#: Operating point on the fused score: the highest threshold keeping BPCER ≤ 5 % on all 13,233 LFW images
#: (benchmarks/analyze.py det: BPCER 4.9 %, APCER 21 % on staged print/screen/phone replays; see README).
DEFAULT_THRESHOLD = 0.24


@dataclass(frozen=True)
class Liveness:
    """Liveness of one face: fused probability of a real face, the decision at ``threshold``, per-model scores."""

    score: float
    live: bool
    threshold: float
    model: str
    scores: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", MappingProxyType(dict(self.scores)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"score": r(self.score), "live": self.live, "threshold": self.threshold, "model": self.model,
                "scores": {k: r(v) for k, v in self.scores.items()}}


def fuse(scores: Sequence[npt.ArrayLike]) -> npt.NDArray[np.float64]:
    """Fused probability of "real": the sigmoid of the mean log-odds of each model's probability."""
    p = np.clip(np.stack([np.asarray(s, np.float64) for s in scores]), 1e-6, 1 - 1e-6)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)).mean(axis=0)))


class LivenessHead:
    """The ``liveness`` head: both anti-spoofing models on 2.7x box crops, fused."""

    name = LIVENESS

    def __init__(self, pipeline: Pipeline, models: Sequence[str] = LIVENESS_MODELS,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.models = [AnalysisModel(pipeline, m) for m in models]
        self.threshold = float(threshold)
        self.model_id = "+".join(models)

    def scores(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        """Each model's probability of "real" for every face."""
        out = {}
        for m in self.models:
            crops = box_crops(batch, m.setting("crop_scale", 2.7), m.size)
            probs = softmax(m.run(m.prepare(crops))[0]) if crops else np.zeros((0, 3), np.float32)
            out[m.name] = probs[:, int(m.setting("live_class", 1))]
        return out

    def run(self, batch: FaceBatch) -> list[Liveness]:
        """A :class:`Liveness` per face."""
        if not len(batch):
            return []
        per_model = self.scores(batch)
        fused = fuse(list(per_model.values()))
        return [
            Liveness(float(s), bool(s >= self.threshold), self.threshold, self.model_id,
                     {k: float(v[i]) for k, v in per_model.items()})
            for i, s in enumerate(fused)
        ]


def require_live(face: Any, source: str = "the image") -> Liveness:
    """The face's liveness result; ``spoof_suspected`` when it is judged a replay (``invalid_input`` if not run)."""
    from ..errors import FaceAtlasError, InvalidInputError

    result = face.head(LIVENESS)
    if not isinstance(result, Liveness):
        raise InvalidInputError("invalid_input", f"{source}: the liveness head did not run on this face")
    if not result.live:
        raise FaceAtlasError(
            "spoof_suspected",
            f"{source}: liveness score {result.score:.3f} is below {result.threshold:g} (possible print or screen "
            "replay; a single-frame passive check, not a certified PAD)",
            score=round(result.score, 4), threshold=result.threshold,
        )
    return result
