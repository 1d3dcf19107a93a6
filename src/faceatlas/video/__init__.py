"""Faces in video: decode (file, webcam, stream), detect, embed, track and identify, with events and redaction.

Entry points: :func:`analyze` (an iterator of :class:`VideoEvent`), :func:`analyze_frames` (per-frame results) and
:class:`VideoAnalyzer` (feed frames yourself). Tracking lives in :mod:`faceatlas.video.tracker` and needs no OpenCV.
"""

from __future__ import annotations

from .identity import FrameVote, IdentityDecision, IdentityResolver, quality
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
    "quality",
]
