"""Passive single-frame liveness (presentation-attack detection): a deterrent, not a certified PAD.

Two small anti-spoofing networks look at the face with context (2.7x the box): MiniFASNetV2
(Silent-Face-Anti-Spoofing) and faceplugin's MiniFASNet-SE-like model. Their probabilities of "real" are averaged;
the face counts as live when the average reaches the operating point (see :data:`DEFAULT_THRESHOLD`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import AnalysisModel, box_crops, r, softmax

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

LIVENESS = "liveness"
#: The models fused by default (probability of "real", averaged).
LIVENESS_MODELS: tuple[str, ...] = ("minifasnet-v2", "faceplugin-liveness")
#: Operating point on the fused score, chosen by benchmarks/analyze.py on LFW (bona fide) and staged replays:
#: BPCER and APCER at this point are in README ("Face analysis").
DEFAULT_THRESHOLD = 0.5


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
            crops = box_crops(batch, m.extra("crop_scale", 2.7), m.size)
            probs = softmax(m.run(m.prepare(crops))[0]) if crops else np.zeros((0, 3), np.float32)
            out[m.name] = probs[:, int(m.extra("live_class", 1))]
        return out

    def run(self, batch: FaceBatch) -> list[Liveness]:
        """A :class:`Liveness` per face."""
        if not len(batch):
            return []
        per_model = self.scores(batch)
        fused = np.mean(np.stack(list(per_model.values())), axis=0)
        return [
            Liveness(float(s), bool(s >= self.threshold), self.threshold, self.model_id,
                     {k: float(v[i]) for k, v in per_model.items()})
            for i, s in enumerate(fused)
        ]
