"""Default face tracker: Kalman motion, ByteTrack's two score rounds, per-track appearance galleries, scene cuts.

Per frame (:meth:`ByteFaceTracker.update`):

1. **Round 1** — high-score detections against tentative, active and *coasting* tracks (lost for at most
   ``coast_seconds``). A pair must be spatially plausible for the track's Kalman prediction (IoU, or centre distance
   within a radius that grows while the track is lost, similar size) and, when both sides carry templates, the face
   must not look unlike every view the track has seen (cosine below the calibrated ``veto`` gate). A lost track only
   resumes on a face that looks like it (``resume`` gate), never on motion alone, and never on a face the gallery
   gives to another person than the one the track's frame votes name. Cost = 1 − closeness − appearance bonus (+ a
   penalty for lost tracks); Hungarian assignment.
2. **Round 2** — low-score detections against the active tracks left over, by IoU alone (blurred or partly hidden
   faces keep their track).
3. Unmatched high-score detections open tentative tracks, confirmed after ``min_hits`` consecutive frames. At
   confirmation a track is compared with the lost and dormant ones: when its mean template reaches the strict
   ``reid`` gate with one of them and their frame votes name the same person (or nobody), it continues that track
   (re-identification after an occlusion or a short absence).
4. Tracks not seen for ``coast_seconds`` become *dormant* (motion forgotten, only re-identification can resume them)
   and end ``lost_seconds`` after they were last seen. A scene cut (:meth:`scene_cut`) ends every track at once, so
   no track can slide, or be re-linked, onto whoever is at its place in the next shot.

All appearance gates are cosines derived from the embedder's calibration (impostor false-accept rates, see
:class:`AppearanceGates`), never fixed numbers shared by all models.

Written here rather than taken from PyPI: ``boxmot`` is AGPL-3.0 and pulls PyTorch; ``norfair`` (BSD) pins
``numpy<2`` and the unmaintained ``filterpy``; ``supervision``'s ByteTrack (MIT) has no appearance input, no
re-identification and no scene cuts, and brings matplotlib, av and requests. The motion and association parts are
small (NumPy + SciPy's Hungarian solver, already a ``video`` dependency).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..types import Box, FloatArray
from .kalman import BoxKalman
from .tracker import Track, TrackerConfig, TrackerInput, TrackerUpdate, TrackEvidence, TrackFace, _unit, assign

log = logging.getLogger(__name__)

_BLOCKED = 1e6
#: A detection is "clearly" a track's when their IoU reaches this and no other track's prediction overlaps it more
#: than ``_CLAIM_OTHER`` (such faces may skip the embedder).
_CLAIM_IOU = 0.5
_CLAIM_OTHER = 0.15
#: Largest size ratio between a prediction and a detection for a motion match.
_SIZE_RATIO = 2.0
#: Seconds a new track that looks like a lost named one, but has no name from its own frame votes yet, stays
#: tentative (gathering votes) before it is confirmed as a new track.
_RELINK_WAIT = 1.0
#: Templates a track needs before its faces may skip the embedder: once named, and while not (yet) named.
_MIN_EMBEDDED = 3
_MIN_EMBEDDED_UNNAMED = 12


@dataclass(frozen=True)
class AppearanceGates:
    """Cosine gates of one embedder: ``veto`` (below: not this track), ``resume`` (lost track) and ``reid`` (re-link)."""

    veto: float
    resume: float
    reid: float
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.veto <= self.resume <= self.reid:
            raise InvalidInputError("invalid_input", "appearance gates need veto <= resume <= reid")

    @classmethod
    def from_pipeline(cls, pipe: Any, config: TrackerConfig) -> AppearanceGates:
        """Gates at the configured impostor FARs of the pipeline's calibration (model default threshold without one)."""
        from ..errors import FaceAtlasError

        try:
            veto, resume, reid = (float(pipe.operating_point(f"far={f:g}").threshold)
                                  for f in (config.veto_far, config.resume_far, config.reid_far))
            return cls(veto, resume, reid, f"far={config.veto_far:g}/{config.resume_far:g}/{config.reid_far:g}")
        except FaceAtlasError:
            base = float(pipe.operating_point().threshold)
            log.warning("no calibration for %s: appearance gates from its default threshold %.3f", pipe.model_id, base)
            return cls(base - 0.15, base, base + 0.05, "model default threshold")

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"veto": round(self.veto, 4), "resume": round(self.resume, 4), "reid": round(self.reid, 4),
                "source": self.source}


@dataclass(eq=False)
class _Trk:
    """Mutable state of one track."""

    key: int
    state: str  # tentative | active | lost | dormant
    kf: BoxKalman
    last_t: float
    first_t: float
    id: int = 0
    hits: int = 1
    gallery: list[FloatArray] = field(default_factory=list)
    feature_sum: npt.NDArray[np.float64] | None = None
    weight_sum: float = 0.0
    votes: dict[str | None, float] = field(default_factory=dict)
    vote_count: int = 0
    embedded: int = 0
    since_embed: int = 0
    best_quality: float = 0.0
    faces: list[TrackFace] = field(default_factory=list)

    def label(self) -> str | None:
        """The person most of the track's frame-vote weight names (None: unknown, undecided or no gallery)."""
        named = [(w, p) for p, w in self.votes.items() if p is not None]
        if not named:
            return None
        w, person = max(named)
        return person if w >= 0.5 * sum(self.votes.values()) else None

    def mean(self) -> FloatArray | None:
        """Quality-weighted mean template (normalised)."""
        return None if self.feature_sum is None else _unit(self.feature_sum)

    def similarity(self, emb: FloatArray | None) -> float | None:
        """Best cosine of a template with the track's views (its gallery and mean); None when either side has none."""
        if emb is None or not self.gallery:
            return None
        best = float(np.max(np.stack(self.gallery) @ emb))
        mean = self.mean()
        return best if mean is None else max(best, float(mean @ emb))

    def add(self, det: TrackerInput, t: float, frame: int, cfg: TrackerConfig, matched: bool) -> None:
        """Absorb a detection: motion, appearance gallery, votes and a new sighting."""
        if matched:
            self.kf.update(det.box, t, cfg.max_predict_seconds)
            self.hits += 1
        self.last_t = t
        if det.embedding is not None:
            emb = np.asarray(det.embedding, np.float32)
            w = max(float(det.quality), 1e-3)
            self.gallery.append(emb)
            if len(self.gallery) > cfg.gallery_size:
                self.gallery.pop(0)
            self.feature_sum = (np.zeros(emb.shape, np.float64) if self.feature_sum is None else self.feature_sum) + w * emb
            self.weight_sum += w
            self.embedded += 1
            self.since_embed = 0
            self.best_quality = max(self.best_quality, float(det.quality))
        else:
            self.since_embed += 1
        if det.voted:
            w = max(float(det.quality), 1e-3)
            self.votes[det.vote] = self.votes.get(det.vote, 0.0) + w
            self.vote_count += 1
        self.faces.append(TrackFace(frame, t, det.box, float(det.score), float(det.quality), det.embedding is not None,
                                    det.vote, det.voted))

    def absorb(self, other: _Trk, cfg: TrackerConfig) -> None:
        """Continue with a newer track's sightings, motion and evidence (re-identification)."""
        self.faces.extend(other.faces)
        self.kf, self.last_t = other.kf, other.last_t
        self.gallery = (self.gallery + other.gallery)[-cfg.gallery_size:]
        if other.feature_sum is not None:
            self.feature_sum = other.feature_sum if self.feature_sum is None else self.feature_sum + other.feature_sum
        self.weight_sum += other.weight_sum
        for label, w in other.votes.items():
            self.votes[label] = self.votes.get(label, 0.0) + w
        self.vote_count += other.vote_count
        self.embedded += other.embedded
        self.since_embed = other.since_embed
        self.best_quality = max(self.best_quality, other.best_quality)
        self.hits += other.hits
        self.state = "active"

    def evidence(self) -> TrackEvidence:
        """Running identity evidence."""
        return TrackEvidence(self.id, self.mean(), dict(self.votes), self.vote_count, self.weight_sum, len(self.faces))

    def snapshot(self) -> Track:
        """Frozen view of this track."""
        embedded = [f for f in self.faces if f.embedded]
        best = max(embedded or self.faces, key=lambda f: f.quality) if self.faces else None
        first, last = self.faces[0], self.faces[-1]
        return Track(self.id, first.t, last.t, first.frame, last.frame, tuple(self.faces), best, self.mean())


class ByteFaceTracker:
    """Multi-face tracker (see the module docstring); same interface as :class:`~faceatlas.video.tracker.FaceTracker`."""

    def __init__(self, config: TrackerConfig | None = None, gates: AppearanceGates | None = None) -> None:
        self.config = config or TrackerConfig()
        self.gates = gates
        self._tracks: list[_Trk] = []
        self._next_key = 1
        self._next_id = 1
        self._last_t: float | None = None
        self.cuts = 0

    @property
    def active_ids(self) -> list[int]:
        """Ids of confirmed tracks seen in the latest frame."""
        return [s.id for s in self._tracks if s.state == "active"]

    @property
    def lost_ids(self) -> list[int]:
        """Ids of confirmed tracks not seen in the latest frame (kept for re-identification)."""
        return [s.id for s in self._tracks if s.state in ("lost", "dormant")]

    def _confirmed(self, track_id: int) -> _Trk | None:
        """A live confirmed track by id."""
        return next((s for s in self._tracks if s.id == track_id and s.state != "tentative"), None)

    def track(self, track_id: int) -> Track | None:
        """Snapshot of a live confirmed track by id."""
        s = self._confirmed(track_id)
        return s.snapshot() if s else None

    def evidence(self, track_id: int) -> TrackEvidence | None:
        """Identity evidence of a live confirmed track by id."""
        s = self._confirmed(track_id)
        return s.evidence() if s else None

    def predicted_boxes(self, t: float, within: float) -> list[tuple[int, Box]]:
        """Predicted boxes of confirmed tracks lost for at most ``within`` seconds (redaction between detections)."""
        horizon = self.config.max_predict_seconds
        return [(s.id, s.kf.predict_at(t, horizon)) for s in self._tracks if s.state == "lost" and t - s.last_t <= within]

    def scene_cut(self, t: float) -> list[Track]:
        """A new shot starts: end every confirmed track (returned) and drop the tentative ones."""
        self.cuts += 1
        ended = [s.snapshot() for s in self._tracks if s.state != "tentative"]
        self._tracks = []
        log.info("scene cut at t=%.2fs: %d tracks ended", t, len(ended))
        return ended

    def embed_plan(self, t: float, boxes: Sequence[Box], qualities: Sequence[float],
                   named: Collection[int] = ()) -> list[bool]:
        """Which detections need a template now: all but faces clearly on an established track (see ``embed_every``).

        A track is established after ``_MIN_EMBEDDED`` templates when its id is in ``named`` (identified as a person),
        else after ``_MIN_EMBEDDED_UNNAMED`` (an unknown face keeps gathering evidence a while longer).
        """
        cfg = self.config
        live = [s for s in self._tracks if s.state != "dormant"]
        preds = [s.kf.predict_at(t, cfg.max_predict_seconds) for s in live]
        out = []
        for box, q in zip(boxes, qualities, strict=True):
            ious = [p.iou(box) for p in preds]
            owners = [k for k, v in enumerate(ious) if v >= _CLAIM_IOU and live[k].state == "active"]
            others = [k for k, v in enumerate(ious) if v >= _CLAIM_OTHER]
            if len(owners) != 1 or len(others) != 1:
                out.append(True)
                continue
            s = live[owners[0]]
            need = _MIN_EMBEDDED if s.id in named else _MIN_EMBEDDED_UNNAMED
            out.append(s.embedded < need or s.since_embed + 1 >= cfg.embed_every or q > cfg.embed_gain * s.best_quality)
        return out

    def update(self, t: float, frame: int, detections: Sequence[TrackerInput]) -> TrackerUpdate:
        """Associate one frame's detections with the tracks; return assignments and tracks started/ended."""
        cfg = self.config
        if self._last_t is not None and t < self._last_t:
            raise InvalidInputError("invalid_input", f"frame times must not go backwards ({t} < {self._last_t})")
        self._last_t = t
        dets = list(detections)
        owner: list[_Trk | None] = [None] * len(dets)
        high = [i for i, d in enumerate(dets) if d.score >= cfg.high_score]
        low = [i for i, d in enumerate(dets) if cfg.low_score <= d.score < cfg.high_score]

        pool = [s for s in self._tracks if s.state in ("tentative", "active")
                or (s.state == "lost" and t - s.last_t <= cfg.coast_seconds)]
        for r, c in assign(self._cost(pool, [dets[i] for i in high], t)):
            owner[high[c]] = pool[r]
        taken = {id(s) for s in owner if s is not None}
        rest = [s for s in self._tracks if s.state == "active" and id(s) not in taken]
        for r, c in assign(self._low_cost(rest, [dets[i] for i in low], t)):
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
        ended = self._age(t, matched)
        for i in high:
            if owner[i] is None and dets[i].score >= cfg.new_track_score:
                s = _Trk(self._next_key, "tentative", BoxKalman(dets[i].box, t), t, t)
                self._next_key += 1
                s.add(dets[i], t, frame, cfg, matched=False)
                self._tracks.append(s)
                owner[i] = s
        started: list[Track] = []
        for s in list(self._tracks):
            if s.state != "tentative" or s.hits < cfg.min_hits:
                continue
            target, pending = self._relink_target(s)
            if target is None and pending and t - s.first_t < _RELINK_WAIT:
                continue  # may be a lost named person whose votes have not named them yet
            if target is not None:
                target.absorb(s, cfg)
                self._tracks.remove(s)
                owner = [target if o is s else o for o in owner]
                relinked.append(target.id)
                log.info("track %d re-identified at t=%.2fs", target.id, t)
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

    def _age(self, t: float, matched: set[int]) -> list[Track]:
        """Move unmatched tracks along tentative → dropped, active → lost → dormant → ended; return the ended ones."""
        cfg = self.config
        ended: list[Track] = []
        survivors: list[_Trk] = []
        for s in self._tracks:
            if id(s) in matched:
                survivors.append(s)
                continue
            if s.state == "tentative":
                continue
            if s.state == "active":
                s.state = "lost"
            if s.state == "lost" and t - s.last_t > cfg.coast_seconds:
                s.state = "dormant"
                s.kf.stop()
            if s.state == "dormant" and t - s.last_t > cfg.lost_seconds:
                ended.append(s.snapshot())
            else:
                survivors.append(s)
        self._tracks = survivors
        return ended

    def _relink_target(self, new: _Trk) -> tuple[_Trk | None, bool]:
        """The lost or dormant track a newly confirmed one continues, if any; and whether one may match later.

        A match needs mean templates at or above ``reid`` and the same frame-vote label (the same person, or nobody).
        "Later" is when a lost track labelled as a person looks alike but the new track's votes name nobody yet.
        """
        feat = new.mean()
        if feat is None or self.gates is None:
            return None, False
        best, best_sim, pending = None, self.gates.reid, False
        label = new.label()
        for s in self._tracks:
            if s.state not in ("lost", "dormant") or s.last_t >= new.first_t:
                continue
            mean = s.mean()
            sim = -1.0 if mean is None else float(mean @ feat)
            if s.label() != label:
                pending = pending or (label is None and sim >= self.gates.reid)
                continue
            if sim >= best_sim:
                best, best_sim = s, sim
        return best, pending

    def _appearance(self, s: _Trk, d: TrackerInput) -> float | None:
        """Appearance bonus in [0, 1] of a pair, None when it is vetoed; 0 without templates on both sides."""
        sim = s.similarity(d.embedding)
        g = self.gates
        if s.state == "lost" and s.gallery and (sim is None or g is None or sim < g.resume):
            return None  # a lost track only resumes on a face that looks like it
        if s.state == "lost" and d.voted and s.label() is not None and d.vote != s.label():
            return None  # ... and that the gallery does not give to someone else
        if sim is None or g is None:
            return 0.0
        if sim < g.veto:
            return None
        return min(1.0, max(0.0, (sim - g.veto) / max(g.reid - g.veto, 1e-6)))

    def _cost(self, tracks: list[_Trk], dets: list[TrackerInput], t: float) -> npt.NDArray[np.float64]:
        """Round-1 cost matrix (tracks × detections), ``_BLOCKED`` where a pair is not allowed."""
        cfg = self.config
        cost = np.full((len(tracks), len(dets)), _BLOCKED)
        for r, s in enumerate(tracks):
            pred = s.kf.predict_at(t, cfg.max_predict_seconds)
            pcx, pcy = pred.center
            size = max(1.0, (pred.width + pred.height) / 2)
            lost_for = max(0.0, t - s.last_t) if s.state == "lost" else 0.0
            radius = cfg.center_gate * (1.0 + 1.5 * min(lost_for, 2.0))
            penalty = cfg.lost_penalty if s.state == "lost" else 0.0
            for c, d in enumerate(dets):
                bonus = self._appearance(s, d)
                if bonus is None:
                    continue
                iou = pred.iou(d.box)
                dcx, dcy = d.box.center
                dist = math.hypot(dcx - pcx, dcy - pcy) / size
                ratio = max(d.box.height, 1.0) / max(pred.height, 1.0)
                similar_size = 1.0 / _SIZE_RATIO <= ratio <= _SIZE_RATIO
                near = max(iou, 0.5 * max(0.0, 1.0 - dist / max(radius, 1e-6)))
                if similar_size and (iou >= cfg.iou_gate or dist <= radius):
                    cost[r, c] = 1.0 - near - 0.5 * bonus + penalty
                elif bonus >= 1.0 and s.state != "tentative" and dist <= cfg.reach * radius:
                    cost[r, c] = 1.0 - 0.5 * bonus + penalty  # fast motion: the face clearly looks like the track
        return cost

    def _low_cost(self, tracks: list[_Trk], dets: list[TrackerInput], t: float) -> npt.NDArray[np.float64]:
        """Round-2 cost matrix: IoU with the prediction only (low-score faces rarely carry templates)."""
        cfg = self.config
        cost = np.full((len(tracks), len(dets)), _BLOCKED)
        for r, s in enumerate(tracks):
            pred = s.kf.predict_at(t, cfg.max_predict_seconds)
            for c, d in enumerate(dets):
                iou = pred.iou(d.box)
                if iou >= cfg.low_iou and self._appearance(s, d) is not None:
                    cost[r, c] = 1.0 - iou
        return cost
