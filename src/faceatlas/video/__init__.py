"""Faces in video: decode (file, webcam, stream), detect, embed, track and identify, with events and redaction.

Entry points: :func:`analyze` (an iterator of :class:`VideoEvent`), :func:`analyze_frames` (per-frame results) and
:class:`VideoAnalyzer` (feed frames yourself). Tracking lives in :mod:`faceatlas.video.tracker` and needs no OpenCV.
"""

from __future__ import annotations

from typing import Any

from .identity import FrameVote, IdentityDecision, IdentityResolver, sighting_weight
from .pipeline import FrameFace, FrameResult, VideoAnalyzer, VideoEvent, analyze, analyze_frames, evidence_from_track
from .source import VideoFrame, VideoInfo, VideoSource
from .tracker import FaceTracker, Track, TrackerConfig, TrackerInput, TrackerUpdate, TrackEvidence, TrackFace

__all__ = [
    "FaceTracker",
    "FrameFace",
    "FrameResult",
    "FrameVote",
    "IdentityDecision",
    "IdentityResolver",
    "Track",
    "TrackEvidence",
    "TrackFace",
    "TrackerConfig",
    "TrackerInput",
    "TrackerUpdate",
    "VideoAnalyzer",
    "VideoEvent",
    "VideoFrame",
    "VideoInfo",
    "VideoSource",
    "analyze",
    "analyze_frames",
    "evidence_from_track",
    "sighting_weight",
]


def __getattr__(name: str) -> Any:
    """Old names still importable, with a deprecation warning (``quality`` is now :func:`sighting_weight`)."""
    if name == "quality":
        import warnings

        warnings.warn("faceatlas.video.quality is renamed faceatlas.video.sighting_weight", DeprecationWarning, stacklevel=2)
        return sighting_weight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
