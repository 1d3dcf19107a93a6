"""One identity per track: per-frame gallery votes and a track-level decision that is re-made as evidence grows.

Two track-level rules are available (``method``):

- ``"template"`` (default): the track's quality-weighted mean embedding (quality = detection score × face-size factor)
  is searched in the gallery; the best person is the identity when its similarity reaches the *track* threshold, else
  the track is unknown. Averaging removes per-frame noise, so genuine track scores sit far above per-frame ones while
  a look-alike's track score stays put; the track threshold is therefore stricter than the per-frame one: by default
  the score reached by only 1 in 10,000 LFW impostor pairs (:data:`TRACK_THRESHOLDS`), and never below the per-frame
  threshold.
- ``"vote"``: every embedded sighting votes for its own per-frame decision (best person at or above the threshold, or
  unknown) with its quality as weight; the heaviest label wins.

Either way ``confidence`` is the quality-weighted share of the track's per-frame votes that agree with the decision,
and ``score`` is the similarity of the track template with the decided person (None for unknown). A decided identity
only changes after a different candidate has won ``persistence`` consecutive re-decisions, except at the end of the
track, where the decision from all the evidence is final.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..types import _r
from .tracker import TrackEvidence

log = logging.getLogger(__name__)

Method = Literal["template", "vote"]
METHODS: tuple[str, ...] = ("template", "vote")
#: Track-level thresholds per embedding model: the cosine that 1 in 10,000 impostor pairs of LFW reach
#: (all 87.3 M cross-person pairs of the 13,233 images; sface: FAR 1e-3 at 0.371, 1e-4 at 0.433, 1e-5 at 0.500).
TRACK_THRESHOLDS: dict[str, float] = {"sface": 0.43}
#: Track threshold for models without a measured value: the per-frame threshold plus this margin.
TRACK_MARGIN = 0.08


def track_threshold(model_id: str, frame_threshold: float) -> float:
    """Default track-level threshold for a model: the measured value, never below the per-frame threshold."""
    base = model_id.removesuffix("+flip")
    return max(frame_threshold, TRACK_THRESHOLDS.get(base, frame_threshold + TRACK_MARGIN))


@dataclass(frozen=True)
class FrameVote:
    """A single face decided alone: the best person if its similarity reaches the threshold, else unknown (None)."""

    person: str | None
    name: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"person": self.person, "name": self.name, "score": _r(self.score, 4)}


@dataclass(frozen=True)
class IdentityDecision:
    """A track's identity (None = unknown), the similarity behind it and the share of frame votes agreeing."""

    person: str | None
    name: str | None
    score: float | None
    confidence: float
    votes: int
    method: str
    anonymous: str | None = None

    @property
    def label(self) -> str | None:
        """What to show: the name (or person id) when known, else the anonymous id (``unknown-3``)."""
        return (self.name or self.person) if self.person is not None else self.anonymous

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        out = {
            "person": self.person,
            "name": self.name,
            "score": None if self.score is None else _r(self.score, 4),
            "confidence": _r(self.confidence, 4),
            "votes": self.votes,
            "method": self.method,
        }
        if self.anonymous is not None:
            out["anonymous"] = self.anonymous
        return out


def sighting_weight(score: float, width: float, height: float, full_size: float = 80.0) -> float:
    """Weight in [0, 1] of one detected face as evidence: detection score × ``min(1, shorter side / full_size px)``."""
    side = max(0.0, min(width, height))
    return float(max(0.0, min(1.0, score)) * min(1.0, side / full_size))


@dataclass
class _Announced:
    """What was last announced for a track, and a challenger's consecutive wins."""

    decision: IdentityDecision
    challenger: str | None = None
    wins: int = 0


@dataclass
class IdentityResolver:
    """Per-frame votes and per-track identities against one gallery collection (``model_id``: who made the vectors)."""

    gallery: Any
    collection: str
    threshold: float
    method: str = "template"
    min_votes: int = 3
    persistence: int = 2
    track_threshold: float | None = None
    model_id: str | None = None
    _names: dict[str, str | None] = field(default_factory=dict)
    _announced: dict[int, _Announced] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError("invalid_input", f"identity method must be one of {', '.join(METHODS)}")
        if self.min_votes < 1 or self.persistence < 1:
            raise InvalidInputError("invalid_input", "min_votes and persistence must be >= 1")
        if self.track_threshold is None:
            self.track_threshold = self.threshold

    def frame_votes(self, vectors: npt.NDArray[np.float32]) -> list[FrameVote]:
        """Decide each face alone (one gallery search per face, batched)."""
        if len(vectors) == 0:
            return []
        out = []
        for cands in self.gallery.search(self.collection, vectors, k=1, model_id=self.model_id):
            if cands and cands[0].score >= self.threshold:
                c = cands[0]
                self._names[c.external_id] = c.name
                out.append(FrameVote(c.external_id, c.name, float(c.score)))
            else:
                out.append(FrameVote(None, None, float(cands[0].score) if cands else 0.0))
        return out

    def decide(self, ev: TrackEvidence, method: str | None = None) -> IdentityDecision:
        """The identity this evidence supports now (no hysteresis)."""
        method = method or self.method
        total = sum(ev.votes.values())
        person: str | None = None
        score: float | None = None
        if method == "vote":
            if ev.votes:
                person = max(ev.votes.items(), key=lambda kv: (kv[1], kv[0] is not None))[0]
            if person is not None:
                score = self._score_for(ev, person)
        else:
            if ev.template is not None:
                cands = self.gallery.search(self.collection, ev.template, k=1, model_id=self.model_id)[0]
                if cands and cands[0].score >= (self.track_threshold or self.threshold):
                    person, score = cands[0].external_id, float(cands[0].score)
                    self._names[person] = cands[0].name
        confidence = ev.votes.get(person, 0.0) / total if total > 0 else 0.0
        return IdentityDecision(person, self._names.get(person) if person else None, score, confidence, ev.vote_count, method)

    def _score_for(self, ev: TrackEvidence, person: str) -> float | None:
        """Similarity of the track template with one person (None when not among the best candidates)."""
        if ev.template is None:
            return None
        for c in self.gallery.search(self.collection, ev.template, k=5, model_id=self.model_id)[0]:
            if c.external_id == person:
                return float(c.score)
        return None

    def update(self, ev: TrackEvidence, final: bool = False) -> IdentityDecision | None:
        """Re-decide a track; return the decision when it is new or changed (always decided when ``final``)."""
        if ev.vote_count < self.min_votes and not final:
            return None
        if ev.vote_count == 0 and ev.template is None:
            return None
        d = self.decide(ev)
        prev = self._announced.get(ev.track)
        if prev is None:
            self._announced[ev.track] = _Announced(d)
            return d
        if d.person == prev.decision.person:
            prev.decision, prev.challenger, prev.wins = d, None, 0
            return None
        if final:
            self._announced[ev.track] = _Announced(d)
            return d
        prev.wins = prev.wins + 1 if prev.challenger == d.person else 1
        prev.challenger = d.person
        if prev.wins >= self.persistence:
            self._announced[ev.track] = _Announced(d)
            return d
        return None

    def current(self, track: int) -> IdentityDecision | None:
        """The identity last announced for a track, if any."""
        a = self._announced.get(track)
        return a.decision if a else None

    def forget(self, track: int) -> None:
        """Drop the state of an ended track."""
        self._announced.pop(track, None)


@dataclass
class HoldingResolver(IdentityResolver):
    """Identities with hysteresis: a named track keeps its name unless strong contrary evidence accumulates.

    A track is named once its mean template reaches the track threshold for a person whose quality-weighted frame
    votes are at least those of any other person. After that it changes only to another person who wins the template
    search AND holds ``switch_ratio`` times the named person's vote weight over the whole track; it never returns to
    unknown (poor or turned-away frames are not evidence of another person). Tracks that stay unknown get a stable
    anonymous id (``unknown-1``, ``unknown-2``, ...) that is kept if they are named later.
    """

    switch_ratio: float = 2.0
    _anon: dict[int, str] = field(default_factory=dict)
    _next_anon: int = 1

    def anonymous_id(self, track: int) -> str:
        """The stable anonymous id of a track (allocated on first use)."""
        if track not in self._anon:
            self._anon[track] = f"unknown-{self._next_anon}"
            self._next_anon += 1
        return self._anon[track]

    def update(self, ev: TrackEvidence, final: bool = False) -> IdentityDecision | None:
        """Re-decide a track under the hysteresis rules; return the decision when it is new or changed."""
        if ev.vote_count < self.min_votes and not final:
            return None
        if ev.vote_count == 0 and ev.template is None:
            return None
        d = self.decide(ev)
        if d.person is not None and any(w > ev.votes.get(d.person, 0.0) for p, w in ev.votes.items() if p is not None):
            d = IdentityDecision(None, None, None, ev.votes.get(None, 0.0) / max(sum(ev.votes.values()), 1e-9),
                                 ev.vote_count, d.method)  # the template and the frame votes disagree: not yet
        prev = self._announced.get(ev.track)
        if prev is None or prev.decision.person is None:
            if d.person is None:
                d = IdentityDecision(None, None, None, d.confidence, d.votes, d.method, self.anonymous_id(ev.track))
                if prev is None:
                    self._announced[ev.track] = _Announced(d)
                    return d
                prev.decision = d
                return None
            anon = self._anon.get(ev.track)
            self._announced[ev.track] = _Announced(IdentityDecision(d.person, d.name, d.score, d.confidence, d.votes,
                                                                    d.method, anon))
            return self._announced[ev.track].decision
        named = prev.decision.person
        total = max(sum(ev.votes.values()), 1e-9)
        if d.person is not None and d.person != named and \
                ev.votes.get(d.person, 0.0) >= self.switch_ratio * max(ev.votes.get(named, 0.0), 1e-9):
            self._announced[ev.track] = _Announced(d)
            return d
        kept = prev.decision
        prev.decision = IdentityDecision(named, kept.name, d.score if d.person == named else kept.score,
                                         ev.votes.get(named, 0.0) / total, ev.vote_count, kept.method, kept.anonymous)
        return None

    def forget(self, track: int) -> None:
        """Drop the state of an ended track (its anonymous id is never reused)."""
        super().forget(track)
        self._anon.pop(track, None)


def frame_vectors(vectors: Sequence[npt.NDArray[np.float32]], dim: int) -> npt.NDArray[np.float32]:
    """Stack embeddings into an (n, dim) matrix (an empty one for no faces)."""
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
