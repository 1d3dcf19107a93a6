"""``faceatlas video``: track faces in a video file, camera or stream and identify each track."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import FaceAtlasError, InvalidInputError
from .common import EXIT_ERROR, EXIT_OK, DetectorOpt, EmbedderOpt, GalleryOpt, emit, fail, make_atlas, require_gallery


def _quiet_video_backend() -> None:
    """Keep OpenCV/FFmpeg from printing decoder chatter on stderr (errors are reported once, by us)."""
    from .. import config

    config.quiet_opencv()
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # pragma: no cover - very old OpenCV builds
        pass


@contextmanager
def _graceful_interrupt() -> Iterator[threading.Event]:
    """First Ctrl-C sets the event (finish cleanly, closing open tracks); a second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        """Ask the analysis to stop, and restore the default handler for a second Ctrl-C."""
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _FrameBar:
    """A progress bar over a video file's frames on stderr (only when stderr is a terminal and the length is known)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def open(self, info: Any) -> None:
        """Start the bar for a file whose frame count is known."""
        if info.kind != "file" or not info.frames or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("video"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("video", total=info.frames)

    def update(self, frame: Any, info: Any) -> None:
        """Move the bar to the frame just analysed."""
        if self._bar is not None:
            self._bar.update(self._task, completed=frame.index + 1)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _describe(event: Any) -> str:
    """Human-readable line for one video event."""
    t = f"{event.t:8.2f}s"
    d = event.decision
    who = (d.anonymous if d is not None else None) or "unknown"
    if d is not None and d.person is not None:
        who = d.person + (f" ({d.name})" if d.name and d.name != d.person else "")
    if event.kind == "track_start":
        return f"{t}  track {event.track} started  box {[round(v) for v in event.box.to_list()]}"
    if event.kind == "identity":
        detail = f"score {d.score:.3f}, " if d is not None and d.score is not None else ""
        conf = f"{detail}confidence {d.confidence:.0%} of {d.votes} frame votes" if d is not None else ""
        if event.previous is not None:
            before = event.previous.person or "unknown"
            return f"{t}  track {event.track} changed {before} -> {who}  ({conf})"
        return f"{t}  track {event.track} is {who}  ({conf})"
    s = event.summary
    span = f"{s.start:.2f}-{s.end:.2f}s, {len(s.faces)} sightings, best frame {s.best.frame if s.best else '-'}"
    tail = f", {who}" if d is not None else ""
    return f"{t}  track {event.track} ended  ({span}{tail})"


def video(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Video file, webcam index (0, 1, ...) or rtsp:// / http(s):// URL.")],
    gallery: GalleryOpt = None,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Collection to identify tracks against (omit: tracking only).")
    ] = None,
    fps: Annotated[float, typer.Option("--fps", min=0.0, help="Frames analysed per second of video (0 = every frame).")] = 10.0,
    threshold: Annotated[
        str | None, typer.Option("--threshold", "-t", help="Identity threshold: cosine (0.3) or operating point (far=1e-3).")
    ] = None,
    track_threshold: Annotated[
        float | None,
        typer.Option("--track-threshold", help="Cosine a track's mean template must reach (default: measured per model)."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="Track identity rule: template (mean embedding) or vote.")] = "template",
    as_json: Annotated[bool, typer.Option("--json", help="JSON-lines events on stdout.")] = False,
    annotate_out: Annotated[
        Path | None, typer.Option("--annotate", help="Write the analysed frames with boxes, track ids and names (.mp4/.avi).")
    ] = None,
    redact: Annotated[
        str | None, typer.Option("--redact", help="Blur faces in the --out video: all, or unknown (not identified).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output video for --redact (.mp4/.avi).")] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", min=0.0, help="Stop after this much video time.")] = None,
    lost_seconds: Annotated[
        float, typer.Option("--lost-seconds", min=0.0, help="Keep a vanished face's track this long for re-identification.")
    ] = 20.0,
    det_score: Annotated[
        float, typer.Option("--det-score", help="Detections at or above this score open and feed tracks.")
    ] = 0.6,
    low_score: Annotated[
        float, typer.Option("--low-score", help="Detections between this and --det-score only extend existing tracks.")
    ] = 0.3,
    detect_size: Annotated[
        int, typer.Option("--detect-size", min=160, help="Detector input side in pixels (larger finds smaller faces).")
    ] = 640,
    tracker_kind: Annotated[
        str, typer.Option("--tracker", help="bytetrack (Kalman, calibrated appearance gates, scene cuts) or legacy.")
    ] = "bytetrack",
    embed_every: Annotated[
        int, typer.Option("--embed-every", min=1, help="Embed a face on a clear, named track every N frames (1 = all).")
    ] = 5,
    summary: Annotated[
        bool, typer.Option("--summary", help="At the end, print who appears when (JSON: one 'summary' line).")
    ] = False,
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    heads: Annotated[str | None, typer.Option(
        "--heads", help="Analysis heads averaged per track: age,gender,expression,pose,eyes,liveness (estimates).")]
    = None,
) -> None:
    """Track faces in a video and give each track one identity; events as text or JSON lines."""
    from .. import config
    from ..video import TrackerConfig, analyze_frames
    from ..video.summary import appearance_table

    try:
        if method not in ("template", "vote"):
            raise InvalidInputError("invalid_input", "--method must be template or vote")
        if redact is not None and out is None:
            raise InvalidInputError("invalid_input", "--redact needs --out OUT.mp4 for the redacted video")
        if out is not None and redact is None:
            raise InvalidInputError("invalid_input", "--out is the redacted video: give --redact all|unknown too")
        if gallery is not None and collection is None:
            raise InvalidInputError("invalid_input", "--gallery needs --collection")
        if not 0.0 <= low_score <= det_score <= 1.0:
            raise InvalidInputError("invalid_input", "need 0 <= --low-score <= --det-score <= 1")
        from ..analysis.tracks import TRACK_HEADS, describe

        names = tuple(h.strip() for h in (heads or "").split(",") if h.strip())
        if any(h not in TRACK_HEADS for h in names):
            raise InvalidInputError("invalid_input", f"--heads takes {','.join(TRACK_HEADS)}")
        if tracker_kind not in ("bytetrack", "legacy"):
            raise InvalidInputError("invalid_input", "--tracker must be bytetrack or legacy")
        tracker = TrackerConfig(high_score=det_score, low_score=low_score, new_track_score=det_score,
                               lost_seconds=lost_seconds, kind=tracker_kind, embed_every=embed_every)
        ended: list[Any] = []
        where = (gallery or config.default_gallery()) if collection else None
        if where is not None:
            require_gallery(where)  # a Milvus gallery needs its extra: say so before loading models
        _quiet_video_backend()
        atlas = make_atlas(ctx, detector=detector, embedder=embedder)
        bar = _FrameBar()
        frames = tracks = 0
        start = time.perf_counter()
        with _graceful_interrupt() as stop:
            try:
                results = analyze_frames(
                    source, atlas, where, collection, fps=fps or None, max_seconds=max_seconds,
                    annotate_to=annotate_out, redact_mode=redact, redact_to=out, progress=bar.update, on_open=bar.open,
                    stop=stop, threshold=threshold, track_threshold=track_threshold, method=method, tracker=tracker,
                    detect_size=detect_size, heads=names,
                )
                for result in results:
                    frames += 0 if result.final else 1
                    for event in result.events:
                        tracks += event.kind == "track_start"
                        if event.kind == "track_end":
                            ended.append(event)
                        if as_json:
                            emit(event.to_dict())
                        else:
                            typer.echo(_describe(event))
                            if event.analysis:
                                typer.echo(f"    {describe(event.analysis)}")
            finally:
                bar.close()
        seconds = time.perf_counter() - start
        if summary:
            rows = appearance_table(ended)
            if as_json:
                emit({"event": "summary", "rows": [r.to_dict() for r in rows]})
            else:
                for r in rows:
                    spans = ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in r.ranges)
                    typer.echo(f"{r.label}: {r.seconds:.1f}s on screen ({spans}; tracks {', '.join(map(str, r.tracks))})")
    except FaceAtlasError as exc:
        fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    if not as_json:
        rate = frames / seconds if seconds > 0 else 0.0
        typer.echo(f"{frames} frames analysed in {seconds:.1f}s ({rate:.1f} frames/s), {tracks} tracks")
    raise typer.Exit(EXIT_OK)
