"""Faces in video: decode (file, webcam, stream), detect, embed, track and identify, with events and redaction.

Entry points: :func:`analyze` (an iterator of :class:`VideoEvent`), :func:`analyze_frames` (per-frame results) and
:class:`VideoAnalyzer` (feed frames yourself). The default tracker is :class:`ByteFaceTracker` (Kalman motion,
calibrated appearance gates, scene cuts; :mod:`faceatlas.video.bytetrack`); ``TrackerConfig(kind="legacy")`` keeps
the earlier :class:`FaceTracker`. Trackers need no OpenCV.
"""

from __future__ import annotations

from typing import Any

from .bytetrack import AppearanceGates, ByteFaceTracker
from .cuts import SceneCutDetector
from .identity import FrameVote, HoldingResolver, IdentityDecision, IdentityResolver, sighting_weight
from .pipeline import (
    FrameFace,
    FrameResult,
    VideoAnalyzer,
    VideoEvent,
    analyze,
    analyze_frames,
    evidence_from_track,
    segments,
)
from .source import VideoFrame, VideoInfo, VideoSource
from .tracker import FaceTracker, Track, TrackerConfig, TrackerInput, TrackerUpdate, TrackEvidence, TrackFace

__all__ = [
    "AppearanceGates",
    "ByteFaceTracker",
    "FaceTracker",
    "FrameFace",
    "FrameResult",
    "FrameVote",
    "HoldingResolver",
    "IdentityDecision",
    "IdentityResolver",
    "SceneCutDetector",
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
    "segments",
    "sighting_weight",
]


def __getattr__(name: str) -> Any:
    """Old names still importable, with a deprecation warning (``quality`` is now :func:`sighting_weight`)."""
    if name == "quality":
        import warnings

        warnings.warn("faceatlas.video.quality is renamed faceatlas.video.sighting_weight", DeprecationWarning, stacklevel=2)
        return sighting_weight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
