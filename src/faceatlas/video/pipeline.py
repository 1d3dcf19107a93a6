"""Video analysis pipeline: decode → detect → embed → track → identify, with events, annotation and redaction."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError
from ..images import LoadedImage
from ..pipeline import DETECT, EMBEDDING
from ..types import Box, _r
from .bytetrack import AppearanceGates, ByteFaceTracker
from .cuts import SceneCutDetector
from .identity import METHODS, FrameVote, HoldingResolver, IdentityDecision, IdentityResolver, frame_vectors, sighting_weight
from .identity import track_threshold as default_track_threshold
from .render import REDACT_MODES, Overlay, VideoWriter, annotate, redact
from .source import SourceLike, VideoFrame, VideoInfo, VideoSource
from .tracker import TRACKER_KINDS, FaceTracker, Track, TrackerConfig, TrackerInput, TrackEvidence, TrackFace

log = logging.getLogger(__name__)

#: Seconds a lost track's predicted box keeps being blurred in redaction mode (covers missed detections).
REDACT_COAST_SECONDS = 0.5
#: After this many votes a track is re-decided only every ``REDECIDE_EVERY`` new votes (and at its end).
REDECIDE_ALWAYS_UNTIL = 12
REDECIDE_EVERY = 4
#: Gaps longer than this (seconds) split a track's time on screen into separate segments in its summary.
SEGMENT_GAP = 1.0
#: Impostor FAR of the track-level identity threshold when the embedder is calibrated.
TRACK_FAR = 1e-4


def segments(track: Track, gap: float = SEGMENT_GAP) -> list[tuple[float, float]]:
    """Time ranges a track was on screen (sightings closer than ``gap`` seconds are one range)."""
    out: list[tuple[float, float]] = []
    for f in track.faces:
        if out and f.t - out[-1][1] <= gap:
            out[-1] = (out[-1][0], f.t)
        else:
            out.append((f.t, f.t))
    return out


@dataclass(frozen=True, eq=False)
class VideoEvent:
    """A track event: ``track_start``, ``identity`` (decided or changed) or ``track_end`` (with the track summary).

    ``t`` is when it happened in the video: the first sighting for ``track_start``, the deciding frame for
    ``identity`` and the last sighting for ``track_end`` — which is only emitted once the track has stayed lost for
    ``lost_seconds`` (or at the end of the stream), so events are ordered by emission, not strictly by ``t``.
    """

    kind: str
    track: int
    t: float
    frame: int
    box: Box | None = None
    decision: IdentityDecision | None = None
    previous: IdentityDecision | None = None
    summary: Track | None = None
    #: ``track_end`` of an analysis run with ``heads``: each head averaged over the track (faceatlas.analysis.tracks).
    analysis: Mapping[str, Any] | None = None

    @property
    def person(self) -> str | None:
        """The decided person id (None = unknown or not decided)."""
        return self.decision.person if self.decision else None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as one JSON-lines record (``person`` present once decided; null = unknown)."""
        out: dict[str, Any] = {"event": self.kind, "track": self.track, "t": _r(self.t, 3), "frame": self.frame}
        if self.box is not None:
            out["box"] = self.box.to_list()
        if self.kind == "track_end" and self.summary is not None:
            s = self.summary
            out.update(start=_r(s.start, 3), end=_r(s.end, 3), duration=_r(s.duration, 3), sightings=len(s.faces),
                       start_frame=s.start_frame, end_frame=s.end_frame,
                       best_frame=s.best.frame if s.best else None, best_box=s.best.box.to_list() if s.best else None,
                       segments=[[_r(a, 3), _r(b, 3)] for a, b in segments(s)])
            if self.analysis:
                out["analysis"] = dict(self.analysis)
        if self.decision is not None:
            d = self.decision
            out.update(person=d.person, name=d.name, confidence=_r(d.confidence, 4),
                       score=None if d.score is None else _r(d.score, 4), votes=d.votes)
            if d.anonymous is not None:
                out["anonymous"] = d.anonymous
        if self.kind == "identity":
            out["previous"] = self.previous.person if self.previous is not None else None
            out["changed"] = self.previous is not None
        return out


@dataclass(frozen=True, eq=False)
class FrameFace:
    """A face found in an analysed frame: detection, quality, its track (None while tentative) and identities."""

    box: Box
    score: float
    quality: float
    track: int | None
    vote: FrameVote | None
    identity: IdentityDecision | None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        out: dict[str, Any] = {"box": self.box.to_list(), "score": _r(self.score, 4), "quality": _r(self.quality, 4),
                               "track": self.track}
        if self.vote is not None:
            out["frame_person"] = self.vote.person
        if self.identity is not None:
            out["person"] = self.identity.person
        return out


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything one analysed frame produced; ``final`` marks the extra result carrying end-of-stream events."""

    frame: int
    t: float
    faces: tuple[FrameFace, ...]
    coasting: tuple[tuple[int, Box, bool], ...]
    events: tuple[VideoEvent, ...]
    final: bool = False
    cut: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"frame": self.frame, "t": _r(self.t, 3), "faces": [f.to_dict() for f in self.faces],
                "events": [e.to_dict() for e in self.events], "final": self.final, "cut": self.cut}


def evidence_from_track(track: Track) -> TrackEvidence:
    """Rebuild a finished track's identity evidence from its sightings and mean template."""
    votes: dict[str | None, float] = {}
    count = 0
    weight = 0.0
    for f in track.faces:
        w = max(f.quality, 1e-3)
        if f.embedded:
            weight += w
        if f.voted:
            votes[f.vote] = votes.get(f.vote, 0.0) + w
            count += 1
    return TrackEvidence(track.id, track.template, votes, count, weight, len(track.faces))


class VideoAnalyzer:
    """Stateful per-frame analysis: feed frames in time order with :meth:`process`, then call :meth:`finish`.

    ``tracker`` is a :class:`TrackerConfig` or its ``kind`` (``"bytetrack"``, the default, or ``"legacy"``, the
    tracker and identity rules of faceatlas 0.x kept for comparison). ``embedded`` / ``detections`` count templates
    computed and faces detected (the saving of ``TrackerConfig.embed_every``).
    """

    def __init__(
        self,
        atlas: Any,
        gallery: Any = None,
        collection: str | None = None,
        *,
        threshold: float | str | None = None,
        track_threshold: float | None = None,
        method: str = "template",
        tracker: TrackerConfig | str | None = None,
        min_votes: int = 3,
        persistence: int = 2,
        detect_size: int = 640,
        full_quality_size: float = 80.0,
        heads: Sequence[str] = (),
    ) -> None:
        if method not in METHODS:
            raise InvalidInputError("invalid_input", f"identity method must be one of {', '.join(METHODS)}")
        if (gallery is None) != (collection is None):
            raise InvalidInputError("invalid_input", "give both a gallery and a collection (or neither)")
        if isinstance(tracker, str):
            if tracker not in TRACKER_KINDS:
                raise InvalidInputError("invalid_input", f"tracker must be one of {', '.join(TRACKER_KINDS)}")
            tracker = TrackerConfig(kind=tracker)
        self.atlas = atlas
        self.config = tracker or TrackerConfig()
        self.legacy = self.config.kind == "legacy"
        self.full_quality_size = full_quality_size
        # Frames are detected down to the tracker's low score, in one pass at ``detect_size``; the embedder is shared.
        self.pipe = atlas.with_detector(det_score=self.config.low_score, multiscale=False, detect_size=detect_size)
        self.dim = int(atlas.embedder.dim)
        self.gates: AppearanceGates | None = None
        self.cuts: SceneCutDetector | None = None
        self.tracker: FaceTracker | ByteFaceTracker
        if self.legacy:
            self.tracker = FaceTracker(self.config)
        else:
            self.gates = AppearanceGates.from_pipeline(atlas, self.config)
            self.tracker = ByteFaceTracker(self.config, self.gates)
            self.cuts = SceneCutDetector(self.config.cut_threshold)
        self.resolver: IdentityResolver | None = None
        self.threshold: float | None = None
        self.track_threshold: float | None = None
        if gallery is not None and collection is not None:
            gallery.check_contract(collection, atlas.model_id, self.dim)
            point = atlas.operating_point(threshold)
            self.threshold = point.threshold
            self.track_threshold = max(point.threshold, track_threshold) if track_threshold is not None else \
                self._default_track_threshold(point.threshold)
            kind = IdentityResolver if self.legacy else HoldingResolver
            self.resolver = kind(gallery, collection, point.threshold, method, min_votes, persistence,
                                 self.track_threshold, atlas.model_id)
        self.frames = 0
        self.detections = 0
        self.embedded = 0
        self.gallery = gallery
        self.collection = collection
        self._anonymous: dict[str, tuple[int, Any, TrackFace | None]] = {}  # ended unknown: track id, template, best
        self._last: tuple[int, float] = (0, 0.0)
        # Analysis heads (age, pose, liveness...) run on the sightings that are embedded, averaged per track.
        self.heads = tuple(heads)
        self._track_heads: Any = None
        if self.heads:
            from ..analysis.tracks import TrackHeads

            self._track_heads = TrackHeads(self.heads)

    def _default_track_threshold(self, frame_threshold: float) -> float:
        """Track-level threshold: the calibrated ``TRACK_FAR`` score (legacy: the measured table), never below per-frame."""
        if not self.legacy:
            from ..errors import FaceAtlasError

            try:
                return max(frame_threshold, float(self.atlas.operating_point(f"far={TRACK_FAR:g}").threshold))
            except FaceAtlasError:
                pass
        return default_track_threshold(self.atlas.model_id, frame_threshold)

    def process(self, rgb: npt.NDArray[np.uint8], t: float, frame: int) -> FrameResult:
        """Analyse one RGB frame taken at ``t`` seconds; return its faces and the events it caused."""
        cfg = self.config
        self.frames += 1
        self._last = (frame, t)
        image = LoadedImage(rgb, "<video frame>")
        cut = self.cuts is not None and self.cuts.update(rgb) and self.frames > 1
        events: list[VideoEvent] = []
        if cut and isinstance(self.tracker, ByteFaceTracker):
            for tr in self.tracker.scene_cut(t):
                events.extend(self._end(tr))
        dets = [f.detection for f in self.pipe.run(image, DETECT).faces]
        qualities = [sighting_weight(d.score, d.box.width, d.box.height, self.full_quality_size) for d in dets]
        embed_rows = [i for i, d in enumerate(dets) if d.score >= cfg.high_score]
        if isinstance(self.tracker, ByteFaceTracker) and embed_rows:
            named = [tid for tid in self.tracker.active_ids if self._known(tid)] if self.resolver is not None else \
                self.tracker.active_ids
            plan = self.tracker.embed_plan(t, [dets[i].box for i in embed_rows], [qualities[i] for i in embed_rows], named)
            embed_rows = [i for i, p in zip(embed_rows, plan, strict=True) if p]
        self.detections += len(dets)
        self.embedded += len(embed_rows)
        emb_map: dict[int, npt.NDArray[np.float32]] = {}
        votes: dict[int, FrameVote] = {}
        if embed_rows:
            ran = self.pipe.run_heads([(image, dets[i]) for i in embed_rows], (EMBEDDING, *self.heads))
            templates = ran[EMBEDDING]
            vecs = [t.vector for t in templates]
            emb_map = {i: vecs[k] for k, i in enumerate(embed_rows)}
            if self.resolver is not None:
                fv = self.resolver.frame_votes(frame_vectors(vecs, self.dim))
                votes = {i: fv[k] for k, i in enumerate(embed_rows)}
        inputs = [
            TrackerInput(
                d.box,
                d.score,
                emb_map.get(i),
                qualities[i],
                votes[i].person if i in votes else None,
                i in votes,
                votes[i].score if i in votes else 0.0,
            )
            for i, d in enumerate(dets)
        ]
        upd = self.tracker.update(t, frame, inputs)
        if self._track_heads is not None and embed_rows:
            for k, i in enumerate(embed_rows):
                if upd.assignments[i] is not None:
                    self._track_heads.add(upd.assignments[i], {h: ran[h][k] for h in self.heads})
        for tr in upd.started:
            events.append(VideoEvent("track_start", tr.id, tr.start, tr.start_frame, box=tr.faces[0].box))
        if self.resolver is not None:
            for tid in upd.updated:
                ev = self.tracker.evidence(tid)
                if ev is None or not self._due(ev, tid in upd.relinked):
                    continue
                before = self.resolver.current(tid)
                decision = self.resolver.update(ev)
                if decision is not None:
                    events.append(VideoEvent("identity", tid, t, frame, decision=decision, previous=before))
        for tr in upd.ended:
            events.extend(self._end(tr))
        faces = tuple(
            FrameFace(d.box, d.score, qualities[i], upd.assignments[i], votes.get(i), self._identity(upd.assignments[i]))
            for i, d in enumerate(dets)
        )
        coasting = tuple((tid, box, self._known(tid)) for tid, box in self.tracker.predicted_boxes(t, REDACT_COAST_SECONDS))
        return FrameResult(frame, t, faces, coasting, tuple(events), cut=cut)

    def finish(self) -> FrameResult:
        """End of stream: close every track (final identity decisions) and return the last events."""
        frame, t = self._last
        events: list[VideoEvent] = []
        for tr in self.tracker.finish():
            events.extend(self._end(tr))
        return FrameResult(frame, t, (), (), tuple(events), final=True)

    def decide(self, track: Track, method: str | None = None) -> IdentityDecision | None:
        """Identity of a finished track under either rule (for comparing ``template`` and ``vote``)."""
        if self.resolver is None:
            return None
        return self.resolver.decide(evidence_from_track(track), method)

    def promote(self, anonymous: str, person: str, name: str | None = None) -> int:
        """Enrol an ended unknown track (by its anonymous id) as a sample of a gallery person, created when missing."""
        from ..errors import NotFoundError
        from ..types import Template

        found = self._anonymous.get(anonymous)
        if found is None or self.gallery is None or self.collection is None:
            raise NotFoundError(f"no ended unknown track {anonymous!r} in this analysis", track=anonymous)
        track_id, template, best = found
        try:
            self.gallery.get_person(self.collection, person)
        except NotFoundError:
            self.gallery.add_person(self.collection, person, name or person, {"source": "faceatlas video promote"})
        ids = self.gallery.add_samples(self.collection, person, [Template(template, self.atlas.model_id)],
                                       qualities=[best.quality if best else None], boxes=[best.box if best else None])
        self._anonymous.pop(anonymous)
        log.info("promoted %s (track %d) to %s", anonymous, track_id, person)
        return int(ids[0])

    def _identity(self, track: int | None) -> IdentityDecision | None:
        """The identity announced for a track (None when untracked, undecided or without a gallery)."""
        if track is None or self.resolver is None:
            return None
        return self.resolver.current(track)

    def _known(self, track: int) -> bool:
        """Whether a track is currently identified as a gallery person."""
        d = self.resolver.current(track) if self.resolver is not None else None
        return d is not None and d.person is not None

    @staticmethod
    def _due(ev: TrackEvidence, relinked: bool) -> bool:
        """Whether a track with this much evidence is re-decided now."""
        return relinked or ev.vote_count <= REDECIDE_ALWAYS_UNTIL or ev.vote_count % REDECIDE_EVERY == 0

    def _end(self, track: Track) -> list[VideoEvent]:
        """Events closing a track: a last identity change if the final decision differs, then ``track_end``."""
        out: list[VideoEvent] = []
        decision: IdentityDecision | None = None
        if self.resolver is not None:
            before = self.resolver.current(track.id)
            final = self.resolver.update(evidence_from_track(track), final=True)
            if final is not None:
                out.append(VideoEvent("identity", track.id, track.end, track.end_frame, decision=final, previous=before))
            decision = self.resolver.current(track.id)
            self.resolver.forget(track.id)
            if decision is not None and decision.person is None and decision.anonymous and track.template is not None:
                self._anonymous[decision.anonymous] = (track.id, track.template, track.best)
        summary = track
        if decision is not None:
            from dataclasses import replace

            summary = replace(track, identity=decision.person, name=decision.name, decided=True,
                              confidence=decision.confidence, score=decision.score)
        analysis = self._track_heads.pop(track.id) if self._track_heads is not None else None
        out.append(VideoEvent("track_end", track.id, track.end, track.end_frame, decision=decision, summary=summary,
                              analysis=analysis))
        return out


def _overlays(result: FrameResult, mode: str | None = None) -> list[Overlay]:
    """Drawable faces of a frame (plus coasting tracks' predicted boxes)."""
    out = []
    for f in result.faces:
        known = f.identity is not None and f.identity.person is not None
        if f.identity is None:
            label = "?" if f.track is not None else f"{f.score:.2f}"
        else:
            label = f.identity.label or "unknown"
        out.append(Overlay(f.box, f.track, label, known))
    if mode is not None:
        for tid, box, known_track in result.coasting:
            out.append(Overlay(box, tid, "", known_track))
    return out


def _open_gallery(gallery: Any) -> tuple[Any, bool]:
    """A Gallery object from a Gallery or a location (opened without creating it); whether we opened it."""
    if gallery is None or not isinstance(gallery, (str, os.PathLike)):
        return gallery, False
    from ..gallery import Gallery

    return Gallery.open(os.fspath(gallery), create=False), True


def analyze_frames(
    source: SourceLike,
    atlas: Any = None,
    gallery: Any = None,
    collection: str | None = None,
    *,
    fps: float | None = 10.0,
    max_seconds: float | None = None,
    annotate_to: str | os.PathLike[str] | None = None,
    redact_mode: str | None = None,
    redact_to: str | os.PathLike[str] | None = None,
    progress: Callable[[VideoFrame, VideoInfo], None] | None = None,
    on_open: Callable[[VideoInfo], None] | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> Iterator[FrameResult]:
    """Analyse a video source frame by frame; yields one :class:`FrameResult` per analysed frame, then a final one.

    ``annotate_to`` writes the analysed frames with boxes, track ids and names; ``redact_to`` writes them with every
    face (``redact_mode='all'``) or every face not identified as a gallery person (``'unknown'``) blurred. Both
    outputs run at the analysis rate (only analysed frames are written, so every written face was seen by the
    detector). Setting ``stop`` ends the analysis early but cleanly (open tracks are closed with their events).
    Remaining keyword options go to :class:`VideoAnalyzer`.
    """
    if redact_mode is not None and redact_mode not in REDACT_MODES:
        raise InvalidInputError("invalid_input", f"redaction mode must be one of {', '.join(REDACT_MODES)}")
    if (redact_mode is None) != (redact_to is None):
        raise InvalidInputError("invalid_input", "redaction needs both a mode (all|unknown) and an output file")
    if atlas is None:
        from ..facade import FaceAtlas

        atlas = FaceAtlas()
    with VideoSource(source) as src:
        info = src.info
        if on_open is not None:
            on_open(info)
        gal, owned = _open_gallery(gallery)
        writers: list[tuple[VideoWriter, str | None]] = []
        try:
            analyzer = VideoAnalyzer(atlas, gal, collection, **options)
            rate = min(fps, info.fps) if fps and info.fps else (fps or info.fps or 10.0)
            if annotate_to is not None:
                writers.append((VideoWriter(annotate_to, rate, info.width, info.height), None))
            if redact_to is not None:
                writers.append((VideoWriter(redact_to, rate, info.width, info.height), redact_mode))
            for vf in src.frames(fps, max_seconds):
                if stop is not None and stop.is_set():
                    break
                result = analyzer.process(vf.rgb, vf.t, vf.index)
                for writer, mode in writers:
                    writer.write(_render(vf.rgb, result, mode))
                if progress is not None:
                    progress(vf, info)
                yield result
            yield analyzer.finish()
        finally:
            for writer, _ in writers:
                writer.close()
            if owned:
                gal.close()


def _render(rgb: npt.NDArray[np.uint8], result: FrameResult, mode: str | None) -> npt.NDArray[np.uint8]:
    """The annotated (mode None) or redacted frame."""
    if mode is None:
        return annotate(rgb, _overlays(result), header=f"t={result.t:7.2f}s")
    faces = _overlays(result, mode)
    boxes = [o.box for o in faces if mode == "all" or not o.known]
    return redact(rgb, boxes)


def analyze(
    source: SourceLike,
    atlas: Any = None,
    gallery: Any = None,
    collection: str | None = None,
    **options: Any,
) -> Iterator[VideoEvent]:
    """Analyse a video source and yield its track events in order (see :func:`analyze_frames` for the options)."""
    for result in analyze_frames(source, atlas, gallery, collection, **options):
        yield from result.events
