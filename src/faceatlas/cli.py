"""The ``faceatlas`` command line: detect, embed, verify and model management."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .errors import FaceAtlasError

T = TypeVar("T")

app = typer.Typer(
    name="faceatlas",
    help="Face detection, alignment, embedding and verification.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and verify model files.", no_args_is_help=True)
app.add_typer(models_app, name="models")

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


@dataclass
class Options:
    """Global options shared by every command."""

    models_dir: Path | None = None
    offline: bool | None = None
    threads: int | None = None


_STATE = Options()

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")]
DetectorOpt = Annotated[str, typer.Option("--detector", help="Detector model name (see 'faceatlas models list').")]
EmbedderOpt = Annotated[str, typer.Option("--embedder", help="Embedder model name (see 'faceatlas models list').")]
SelectOpt = Annotated[str, typer.Option("--select", help="Which face single-face operations use: largest|central|score.")]
ScoreOpt = Annotated[float, typer.Option("--det-score", help="Minimum detection score.")]
FlipOpt = Annotated[bool, typer.Option("--flip", help="Flip test-time augmentation (average with the mirrored crop).")]


@app.callback()
def _global(
    models_dir: Annotated[
        Path | None, typer.Option("--models-dir", help="Extra models folder (default: $FACEATLAS_MODELS).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Threads per model session.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    """faceatlas — face recognition from the shell."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _STATE.models_dir = models_dir
    _STATE.offline = True if offline else None
    _STATE.threads = threads


def _atlas(**kwargs: Any) -> Any:
    """Build a FaceAtlas from the global options plus command options."""
    from .atlas import FaceAtlas

    return FaceAtlas(models_dir=_STATE.models_dir, offline=_STATE.offline, threads=_STATE.threads, **kwargs)


def _fail(exc: FaceAtlasError, as_json: bool) -> None:
    """Report an error on one line (stderr), plus a JSON object on stdout in --json mode."""
    if as_json:
        _emit({"error": exc.to_dict()})
    typer.echo(f"faceatlas: error [{exc.code}]: {exc.message}", err=True)


def _emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on its own line."""
    typer.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr for runs over several images (silent when stderr is not a terminal)."""
    if total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True)
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _per_image(images: list[Path], as_json: bool, label: str, fn: Callable[[Path], T]) -> Iterator[tuple[Path, T]]:
    """Run ``fn`` on each image, reporting per-image errors and remembering that one happened."""
    with _progress(len(images), label) as advance:
        for path in images:
            try:
                yield path, fn(path)
            except FaceAtlasError as exc:
                _BATCH.failed = True
                if as_json:
                    _emit({"image": str(path), "error": exc.to_dict()})
                typer.echo(f"faceatlas: error [{exc.code}]: {exc.message}", err=True)
            advance()


@dataclass
class _Batch:
    """Whether any image of the current command failed."""

    failed: bool = False


_BATCH = _Batch()


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: JsonOpt = False,
    detector: DetectorOpt = "yunet",
    det_score: ScoreOpt = 0.6,
) -> None:
    """Find faces: box, score and five landmarks for every face in each image."""
    fa = _atlas(detector=detector, det_score=det_score)
    for path, faces in _per_image(images, as_json, "detect", fa.detect):
        if as_json:
            _emit({"image": str(path), "faces": [f.to_dict() for f in faces]})
            continue
        typer.echo(f"{path}: {len(faces)} face(s)")
        for f in faces:
            x1, y1, x2, y2 = f.box.to_list()
            typer.echo(f"  #{f.index} score {f.score:.3f} box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    raise typer.Exit(EXIT_ERROR if _BATCH.failed else EXIT_OK)


@app.command()
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: JsonOpt = False,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Embed every face, not only the selected one.")] = False,
    select: SelectOpt = "largest",
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    flip: FlipOpt = False,
) -> None:
    """Compute face templates (L2-normalised embeddings); --json prints the vectors."""
    fa = _atlas(detector=detector, embedder=embedder, flip=flip, select=select)
    faces_mode = "all" if all_faces else "one"
    for path, faces in _per_image(images, as_json, "embed", lambda p: fa.embed(p, faces=faces_mode)):
        if as_json:
            _emit({"image": str(path), "faces": [f.to_dict(include_template=True) for f in faces]})
            continue
        typer.echo(f"{path}: {len(faces)} template(s), model {fa.model_id}")
        for f in faces:
            assert f.template is not None
            head = " ".join(f"{v:+.3f}" for v in f.template.vector[:6])
            typer.echo(f"  #{f.index} box {f.box.to_list()} dim {f.template.dim} [{head} …]")
    raise typer.Exit(EXIT_ERROR if _BATCH.failed else EXIT_OK)


@app.command()
def verify(
    image_a: Annotated[Path, typer.Argument(help="First image.")],
    image_b: Annotated[Path, typer.Argument(help="Second image.")],
    threshold: Annotated[
        str | None, typer.Option("--threshold", "-t", help="Cosine threshold (0.3) or operating point (far=1e-3).")
    ] = None,
    as_json: JsonOpt = False,
    select: SelectOpt = "largest",
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    flip: FlipOpt = False,
) -> None:
    """Same person? Exit 0 if yes, 1 if no, 2 on error."""
    try:
        fa = _atlas(detector=detector, embedder=embedder, flip=flip, select=select)
        result = fa.verify(image_a, image_b, threshold=threshold)
    except FaceAtlasError as exc:
        _fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        _emit({"image_a": str(image_a), "image_b": str(image_b), **result.to_dict()})
    else:
        verdict = "same person" if result.same else "different people"
        op = ">=" if result.same else "<"
        far = f", estimated FAR {result.far:.2g}" if result.far is not None else ""
        typer.echo(
            f"{verdict}: score {result.score:.4f} {op} threshold {result.threshold:.4f} "
            f"({result.threshold_source}, model {result.model_id}{far})"
        )
        for name, face, count in (("A", result.face_a, result.faces_in_a), ("B", result.face_b, result.faces_in_b)):
            if count > 1:
                typer.echo(f"  image {name}: {count} faces, compared face #{face.index} ({select})")
    raise typer.Exit(EXIT_OK if result.same else EXIT_DIFFERENT)


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every known model: task, licence, commercial use and where it resolves from."""
    from .models import ModelStore

    store = ModelStore(models_dir=_STATE.models_dir, offline=_STATE.offline)
    rows = store.status(verify=False)
    if as_json:
        for r in rows:
            _emit(_status_dict(r))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="faceatlas models")
    for col in ("name", "task", "dim", "licence", "commercial", "source", "description"):
        table.add_column(col)
    for r in rows:
        s = r.spec
        table.add_row(
            s.name, s.task, str(s.dim or ""), s.license, s.commercial_label, r.source or "missing", s.description
        )
    Console(width=max(160, _term_width())).print(table)


@models_app.command("verify")
def models_verify(as_json: JsonOpt = False) -> None:
    """Check the sha256 of every locally available model file (and its transformed copy)."""
    from .models import ModelStore

    store = ModelStore(models_dir=_STATE.models_dir, offline=_STATE.offline)
    bad = False
    for r in store.status(verify=True):
        if not r.available:
            line = f"{r.spec.name}: not available locally"
        else:
            line = f"{r.spec.name}: {'OK' if r.ok else 'FAILED'} {r.path} ({r.message})"
            bad = bad or not r.ok
        if as_json:
            _emit(_status_dict(r))
        else:
            typer.echo(line)
    raise typer.Exit(EXIT_ERROR if bad else EXIT_OK)


def _status_dict(r: Any) -> dict[str, Any]:
    """JSON form of a ModelStatus."""
    s = r.spec
    return {
        "name": s.name,
        "task": s.task,
        "file": s.file,
        "sha256": s.sha256,
        "dim": s.dim,
        "license": s.license,
        "commercial_use": s.commercial_use,
        "available": r.available,
        "source": r.source,
        "path": r.path,
        "ok": r.ok,
        "message": r.message,
    }


def _term_width() -> int:
    """Terminal width, or 0 when unknown."""
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0


def main() -> None:
    """Console entry point: run the app, turning any uncaught library error into one line and exit 2."""
    try:
        app()
    except FaceAtlasError as exc:
        _fail(exc, as_json="--json" in sys.argv)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        typer.echo("faceatlas: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, never a traceback
        if os.environ.get("FACEATLAS_DEBUG"):
            raise
        typer.echo(f"faceatlas: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
