"""Facial expression: seven classes with probabilities (an estimate of what the face shows, not of a feeling)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .common import AnalysisModel, box_crops, r, softmax

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

EXPRESSION = "expression"
#: Output order of faceplugin's fr_expression.onnx: the FER2013 order. The package does not document it; it was
#: established by looking at the LFW photos each class scores highest on (benchmarks/analyze.py --expression-sheets).
EXPRESSION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class Expression:
    """The most probable expression and every class's probability."""

    label: str
    probabilities: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "probabilities", MappingProxyType(dict(self.probabilities)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"label": self.label, "probabilities": {k: r(v, 3) for k, v in self.probabilities.items()}}


class ExpressionHead:
    """The ``expression`` head: an RGB 224×224 crop of 1.2× the box, values /255."""

    name = EXPRESSION

    def __init__(self, pipeline: Pipeline) -> None:
        self.model = AnalysisModel(pipeline, "faceplugin-expression")

    def run(self, batch: FaceBatch) -> list[Expression]:
        """An :class:`Expression` per face."""
        m = self.model
        crops = box_crops(batch, m.setting("crop_scale", 1.2), m.size)
        if not crops:
            return []
        probs = softmax(m.run(m.prepare(crops))[0])
        out = []
        for p in probs:
            dist = {label: float(v) for label, v in zip(EXPRESSION_LABELS, p, strict=True)}
            out.append(Expression(EXPRESSION_LABELS[int(p.argmax())], dist))
        return out
