"""Face analysis heads: liveness, age, gender, head pose, eyes, expression and 68 landmarks.

Every head is opt-in (ask for it by name in ``FaceRequest(heads=...)`` or ``FaceAtlas.analyze``), gives an
estimate, and is never stored with templates. Importing this package registers the heads with the pipeline (cheap:
models load on first use).
"""

from __future__ import annotations

from ..pipeline import register_head
from .attributes import AGE, GENDER, Age, AgeHead, Gender, GenderHead
from .expression import EXPRESSION, EXPRESSION_LABELS, Expression, ExpressionHead
from .landmarks import EYES, LANDMARKS68, Eyes, EyesHead, Landmarks68, LandmarksHead
from .liveness import DEFAULT_THRESHOLD as LIVENESS_THRESHOLD
from .liveness import LIVENESS, Liveness, LivenessHead
from .pose import POSE, Pose, PoseHead

#: Every analysis head by name, in the order ``faceatlas analyze`` runs them by default.
ANALYSIS_HEADS: dict[str, type] = {
    AGE: AgeHead,
    GENDER: GenderHead,
    EXPRESSION: ExpressionHead,
    POSE: PoseHead,
    EYES: EyesHead,
    LIVENESS: LivenessHead,
    LANDMARKS68: LandmarksHead,
}
#: What ``analyze`` runs when no heads are named (landmarks are on request: they are 68 points per face).
DEFAULT_HEADS: tuple[str, ...] = (AGE, GENDER, EXPRESSION, POSE, EYES, LIVENESS)

for _name, _cls in ANALYSIS_HEADS.items():
    register_head(_name, _cls)

__all__ = [
    "AGE",
    "ANALYSIS_HEADS",
    "DEFAULT_HEADS",
    "EXPRESSION",
    "EXPRESSION_LABELS",
    "EYES",
    "GENDER",
    "LANDMARKS68",
    "LIVENESS",
    "LIVENESS_THRESHOLD",
    "POSE",
    "Age",
    "Expression",
    "Eyes",
    "Gender",
    "Landmarks68",
    "Liveness",
    "Pose",
]
