"""Age and gender estimates (SSR-Net): opt-in, approximate, never stored with templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import AnalysisModel, FloatArray, box_crops, r

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FaceBatch, Pipeline

AGE, GENDER = "age", "gender"
#: SSR-Net gender output (0 = female, 1 = male) at or above this reads "male". The model leans male: 0.6 was chosen on
#: half of the labelled LFW people (benchmarks/data/lfw_gender.csv, even rows) and checked on the other half.
GENDER_THRESHOLD = 0.6


@dataclass(frozen=True)
class Age:
    """Estimated apparent age in years."""

    years: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"years": round(self.years, 1)}


@dataclass(frozen=True)
class Gender:
    """Estimated gender presentation: ``female`` or ``male`` and a confidence in [0.5, 1] for that label.

    The confidence is the model's output rescaled so that the decision threshold maps to 0.5 (not a calibrated
    probability: on labelled LFW people the label agrees about 78 % of the time, benchmarks/analyze.py gender).
    """

    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"label": self.label, "probability": r(self.probability, 3)}


def ssr_decode(outputs: list[FloatArray], value_range: float) -> FloatArray:
    """SSR-Net's soft stagewise regression: three 3-bin stages with learned shifts and scalings → a value."""
    p1, p2, p3, d1, d2, d3, o1, o2, o3 = (np.asarray(o, np.float64) for o in outputs)
    idx = np.arange(3, dtype=np.float64)
    s1 = 3 * (1 + d1[:, 0])
    s2 = s1 * 3 * (1 + d2[:, 0])
    s3 = s2 * 3 * (1 + d3[:, 0])
    a = ((idx + o1) * p1).sum(1) / s1
    b = ((idx + o2) * p2).sum(1) / s2
    c = ((idx + o3) * p3).sum(1) / s3
    return ((a + b + c) * value_range).astype(np.float32)


class _SsrHead:
    """An SSR-Net model on 1.4x box crops."""

    model_name = ""

    def __init__(self, pipeline: Pipeline) -> None:
        self.model = AnalysisModel(pipeline, self.model_name)

    def values(self, batch: FaceBatch) -> FloatArray:
        """The decoded value of every face."""
        m = self.model
        crops = box_crops(batch, m.setting("crop_scale", 1.4), m.size)
        if not crops:
            return np.zeros((0,), np.float32)
        return ssr_decode(m.run(m.prepare(crops)), m.setting("range", 1.0))


class AgeHead(_SsrHead):
    """The ``age`` head."""

    name = AGE
    model_name = "faceplugin-age"

    def run(self, batch: FaceBatch) -> list[Age]:
        """An :class:`Age` per face."""
        return [Age(float(np.clip(v, 0.0, 100.0))) for v in self.values(batch)]


class GenderHead(_SsrHead):
    """The ``gender`` head."""

    name = GENDER
    model_name = "faceplugin-gender"

    def run(self, batch: FaceBatch) -> list[Gender]:
        """A :class:`Gender` per face."""
        out = []
        for v in self.values(batch):
            p_male = float(np.clip(v, 0.0, 1.0))
            male = p_male >= GENDER_THRESHOLD
            # Probability of the label given, rescaled so that the threshold maps to 0.5.
            if male:
                prob = 0.5 + 0.5 * (p_male - GENDER_THRESHOLD) / (1.0 - GENDER_THRESHOLD)
            else:
                prob = 0.5 + 0.5 * (GENDER_THRESHOLD - p_male) / GENDER_THRESHOLD
            out.append(Gender("male" if male else "female", float(prob)))
        return out
