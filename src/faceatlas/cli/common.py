"""What every command shares: global options, output helpers, option aliases, exit codes and pipeline builders."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import FaceAtlasError

if TYPE_CHECKING:  # pragma: no cover
    from ..facade import FaceAtlas
    from ..gallery import Gallery
    from ..recognition import Recognizer

T = TypeVar("T")

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command name; carried in typer's context object."""

    models_dir: Path | None = None
    offline: bool | None = None
    threads: int | None = None
    verbose: bool = False
    calibration: str | None = None
    profile: str | None = None


def options(ctx: typer.Context) -> GlobalOptions:
    """The global options of this invocation (defaults when the main callback did not run)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


# -- option aliases ---------------------------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")]
DetectorOpt = Annotated[str, typer.Option("--detector", help="Detector model name (see 'faceatlas models list').")]
EmbedderOpt = Annotated[
    str, typer.Option("--embedder", help="Embedder model name, '+flip' for flip averaging (see 'faceatlas models list').")
]
SelectOpt = Annotated[str, typer.Option("--select", help="Which face single-face operations use: largest|central|score.")]
ScoreOpt = Annotated[float, typer.Option("--det-score", help="Minimum detection score.")]
FlipOpt = Annotated[bool, typer.Option("--flip", help="Flip test-time augmentation (average with the mirrored crop).")]
ThresholdOpt = Annotated[
    str | None, typer.Option("--threshold", "-t", help="Cosine threshold (0.3) or operating point (far=1e-3).")
]
GalleryOpt = Annotated[
    str | None,
    typer.Option(
        "--gallery",
        help="SQLite path, milvus-lite:PATH or milvus://host:port (default: $FACEATLAS_GALLERY or $FACEATLAS_HOME/gallery.db).",
    ),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]


# -- output -----------------------------------------------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on its own line."""
    typer.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def error_line(exc: FaceAtlasError, prefix: str = "") -> None:
    """Print the one-line form of an error on stderr."""
    typer.echo(f"faceatlas: error [{exc.code}]: {prefix}{exc.message}", err=True)


def fail(exc: FaceAtlasError, as_json: bool) -> None:
    """Report an error on one line (stderr), plus a JSON object on stdout in --json mode."""
    if as_json:
        emit({"error": exc.to_dict()})
    error_line(exc)


def require(command: str, extra: str, *modules: str) -> None:
    """Refuse to start ``command`` when a module of an optional extra is missing, naming the install command."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise FaceAtlasError(
            "missing_dependency",
            f"faceatlas {command} needs the {extra} extra: pip install 'faceatlas[{extra}]' (missing: {', '.join(missing)})",
        )


class Bar:
    """A progress bar on stderr, drawn only when stderr is a terminal (and, with a known total, for two items or more)."""

    def __init__(self, label: str, total: int | None = None, transient: bool = False) -> None:
        self.label = label
        self.total = total
        self.transient = transient
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Bar:
        """Start drawing."""
        if not sys.stderr.isatty() or (self.total is not None and self.total < 2):
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=self.transient)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self) -> None:
        """One more item done."""
        if self._bar is not None:
            self._bar.advance(self._task)

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` items finished (the signature library progress callbacks use)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        """Stop drawing."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given, folders replaced by their image files (recursive, sorted); missing paths kept for their error."""
    from ..evaluate import IMAGE_EXTENSIONS

    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()))
        else:
            out.append(path)
    return out


class Batch:
    """Runs a function on each image, reporting per-image errors and remembering whether any happened."""

    def __init__(self, label: str, as_json: bool, fatal: Collection[str] = ()) -> None:
        self.label = label
        self.as_json = as_json
        self.fatal = fatal
        self.failed = False

    def run(self, images: list[Path], fn: Callable[[Path], T]) -> Iterator[tuple[Path, T]]:
        """``(path, fn(path))`` for each image that worked; errors with a code in ``fatal`` end the batch."""
        with Bar(self.label, len(images)) as bar:
            for path in images:
                try:
                    yield path, fn(path)
                except FaceAtlasError as exc:
                    if exc.code in self.fatal:
                        raise
                    self.failed = True
                    if self.as_json:
                        emit({"image": str(path), "error": exc.to_dict()})
                    error_line(exc)
                bar.advance()

    @property
    def exit_code(self) -> int:
        """EXIT_ERROR when an image failed, else EXIT_OK."""
        return EXIT_ERROR if self.failed else EXIT_OK


# -- pipelines --------------------------------------------------------------------------------------------------------


def make_atlas(ctx: typer.Context, **kwargs: Any) -> FaceAtlas:
    """A FaceAtlas from the global options plus command options (which win)."""
    from ..facade import FaceAtlas

    opts = options(ctx)
    settings: dict[str, Any] = {"models_dir": opts.models_dir, "offline": opts.offline, "threads": opts.threads,
                                "calibration": opts.calibration, "profile": opts.profile}
    settings.update({k: v for k, v in kwargs.items() if v is not None})
    return FaceAtlas(**settings)


def open_gallery(path: str | None) -> Gallery:
    """The gallery at ``path`` (default: the configured gallery), created when missing."""
    from ..gallery import Gallery

    require_gallery(path)
    return Gallery.open(path)


def require_gallery(path: str | None) -> None:
    """Refuse a Milvus gallery (``milvus-lite:`` / ``milvus://``) when the milvus extra is missing."""
    from .. import config

    where = str(path or config.default_gallery())
    lite = where.startswith("milvus-lite:")
    if lite or where.startswith("milvus://"):
        scheme = "milvus-lite:…" if lite else "milvus://…"
        what = f"--gallery {scheme}" if path else f"with the gallery {scheme} (FACEATLAS_GALLERY)"
        require(what, "milvus", *(("pymilvus", "milvus_lite") if lite else ("pymilvus",)))


def collection_embedder(gallery: Gallery, collection: str, default: str) -> str:
    """The embedder a collection was created with (so enrol and identify use its model), else ``default``."""
    from ..errors import NotFoundError

    try:
        return str(gallery.get_collection(collection).contract.model_id)
    except NotFoundError:
        return default


def make_recognizer(ctx: typer.Context, gallery: Gallery, embedder: str, threads: int | None = None) -> Recognizer:
    """A Recognizer on an open gallery with the global model options."""
    from ..recognition import Recognizer

    return Recognizer(make_atlas(ctx, embedder=embedder, threads=threads), gallery)
