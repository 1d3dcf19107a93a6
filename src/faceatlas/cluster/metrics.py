"""Agreement of a clustering with true labels (pairwise and BCubed precision, recall and F)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError


@dataclass(frozen=True)
class ClusterMetrics:
    """Agreement of a clustering with true labels: pairwise and BCubed precision/recall/F, and counts."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    clusters: int
    singletons: int
    classes: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def cluster_metrics(predicted: npt.ArrayLike, truth: Sequence[Any]) -> ClusterMetrics:
    """Pairwise and BCubed precision/recall/F of predicted labels (-1 = noise, each its own singleton) vs truth."""
    pred = np.asarray(predicted, np.int64).copy()
    if len(pred) != len(truth):
        raise InvalidInputError("invalid_input", "predicted and true labels must have the same length")
    n = len(pred)
    if n == 0:
        raise InvalidInputError("invalid_input", "no items to score")
    noise = pred < 0
    pred[noise] = pred.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    _, p_idx = np.unique(pred, return_inverse=True)
    _, t_idx = np.unique(np.asarray([str(t) for t in truth]), return_inverse=True)
    joint = p_idx.astype(np.int64) * (int(t_idx.max()) + 1) + t_idx
    _, cell_counts = np.unique(joint, return_counts=True)
    cell_of = np.unique(joint, return_inverse=True)[1]
    p_size = np.bincount(p_idx).astype(np.float64)
    t_size = np.bincount(t_idx).astype(np.float64)
    n_ij = cell_counts.astype(np.float64)

    def pairs(x: npt.NDArray[np.float64]) -> float:
        """Number of unordered pairs inside groups of these sizes."""
        return float((x * (x - 1) / 2).sum())

    tp, pp, tt = pairs(n_ij), pairs(p_size), pairs(t_size)
    pw_p = tp / pp if pp else 1.0
    pw_r = tp / tt if tt else 1.0
    per_item = n_ij[cell_of]
    b_p = float((per_item / p_size[p_idx]).mean())
    b_r = float((per_item / t_size[t_idx]).mean())
    return ClusterMetrics(
        pw_p, pw_r, _f(pw_p, pw_r), b_p, b_r, _f(b_p, b_r),
        clusters=int((p_size >= 2).sum()), singletons=int((p_size == 1).sum()), classes=len(t_size), items=n,
    )


def _f(p: float, r: float) -> float:
    """Harmonic mean of precision and recall."""
    return 2 * p * r / (p + r) if p + r > 0 else 0.0
