"""Analysis heads averaged over a video track: one summary per head from every analysed sighting of the track."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .common import r

#: Heads a track summary can average (landmarks68 move with the face and are not averaged).
TRACK_HEADS: tuple[str, ...] = ("age", "gender", "expression", "pose", "eyes", "liveness")


class TrackHeads:
    """Per-track lists of head results, reduced to averages when the track ends; not thread-safe (one analyser)."""

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = tuple(h for h in heads if h in TRACK_HEADS)
        self._seen: dict[int, dict[str, list[Any]]] = {}

    def add(self, track: int, results: Mapping[str, Any]) -> None:
        """Record one sighting's head results for ``track``."""
        per = self._seen.setdefault(track, {})
        for head in self.heads:
            if results.get(head) is not None:
                per.setdefault(head, []).append(results[head])

    def pop(self, track: int) -> dict[str, Any] | None:
        """The averaged results of a finished track (None when no sighting was analysed), forgetting it."""
        per = self._seen.pop(track, None)
        if not per:
            return None
        return {head: {**_REDUCERS[head](items), "sightings": len(items)} for head, items in per.items()}


def _age(items: list[Any]) -> dict[str, Any]:
    """Mean estimated age."""
    return {"years": round(float(np.mean([a.years for a in items])), 1)}


def _gender(items: list[Any]) -> dict[str, Any]:
    """Mean probability of "female" over the sightings, then the label it points to."""
    female = float(np.mean([g.probability if g.label == "female" else 1.0 - g.probability for g in items]))
    label = "female" if female >= 0.5 else "male"
    return {"label": label, "probability": r(female if label == "female" else 1.0 - female, 3)}


def _expression(items: list[Any]) -> dict[str, Any]:
    """Mean probability per expression, and the most probable one."""
    labels = list(items[0].probabilities)
    mean = {k: float(np.mean([e.probabilities[k] for e in items])) for k in labels}
    return {"label": max(mean, key=lambda k: mean[k]), "probabilities": {k: r(v, 3) for k, v in mean.items()}}


def _pose(items: list[Any]) -> dict[str, Any]:
    """Mean yaw, pitch and roll."""
    return {k: round(float(np.mean([getattr(p, k) for p in items])), 1) for k in ("yaw", "pitch", "roll")}


def _eyes(items: list[Any]) -> dict[str, Any]:
    """Mean open probability per eye and the share of sightings with both eyes open."""
    return {"left_open": r(float(np.mean([e.left_open for e in items])), 3),
            "right_open": r(float(np.mean([e.right_open for e in items])), 3),
            "open_share": r(float(np.mean([bool(e.open) for e in items])), 3)}


def _liveness(items: list[Any]) -> dict[str, Any]:
    """Mean fused liveness score, the decision on it at the head's threshold, and the share of live sightings."""
    score = float(np.mean([x.score for x in items]))
    threshold = float(items[0].threshold)
    return {"score": r(score), "live": score >= threshold, "threshold": threshold,
            "live_share": r(float(np.mean([bool(x.live) for x in items])), 3)}


_REDUCERS = {"age": _age, "gender": _gender, "expression": _expression, "pose": _pose, "eyes": _eyes,
             "liveness": _liveness}


def describe(analysis: Mapping[str, Any]) -> str:
    """One human-readable line of a track's averaged heads (``faceatlas video --heads`` without ``--json``)."""
    parts = []
    for head, v in analysis.items():
        if head == "age":
            parts.append(f"age≈{v['years']:.0f}")
        elif head in ("gender", "expression"):
            parts.append(f"{head}={v['label']}")
        elif head == "pose":
            parts.append(f"yaw={v['yaw']:+.0f}° pitch={v['pitch']:+.0f}°")
        elif head == "eyes":
            parts.append(f"eyes open {100 * v['open_share']:.0f}%")
        elif head == "liveness":
            parts.append(f"live={'yes' if v['live'] else 'NO'} ({v['score']:.2f})")
    n = max((v.get("sightings", 0) for v in analysis.values()), default=0)
    return f"{', '.join(parts)} (mean of {n} sightings; estimates)"
