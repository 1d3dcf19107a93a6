"""ByteTrack-style multi-face tracker: two score stages, IoU + appearance cost, motion prediction, lost tracks.

The tracker knows nothing about images or galleries: each frame it receives detections (box, score, optional
L2-normalised embedding, quality and optional per-frame identity vote) and answers which track each detection
belongs to. Per frame:

1. **Stage 1** — high-score detections against every live track (tentative, active and lost). A pair is allowed when
   the detection is spatially plausible for the track's constant-velocity prediction (IoU or normalised centre
   distance, with a search radius that grows while the track is lost) and, when both sides carry embeddings, the
   cosine with the track's quality-weighted mean embedding is not below ``veto_sim`` (a long-term check that a few
   wrong frames cannot drag along). When that cosine reaches ``reid_sim``, a lost track may take a detection anywhere
   in the frame and an active one within ``reach`` search radii (fast faces outrun the motion model). Cost =
   1 − (w·closeness + (1 − w)·cosine) — the cosine being the better of the recent (EMA) and mean embeddings — plus
   ``lost_penalty`` for lost tracks so a person's live track is preferred; solved with the Hungarian method (SciPy)
   or greedily.
2. **Stage 2** — low-score detections against the active tracks left over, by IoU alone (ByteTrack's recovery of
   blurred / partly occluded faces).
3. Unmatched high-score detections open *tentative* tracks; a tentative track is confirmed after ``min_hits``
   matched frames. At confirmation it is compared (mean embedding) with the lost tracks: if one is similar enough it
   is re-linked — the person keeps the old track id (re-entry). Unmatched active tracks become *lost*; a lost track
   ends ``lost_seconds`` after it was last seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..types import Box, FloatArray, _r

log = logging.getLogger(__name__)

_BLOCKED = 1e6
#: Tracker implementations selectable with ``TrackerConfig.kind``.
TRACKER_KINDS: tuple[str, ...] = ("bytetrack", "legacy")


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds and time constants of :class:`FaceTracker` (times in seconds, similarities are cosines)."""

    high_score: float = 0.6
    low_score: float = 0.3
    new_track_score: float = 0.6
    min_hits: int = 2
    iou_gate: float = 0.1
    low_iou: float = 0.4
    center_gate: float = 1.0
    reach: float = 3.0
    appearance_weight: float = 0.5
    veto_sim: float = 0.25
    reid_sim: float = 0.45
    lost_penalty: float = 0.15
    lost_seconds: float = 20.0
    max_predict_seconds: float = 1.0
    velocity_smoothing: float = 0.5
    feature_momentum: float = 0.8
    #: ``"bytetrack"`` (Kalman motion, calibrated appearance gates, scene cuts: :mod:`faceatlas.video.bytetrack`) or
    #: ``"legacy"`` (this module's tracker with the raw-cosine gates ``veto_sim`` / ``reid_sim`` above).
    kind: str = "bytetrack"
    #: Appearance gates of the ``bytetrack`` tracker as impostor false-accept rates of the embedder's calibration:
    #: a face below the ``veto_far`` score cannot join a track, a lost track resumes only at ``resume_far`` and a new
    #: track continues a lost one (re-identification) only at ``reid_far``.
    veto_far: float = 0.1
    resume_far: float = 1e-3
    reid_far: float = 1e-4
    #: Seconds a lost track is still predicted by its motion; afterwards only re-identification can resume it.
    coast_seconds: float = 1.0
    #: Templates kept per track (its appearance gallery, several views of the face).
    gallery_size: int = 10
    #: A face on a clear, already identified track is embedded every ``embed_every`` frames, or sooner when its
    #: quality beats the track's best by the factor ``embed_gain`` (1 = embed every face in every frame).
    embed_every: int = 5
    embed_gain: float = 1.15
    #: Scene-cut sensitivity (colour-histogram distance between consecutive frames, 0..1); 0 turns detection off.
    cut_threshold: float = 0.45

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise InvalidInputError("invalid_input", "tracker scores need 0 <= low_score <= high_score <= 1")
        if self.new_track_score < self.high_score:
            raise InvalidInputError("invalid_input", "new_track_score must be >= high_score")
        if self.min_hits < 1:
            raise InvalidInputError("invalid_input", "min_hits must be >= 1")
        if self.lost_seconds < 0 or self.max_predict_seconds < 0:
            raise InvalidInputError("invalid_input", "lost_seconds and max_predict_seconds must be >= 0")
        if not 0.0 <= self.appearance_weight <= 1.0:
            raise InvalidInputError("invalid_input", "appearance_weight must be within [0, 1]")
        if self.kind not in TRACKER_KINDS:
            raise InvalidInputError("invalid_input", f"tracker kind must be one of {', '.join(TRACKER_KINDS)}")
        if not all(0.0 < f < 1.0 for f in (self.veto_far, self.resume_far, self.reid_far)):
            raise InvalidInputError("invalid_input", "veto_far, resume_far and reid_far must be within (0, 1)")
        if self.embed_every < 1 or self.embed_gain < 1.0 or self.gallery_size < 1:
            raise InvalidInputError("invalid_input", "embed_every and gallery_size must be >= 1, embed_gain >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Serialise every parameter."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class TrackerInput:
    """One detection handed to the tracker, with what the pipeline knows about it.

    ``vote`` is the per-frame identity decision for this face (a person id, or None for "unknown"); it only counts
    when ``voted`` is true (a gallery was searched with this face's embedding). ``vote_score`` is that search's best
    similarity.
    """

    box: Box
    score: float
    embedding: FloatArray | None = None
    quality: float = 1.0
    vote: str | None = None
    voted: bool = False
    vote_score: float = 0.0


@dataclass(frozen=True)
class TrackFace:
    """One sighting of a tracked face: frame, time, box, detection score, quality, and the per-frame vote if any."""

    frame: int
    t: float
    box: Box
    score: float
    quality: float
    embedded: bool
    vote: str | None = None
    voted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Serialise for JSON (no embedding: templates are biometric data)."""
        out: dict[str, Any] = {
            "frame": self.frame,
            "t": _r(self.t, 3),
            "box": self.box.to_list(),
            "score": _r(self.score, 4),
            "quality": _r(self.quality, 4),
        }
        if self.voted:
            out["vote"] = self.vote
        return out


@dataclass(frozen=True, eq=False)
class Track:
    """A face followed through a video: id, time span, sightings, best sighting and (when decided) its identity."""

    id: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    faces: tuple[TrackFace, ...]
    best: TrackFace | None
    template: FloatArray | None = None
    identity: str | None = None
    name: str | None = None
    decided: bool = False
    confidence: float | None = None
    score: float | None = None

    @property
    def span(self) -> tuple[float, float]:
        """(first seen, last seen) in seconds."""
        return (self.start, self.end)

    @property
    def duration(self) -> float:
        """Seconds between first and last sighting."""
        return self.end - self.start

    def to_dict(self, include_faces: bool = False) -> dict[str, Any]:
        """Serialise; the sightings only when asked and the aggregated template never."""
        out: dict[str, Any] = {
            "track": self.id,
            "start": _r(self.start, 3),
            "end": _r(self.end, 3),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "sightings": len(self.faces),
            "best_frame": self.best.frame if self.best else None,
            "best_box": self.best.box.to_list() if self.best else None,
        }
        if self.decided:
            out.update(person=self.identity, name=self.name, confidence=_conf(self.confidence), score=_conf(self.score))
        if include_faces:
            out["faces"] = [f.to_dict() for f in self.faces]
        return out


def _conf(x: float | None) -> float | None:
    """Round an optional float to 4 decimals."""
    return None if x is None else _r(x, 4)


@dataclass(frozen=True, eq=False)
class TrackEvidence:
    """What a track has gathered towards an identity: mean template, quality-weighted votes and counts."""

    track: int
    template: FloatArray | None
    votes: dict[str | None, float]
    vote_count: int
    embedded_weight: float
    sightings: int


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame changed: each input's track (None = tentative/unmatched), tracks started, ended and resumed.

    ``relinked`` lists lost tracks that got a face again this frame (after an occlusion or a re-entry).
    """

    assignments: tuple[int | None, ...]
    started: tuple[Track, ...]
    ended: tuple[Track, ...]
    relinked: tuple[int, ...]
    updated: tuple[int, ...]


def _to_cxcywh(box: Box) -> npt.NDArray[np.float64]:
    """Box as (centre x, centre y, width, height)."""
    return np.array([(box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2, box.width, box.height], np.float64)


def _from_cxcywh(v: npt.NDArray[np.float64]) -> Box:
    """Box from (centre x, centre y, width, height)."""
    cx, cy, w, h = (float(x) for x in v)
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _unit(v: npt.NDArray[Any]) -> FloatArray | None:
    """L2-normalised float32 copy, or None for a zero vector."""
    n = float(np.linalg.norm(v))
    return None if n == 0.0 or not math.isfinite(n) else (np.asarray(v, np.float32) / n).astype(np.float32)


@dataclass(eq=False)
class _State:
    """Mutable state of one track inside the tracker."""

    key: int
    state: str  # tentative | active | lost
    box: npt.NDArray[np.float64]
    last_t: float
    velocity: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    has_velocity: bool = False
    hits: int = 1
    id: int = 0
    feature: FloatArray | None = None
    feature_sum: npt.NDArray[np.float64] | None = None
    weight_sum: float = 0.0
    votes: dict[str | None, float] = field(default_factory=dict)
    vote_count: int = 0
    faces: list[TrackFace] = field(default_factory=list)

    def predict(self, t: float, horizon: float) -> Box:
        """Constant-velocity prediction of the box at time ``t`` (extrapolating at most ``horizon`` seconds)."""
        dt = min(max(0.0, t - self.last_t), horizon)
        v = self.box + (self.velocity * dt if self.has_velocity else 0.0)
        v[2] = max(v[2], 0.5 * self.box[2])
        v[3] = max(v[3], 0.5 * self.box[3])
        return _from_cxcywh(v)

    def mean_feature(self) -> FloatArray | None:
        """Quality-weighted mean embedding of every sighting (normalised)."""
        return None if self.feature_sum is None else _unit(self.feature_sum)

    def similarity(self, emb: FloatArray | None) -> float | None:
        """Best cosine of an embedding with the track's recent (EMA) and long-term (mean) features."""
        if emb is None or self.feature is None:
            return None
        sims = [float(self.feature @ emb)]
        mean = self.mean_feature()
        if mean is not None:
            sims.append(float(mean @ emb))
        return max(sims)

    def mean_similarity(self, emb: FloatArray | None) -> float:
        """Cosine of an embedding with the track's mean embedding (-1 when either is missing)."""
        mean = self.mean_feature()
        return -1.0 if emb is None or mean is None else float(mean @ emb)

    def add(self, det: TrackerInput, t: float, frame: int, cfg: TrackerConfig, matched: bool) -> None:
        """Absorb a detection: motion update, appearance update and a new sighting."""
        new = _to_cxcywh(det.box)
        if matched:
            dt = t - self.last_t
            if dt > 1e-6:
                measured = (new - self.box) / dt
                a = cfg.velocity_smoothing
                self.velocity = measured if not self.has_velocity else a * measured + (1 - a) * self.velocity
                self.has_velocity = True
            self.hits += 1
        self.box = new
        self.last_t = t
        if det.embedding is not None:
            emb = np.asarray(det.embedding, np.float32)
            w = max(float(det.quality), 1e-3)
            if self.feature is None:
                self.feature = emb.copy()
            else:
                m = cfg.feature_momentum
                mixed = _unit(m * self.feature + (1 - m) * emb)
                self.feature = mixed if mixed is not None else emb.copy()
            self.feature_sum = (np.zeros(emb.shape, np.float64) if self.feature_sum is None else self.feature_sum) + w * emb
            self.weight_sum += w
        if det.voted:
            w = max(float(det.quality), 1e-3)
            self.votes[det.vote] = self.votes.get(det.vote, 0.0) + w
            self.vote_count += 1
        self.faces.append(
            TrackFace(frame, t, det.box, float(det.score), float(det.quality), det.embedding is not None, det.vote, det.voted)
        )

    def absorb(self, other: _State) -> None:
        """Take over a newer track's sightings and motion (re-linking a re-appearing person)."""
        self.faces.extend(other.faces)
        self.box, self.last_t = other.box, other.last_t
        self.velocity, self.has_velocity = other.velocity, other.has_velocity
        if other.feature is not None:
            self.feature = other.feature
        if other.feature_sum is not None:
            self.feature_sum = other.feature_sum if self.feature_sum is None else self.feature_sum + other.feature_sum
        self.weight_sum += other.weight_sum
        for label, w in other.votes.items():
            self.votes[label] = self.votes.get(label, 0.0) + w
        self.vote_count += other.vote_count
        self.hits += other.hits
        self.state = "active"

    def evidence(self) -> TrackEvidence:
        """Running identity evidence (cheap: no copy of the sightings)."""
        return TrackEvidence(self.id, self.mean_feature(), dict(self.votes), self.vote_count, self.weight_sum, len(self.faces))

    def snapshot(self) -> Track:
        """Frozen view of this track."""
        embedded = [f for f in self.faces if f.embedded]
        best = max(embedded or self.faces, key=lambda f: f.quality) if self.faces else None
        first, last = self.faces[0], self.faces[-1]
        return Track(self.id, first.t, last.t, first.frame, last.frame, tuple(self.faces), best, self.mean_feature())


def assign(cost: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one matching of rows to columns, ignoring blocked pairs (Hungarian, greedy without SciPy)."""
    if cost.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - exercised through _greedy directly in the tests
        return _greedy(cost)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _BLOCKED / 2]


def _greedy(cost: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """Greedy matching: repeatedly take the cheapest allowed pair whose row and column are both free."""
    order = np.argsort(cost, axis=None, kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for flat in order.tolist():
        r, c = divmod(int(flat), cost.shape[1])
        if cost[r, c] >= _BLOCKED / 2:
            break
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            out.append((r, c))
    return out


class FaceTracker:
    """Multi-face tracker over a stream of per-frame detections (see the module docstring for the algorithm)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_State] = []
        self._next_key = 1
        self._next_id = 1
        self._last_t: float | None = None

    @property
    def active_ids(self) -> list[int]:
        """Ids of confirmed tracks seen in the latest frame."""
        return [s.id for s in self._tracks if s.state == "active"]

    @property
    def lost_ids(self) -> list[int]:
        """Ids of confirmed tracks currently lost (kept for re-identification)."""
        return [s.id for s in self._tracks if s.state == "lost"]

    def track(self, track_id: int) -> Track | None:
        """Snapshot of a live confirmed track by id."""
        for s in self._tracks:
            if s.id == track_id and s.state != "tentative":
                return s.snapshot()
        return None

    def evidence(self, track_id: int) -> TrackEvidence | None:
        """Identity evidence of a live confirmed track by id."""
        for s in self._tracks:
            if s.id == track_id and s.state != "tentative":
                return s.evidence()
        return None

    def predicted_boxes(self, t: float, within: float) -> list[tuple[int, Box]]:
        """Predicted boxes of confirmed tracks lost for at most ``within`` seconds (for redaction between detections)."""
        cfg = self.config
        return [
            (s.id, s.predict(t, cfg.max_predict_seconds))
            for s in self._tracks
            if s.state == "lost" and t - s.last_t <= within
        ]

    def update(self, t: float, frame: int, detections: Sequence[TrackerInput]) -> TrackerUpdate:
        """Associate one frame's detections with the tracks; return assignments and tracks started/ended."""
        cfg = self.config
        if self._last_t is not None and t < self._last_t:
            raise InvalidInputError("invalid_input", f"frame times must not go backwards ({t} < {self._last_t})")
        self._last_t = t
        dets = list(detections)
        owner: list[_State | None] = [None] * len(dets)
        high = [i for i, d in enumerate(dets) if d.score >= cfg.high_score]
        low = [i for i, d in enumerate(dets) if cfg.low_score <= d.score < cfg.high_score]

        # Stage 1: high-score detections against every live track.
        live = list(self._tracks)
        for r, c in assign(self._cost(live, [dets[i] for i in high], t, stage=1)):
            owner[high[c]] = live[r]
        taken = {id(s) for s in owner if s is not None}
        # Stage 2: low-score detections against the active tracks left over (IoU only).
        rest = [s for s in self._tracks if s.state == "active" and id(s) not in taken]
        for r, c in assign(self._cost(rest, [dets[i] for i in low], t, stage=2)):
            owner[low[c]] = rest[r]

        matched: set[int] = set()
        relinked: list[int] = []
        for i, s in enumerate(owner):
            if s is not None:
                s.add(dets[i], t, frame, cfg, matched=True)
                if s.state == "lost":
                    s.state = "active"
                    relinked.append(s.id)
                matched.add(id(s))

        ended: list[Track] = []
        survivors: list[_State] = []
        for s in self._tracks:
            if id(s) in matched:
                survivors.append(s)
            elif s.state == "tentative":
                continue  # a tentative track that misses a frame is dropped
            elif s.state == "active":
                s.state = "lost"
                survivors.append(s)
            elif t - s.last_t > cfg.lost_seconds:
                ended.append(s.snapshot())
            else:
                survivors.append(s)
        self._tracks = survivors

        for i in high:
            if owner[i] is None and dets[i].score >= cfg.new_track_score:
                s = _State(self._next_key, "tentative", _to_cxcywh(dets[i].box), t)
                self._next_key += 1
                s.add(dets[i], t, frame, cfg, matched=False)
                self._tracks.append(s)
                owner[i] = s

        started: list[Track] = []
        for s in list(self._tracks):
            if s.state == "tentative" and s.hits >= cfg.min_hits:
                target = self._relink_target(s)
                if target is not None:
                    target.absorb(s)
                    self._tracks.remove(s)
                    owner = [target if o is s else o for o in owner]
                    relinked.append(target.id)
                    log.info("track %d re-linked at t=%.2fs", target.id, t)
                else:
                    s.state = "active"
                    s.id = self._next_id
                    self._next_id += 1
                    started.append(s.snapshot())
        assignments = tuple(o.id if o is not None and o.state != "tentative" else None for o in owner)
        updated = tuple(sorted({o.id for o in owner if o is not None and o.state != "tentative"}))
        return TrackerUpdate(assignments, tuple(started), tuple(ended), tuple(relinked), updated)

    def finish(self) -> list[Track]:
        """End every confirmed track (end of stream) and return them; tentative tracks are dropped."""
        out = [s.snapshot() for s in self._tracks if s.state != "tentative"]
        self._tracks = []
        return out

    # -- internals ----------------------------------------------------------------------------------------------

    def _relink_target(self, new: _State) -> _State | None:
        """The lost track a newly confirmed one continues (most similar mean embedding above ``reid_sim``), if any."""
        feat = new.mean_feature()
        if feat is None:
            return None
        first_t = new.faces[0].t
        best, best_sim = None, self.config.reid_sim
        for s in self._tracks:
            if s.state != "lost" or s.last_t >= first_t:
                continue
            mean = s.mean_feature()
            sim = None if mean is None else float(mean @ feat)
            if sim is not None and sim >= best_sim:
                best, best_sim = s, sim
        return best

    def _cost(self, tracks: list[_State], dets: list[TrackerInput], t: float, stage: int) -> npt.NDArray[np.float64]:
        """Association cost matrix (tracks × detections), ``_BLOCKED`` where a pair is not allowed."""
        cfg = self.config
        cost = np.full((len(tracks), len(dets)), _BLOCKED)
        if not tracks or not dets:
            return cost
        w = cfg.appearance_weight
        for r, s in enumerate(tracks):
            pred = s.predict(t, cfg.max_predict_seconds)
            pcx, pcy = pred.center
            size = max(1.0, (pred.width + pred.height) / 2)
            lost = s.state == "lost"
            lost_for = max(0.0, t - s.last_t) if lost else 0.0
            radius = cfg.center_gate * (1.0 + 1.5 * min(lost_for, 2.0))
            penalty = cfg.lost_penalty if lost else 0.0
            for c, d in enumerate(dets):
                iou = pred.iou(d.box)
                vetoed = d.embedding is not None and s.feature is not None and s.mean_similarity(d.embedding) < cfg.veto_sim
                if stage == 2:
                    if iou >= cfg.low_iou and not vetoed:
                        cost[r, c] = 1.0 - iou + penalty
                    continue
                dcx, dcy = d.box.center
                dist = math.hypot(dcx - pcx, dcy - pcy) / size
                spatial = iou >= cfg.iou_gate or dist <= radius
                near = max(iou, 0.5 * max(0.0, 1.0 - dist / max(radius, 1e-6)))
                sim = s.similarity(d.embedding)
                if sim is None:
                    if spatial:
                        cost[r, c] = 1.0 - near + penalty
                elif vetoed:  # judged on the long-term mean, which a few wrong frames cannot drag along
                    continue
                elif spatial:
                    cost[r, c] = 1.0 - ((1 - w) * near + w * sim) + penalty
                elif (lost or dist <= cfg.reach * radius) and (reid := s.mean_similarity(d.embedding)) >= cfg.reid_sim:
                    # re-identification by appearance (the robust mean embedding only, not the recent one):
                    # anywhere for a lost track, within reach for an active one
                    cost[r, c] = 1.0 - w * reid + penalty
        return cost
