"""Open a video file, webcam or network stream with OpenCV and hand out frames at a chosen analysis rate.

Files are sampled deterministically on their own timeline: a frame is analysed when its timestamp reaches the next
due time (every ``1/fps`` seconds); frames in between are only grabbed, never converted. Live sources (webcam index,
``rtsp://``/``http://`` URLs) are read by a background thread that keeps only the newest frame, so when analysis is
slower than the stream, frames are dropped instead of queueing up (frame skipping by time budget); their timestamps
are wall-clock seconds since the stream opened.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError
from ..types import _r

log = logging.getLogger(__name__)

SourceKind = Literal["file", "camera", "stream"]
SourceLike = str | int | os.PathLike[str]

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
DEFAULT_OPEN_TIMEOUT = 10.0


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source once opened: kind, size, native frame rate, frame count and duration."""

    source: str
    kind: SourceKind
    width: int
    height: int
    fps: float | None
    frames: int | None
    duration: float | None

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {
            "source": self.source,
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "fps": None if self.fps is None else _r(self.fps, 3),
            "frames": self.frames,
            "duration": None if self.duration is None else _r(self.duration, 3),
        }


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame: its index in the source, its time in seconds and its RGB pixels."""

    index: int
    t: float
    rgb: npt.NDArray[np.uint8]


def classify(source: SourceLike) -> tuple[SourceKind, str | int]:
    """Tell a webcam index, a stream URL and a file path apart."""
    if isinstance(source, bool):
        raise InvalidInputError("invalid_input", "a video source is a path, a URL or a webcam index")
    if isinstance(source, int):
        return "camera", source
    text = os.fspath(source)
    if text.strip().isdigit():
        return "camera", int(text.strip())
    if text.lower().startswith(URL_SCHEMES):
        return "stream", text
    return "file", text


def _redact_url(url: str) -> str:
    """A URL without its user:password part, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _empty_iso_media(path: Path) -> bool:
    """True for an MP4/MOV file whose top-level boxes are intact but hold no media data (a zero-length video)."""
    import struct

    try:
        size_total = path.stat().st_size
        with path.open("rb") as fh:
            pos, types, payload = 0, [], 0
            for _ in range(4096):
                if pos + 8 > size_total:
                    break
                fh.seek(pos)
                size, kind = struct.unpack(">I4s", fh.read(8))
                header = 8
                if size == 1:
                    size, header = struct.unpack(">Q", fh.read(8))[0], 16
                elif size == 0:
                    size = size_total - pos
                if size < header or pos + size > size_total:
                    return False  # damaged or truncated: not "empty"
                types.append(kind)
                if kind in (b"mdat", b"moof"):
                    payload += size - header
                pos += size
    except (OSError, struct.error):
        return False
    return bool(types) and types[0] == b"ftyp" and pos == size_total and payload == 0


class VideoSource:
    """An opened video source; iterate :meth:`frames` to get RGB frames at the analysis rate. Use as a context manager."""

    def __init__(self, source: SourceLike, *, open_timeout: float = DEFAULT_OPEN_TIMEOUT) -> None:
        import cv2

        kind, target = classify(source)
        self._cv2 = cv2
        self.kind: SourceKind = kind
        label = f"camera {target}" if kind == "camera" else _redact_url(str(target)) if kind == "stream" else str(target)
        self.label = label
        if kind == "file":
            path = Path(str(target))
            if not path.exists():
                raise FaceAtlasError("video_not_found", f"no such file: {path}", source=str(path))
            if path.is_dir():
                raise FaceAtlasError("video_unreadable", f"{path} is a directory, not a video", source=str(path))
            if path.stat().st_size == 0:
                raise FaceAtlasError("video_empty", f"{path}: the file has no bytes", source=str(path))
            cap = cv2.VideoCapture(str(path))
        elif kind == "camera":
            cap = cv2.VideoCapture(int(target))
        else:
            ms = int(open_timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if kind == "file" and _empty_iso_media(Path(str(target))):
                raise FaceAtlasError("video_empty", f"{label}: the video has no frames", source=label)
            what = {"file": "not a video OpenCV can decode (or damaged)", "camera": "cannot open this camera",
                    "stream": "cannot connect to or decode this stream"}[kind]
            raise FaceAtlasError("video_unreadable", f"{label}: {what}", source=label)
        self._cap: Any = cap
        self._lock = threading.Lock()
        self._closed = False
        self._stop = False
        self._reader: threading.Thread | None = None
        self._timeout = open_timeout
        native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = native if math.isfinite(native) and 0.5 <= native <= 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind == "file" else 0
        frames = count if count > 0 else None
        self._first: Any = None
        ok, bgr = cap.read()
        if not ok or bgr is None or bgr.size == 0:
            cap.release()
            self._closed = True
            if kind == "file":
                raise FaceAtlasError("video_empty", f"{label}: the video has no decodable frames", source=label)
            raise FaceAtlasError("video_unreadable", f"{label}: no frame received", source=label)
        self._first = bgr
        height, width = bgr.shape[:2]
        duration = frames / fps if frames and fps else None
        self.info = VideoInfo(label, kind, int(width), int(height), fps, frames, duration)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader thread (if any) and release the capture (idempotent)."""
        self._stop = True
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=self._timeout + 1.0)
            if reader.is_alive():
                log.warning("%s: the reader thread did not stop; leaving the capture open", self.label)
                return
        with self._lock:
            if not self._closed:
                self._closed = True
                self._cap.release()

    def frames(self, fps: float | None = None, max_seconds: float | None = None) -> Iterator[VideoFrame]:
        """Frames to analyse: about ``fps`` per second of video (every frame when None), up to ``max_seconds``."""
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise InvalidInputError("invalid_input", "the analysis rate (fps) must be a positive number")
        if self.kind == "file":
            return self._file_frames(fps, max_seconds)
        return self._live_frames(fps, max_seconds)

    def _to_rgb(self, bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """BGR (or grey) OpenCV frame → contiguous RGB."""
        cv2 = self._cv2
        if bgr.ndim == 2:
            return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB))
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _file_frames(self, fps: float | None, max_seconds: float | None) -> Iterator[VideoFrame]:
        """Deterministic sampling on the file's own timeline (grab every frame, convert only the ones analysed)."""
        cv2 = self._cv2
        native = self.info.fps
        step = 1.0 / fps if fps else 0.0
        due = 0.0
        index = 0
        first = self._first
        self._first = None
        while True:
            if index == 0 and first is not None:
                ok, bgr = True, first
            else:
                if self._closed or not self._cap.grab():
                    break
                ok, bgr = True, None
            t = index / native if native else float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
            if max_seconds is not None and t > max_seconds + 1e-9:
                return
            if t + 1e-6 >= due:
                if bgr is None:
                    ok, bgr = self._cap.retrieve()
                if ok and bgr is not None and bgr.size:
                    yield VideoFrame(index, t, self._to_rgb(bgr))
                due = max(due + step, t + step * 0.5) if step else 0.0
            index += 1
        if self.info.frames and index < int(0.95 * self.info.frames):
            log.warning("%s: decoding stopped at frame %d of %d", self.label, index, self.info.frames)

    def _live_frames(self, fps: float | None, max_seconds: float | None) -> Iterator[VideoFrame]:
        """Newest-frame-wins reading of a live source, analysed at most ``fps`` times per second."""
        latest: dict[str, Any] = {"frame": None, "seq": 0, "done": False, "taken": 0}
        cond = threading.Condition()
        start = time.monotonic()
        first = self._first
        self._first = None

        def reader() -> None:
            """Read frames until the source ends or is closed, keeping only the newest (the very first is never lost)."""
            seq = 0
            if first is not None:
                with cond:
                    latest["frame"], latest["seq"] = (0, 0.0, first), 1
                    cond.notify_all()
                    while latest["taken"] < 1 and not self._stop:  # the consumer has not even started: wait for it
                        cond.wait(timeout=0.5)
                seq = 1
            while not self._stop:
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    break
                with cond:
                    latest["frame"], latest["seq"] = (seq, time.monotonic() - start, bgr), seq + 1
                    cond.notify_all()
                seq += 1
            with cond:
                latest["done"] = True
                cond.notify_all()

        thread = threading.Thread(target=reader, name="faceatlas-video-reader", daemon=True)
        self._reader = thread
        thread.start()
        step = 1.0 / fps if fps else 0.0
        due = 0.0
        seen = 0
        try:
            while True:
                with cond:
                    while latest["seq"] == seen and not latest["done"]:
                        cond.wait(timeout=0.5)
                    if latest["seq"] == seen and latest["done"]:
                        return
                    seen = latest["taken"] = latest["seq"]
                    index, t, bgr = latest["frame"]
                    cond.notify_all()
                if max_seconds is not None and t > max_seconds:
                    return
                if t + 1e-6 < due:
                    continue
                due = max(due + step, t) if step else 0.0
                yield VideoFrame(index, t, self._to_rgb(bgr))
        finally:
            self.close()
