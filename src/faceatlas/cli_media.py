"""Media commands: ``faceatlas video`` (track and identify faces in a video) and ``faceatlas cluster`` (group photos)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .errors import FaceAtlasError, InvalidInputError

EXIT_OK, EXIT_ERROR = 0, 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
GalleryOpt = Annotated[
    str | None, typer.Option("--gallery", help="Gallery location (default: $FACEATLAS_GALLERY or $FACEATLAS_HOME/gallery.db).")
]
DetectorOpt = Annotated[str, typer.Option("--detector", help="Detector model name (see 'faceatlas models list').")]
EmbedderOpt = Annotated[str, typer.Option("--embedder", help="Embedder model name (see 'faceatlas models list').")]


class _DefaultGroup(TyperGroup):
    """A command group that runs its hidden ``run`` command when the first argument is not a sub-command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert ``run`` in front of arguments that do not start with a known sub-command."""
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


cluster_app = typer.Typer(
    cls=_DefaultGroup,
    help="Group the faces of a photo folder by person ('faceatlas cluster DIR'), then promote groups to a gallery.",
    no_args_is_help=True,
)


def _emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on its own line."""
    typer.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _fail(exc: FaceAtlasError, as_json: bool) -> None:
    """One-line error on stderr (plus a JSON error object on stdout with --json)."""
    if as_json:
        _emit({"error": exc.to_dict()})
    typer.echo(f"faceatlas: error [{exc.code}]: {exc.message}", err=True)


def _default_gallery() -> str:
    """The default gallery location, as the gallery commands use it."""
    from . import config

    return os.environ.get("FACEATLAS_GALLERY") or str(config.home_dir() / "gallery.db")


def _atlas(**kwargs: Any) -> Any:
    """A FaceAtlas honouring the global --models-dir/--offline/--threads options."""
    from .cli import _atlas as make

    return make(**kwargs)


def _quiet_video_backend() -> None:
    """Keep OpenCV/FFmpeg from printing decoder chatter on stderr (errors are reported once, by us)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
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
    who = "unknown"
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
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
) -> None:
    """Track faces in a video and give each track one identity; events as text or JSON lines."""
    from .video import TrackerConfig, analyze_frames

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
        config = TrackerConfig(high_score=det_score, low_score=low_score, new_track_score=det_score,
                               lost_seconds=lost_seconds)
        _quiet_video_backend()
        atlas = _atlas(detector=detector, embedder=embedder)
        where = (gallery or _default_gallery()) if collection else None
        bar = _FrameBar()
        frames = tracks = 0
        start = time.perf_counter()
        with _graceful_interrupt() as stop:
            try:
                results = analyze_frames(
                    source, atlas, where, collection, fps=fps or None, max_seconds=max_seconds,
                    annotate_to=annotate_out, redact_mode=redact, redact_to=out, progress=bar.update, on_open=bar.open,
                    stop=stop, threshold=threshold, track_threshold=track_threshold, method=method, tracker=config,
                    detect_size=detect_size,
                )
                for result in results:
                    frames += 0 if result.final else 1
                    for event in result.events:
                        tracks += event.kind == "track_start"
                        if as_json:
                            _emit(event.to_dict())
                        else:
                            typer.echo(_describe(event))
            finally:
                bar.close()
        seconds = time.perf_counter() - start
    except FaceAtlasError as exc:
        _fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    if not as_json:
        rate = frames / seconds if seconds > 0 else 0.0
        typer.echo(f"{frames} frames analysed in {seconds:.1f}s ({rate:.1f} frames/s), {tracks} tracks")
    raise typer.Exit(EXIT_OK)


# -- cluster ---------------------------------------------------------------------------------------------------------


def _cluster_threshold(value: str | None, atlas: Any) -> float | None:
    """A clustering threshold from a number or an operating point (far=...), None for the default."""
    if value is None:
        return None
    from .match import resolve_threshold

    point = resolve_threshold(value, atlas.model_id, None, atlas.calibrations)
    return float(point.threshold)


def _progress(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (callback, close) pair drawing a progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return (lambda done, total: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    bar.start()
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        """Advance the bar."""
        bar.update(task, completed=done, total=total)

    return update, bar.stop


@cluster_app.command("run", hidden=True)
def cluster_run(
    folder: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print ONE JSON object: clusters (with faces), noise, counts.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML contact sheet.")] = None,
    state_file: Annotated[
        Path | None, typer.Option("--state", help="Cluster state file: created, or updated with only the new photos.")
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option("--algorithm", help="chinese_whispers (default), components, agglomerative, hdbscan or dbscan."),
    ] = None,
    threshold: Annotated[
        str | None, typer.Option("--threshold", "-t", help="Cosine similarity joining two faces, or far=1e-5 (calibrated).")
    ] = None,
    min_size: Annotated[int, typer.Option("--min-size", min=1, help="Smaller clusters are reported as noise.")] = 2,
    min_face: Annotated[float, typer.Option("--min-face", min=0.0, help="Faces smaller than this (pixels) are noise.")] = 20.0,
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
) -> None:
    """Group every face in a photo folder by person, without labels."""
    from .cluster import ClusterState, cluster_folder, write_contact_sheet

    try:
        state = ClusterState.load(state_file) if state_file is not None and state_file.is_file() else None
        if state is not None:
            embedder = state.model_id
        atlas = _atlas(detector=detector, embedder=embedder)
        update, close = _progress("faces")
        try:
            result, state = cluster_folder(folder, atlas, state=state, algorithm=algorithm,
                                           threshold=_cluster_threshold(threshold, atlas), min_size=min_size,
                                           min_face=min_face, progress=update)
        finally:
            close()
        if state_file is not None:
            state.save(state_file)
        if html_out is not None:
            write_contact_sheet(result, html_out)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    for p in result.problems:
        typer.echo(f"faceatlas: warning [{p.code}]: {p.message}", err=True)
    if as_json:
        _emit(result.to_dict())
        raise typer.Exit(EXIT_OK)
    faces = sum(len(c.faces) for c in result.clusters) + len(result.noise)
    typer.echo(f"{len(result.clusters)} clusters and {len(result.noise)} unclustered faces "
               f"({faces} faces in {result.images} images; {result.algorithm}, threshold {result.threshold:.3f})")
    if state is not None and result.new_images != result.images:
        typer.echo(f"  this run: {result.new_images} new images, {result.new_faces} new faces, "
                   f"{result.assigned_to_existing} joined existing clusters")
    for c in result.clusters:
        who = f" = {c.person}" if c.person else ""
        rep = c.representative
        typer.echo(f"  cluster {c.id}{who}: {len(c.faces)} faces, representative {rep.image} {rep.box.to_list()}")
    if html_out is not None:
        typer.echo(f"contact sheet: {html_out}")
    raise typer.Exit(EXIT_OK)


@cluster_app.command("promote")
def cluster_promote(
    state_file: Annotated[Path, typer.Option("--state", help="Cluster state file written by 'faceatlas cluster --state'.")],
    cluster: Annotated[int, typer.Option("--cluster", help="Cluster id to promote.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Gallery collection (created if missing).")],
    person: Annotated[str, typer.Option("--person", help="Person id in the collection (created if missing).")],
    name: Annotated[str | None, typer.Option("--name", help="Display name for a new person (default: the id).")] = None,
    gallery: GalleryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enrol every face of one cluster as samples of a gallery person."""
    from .cluster import ClusterState, promote
    from .gallery import Gallery

    try:
        state = ClusterState.load(state_file)
        target = gallery or _default_gallery()
        if "://" not in target and not target.startswith(("milvus-lite:", "sqlite:")):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        with Gallery.open(target) as g:
            res = promote(state, cluster, g, collection, person, name)
        state.save(state_file)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        _emit(res.to_dict())
    else:
        made = " (new collection)" if res.created_collection else ""
        who = "new person" if res.created_person else "existing person"
        typer.echo(f"cluster {res.cluster}: {res.samples} samples enrolled as {who} {res.person!r} "
                   f"in collection {res.collection!r}{made}")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach ``video`` and ``cluster`` to the main command line."""
    app.command("video")(video)
    app.add_typer(cluster_app, name="cluster")
