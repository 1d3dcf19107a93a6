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
eval_app = typer.Typer(help="Measure accuracy: LFW protocols, your own pairs or folders.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

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

    options: dict[str, Any] = {"models_dir": _STATE.models_dir, "offline": _STATE.offline, "threads": _STATE.threads}
    options.update(kwargs)
    return FaceAtlas(**options)


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


OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder for report.json, plots and summary.md.")]
EvalSelectOpt = Annotated[str, typer.Option("--select", help="Face used per image: central|largest|score.")]


def _progress_cb(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (callback, close) pair drawing a progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return (lambda done, total: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    bar.start()
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


def _eval_atlas(embedder: str, detector: str, flip: bool) -> Any:
    """A FaceAtlas for evaluation runs."""
    return _atlas(detector=detector, embedder=embedder, flip=flip)


def _emit_report(paths: dict[str, Path], as_json: bool) -> None:
    """Print the summary (or the JSON report) and where the files are."""
    if as_json:
        typer.echo(paths["json"].read_text().replace("\n", " "))
    else:
        typer.echo(paths["summary"].read_text())
        typer.echo(f"report: {paths['json']}", err=True)


def _lfw_root(data: Path | None) -> Path:
    """The LFW folder (holding images/ and pairs.txt) from --data or FACEATLAS_DATA."""
    from . import config
    from .errors import InvalidInputError

    base = data or config.data_dir()
    for cand in (base, base / "lfw"):
        if (cand / "pairs.txt").is_file() and (cand / "images").is_dir():
            return cand
    raise InvalidInputError("invalid_input", f"no LFW (pairs.txt and images/) under {base}")


@eval_app.command("lfw")
def eval_lfw(
    data: Annotated[Path | None, typer.Option("--data", help="LFW folder (default: $FACEATLAS_DATA/lfw).")] = None,
    out: OutOpt = None,
    embedder: EmbedderOpt = "sface",
    detector: DetectorOpt = "yunet",
    flip: FlipOpt = False,
    select: EvalSelectOpt = "central",
    identification: Annotated[
        bool, typer.Option("--identification/--no-identification", help="Also run the 1:N protocol (all 13,233 images).")
    ] = True,
    folds: Annotated[
        int, typer.Option("--folds", min=1, max=10, help="Use the first N of the 10 folds (1: fixed-threshold accuracy).")
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """LFW View 2 (10 folds, threshold from the other nine) and the open-set identification protocol."""
    from . import config
    from .evaluate.protocols import lfw_identification_split, read_lfw_pairs
    from .evaluate.report import write_report
    from .evaluate.runner import embed_images, evaluate_identification, evaluate_verification

    root = _lfw_root(data)
    pairs = [p for p in read_lfw_pairs(root / "pairs.txt") if p.fold < folds]
    split = lfw_identification_split(root / "images") if identification else None
    keys = sorted({k for p in pairs for k in (p.a, p.b)} | (_split_keys(split) if split else set()))
    fa = _eval_atlas(embedder, detector, flip)
    update, close = _progress_cb("embedding")
    try:
        ts = embed_images(fa, [root / "images" / k for k in keys], keys=keys, select=select,
                          cache_dir=config.cache_dir() / "eval", progress=update)
    finally:
        close()
    ver = evaluate_verification(ts, pairs, threshold=fa.store.spec(fa.embedder_name).default_threshold)
    ident = evaluate_identification(ts, split) if split else None
    meta = {"model_id": fa.model_id, "detector": detector, "select": select, "data": str(root), "images": len(keys),
            "embed_seconds": round(ts.seconds, 1), "embedded_now": ts.computed,
            "seconds_per_image": round(ts.seconds / ts.computed, 4) if ts.computed else None}
    out = out or Path("faceatlas-eval") / f"lfw-{fa.model_id}"
    _emit_report(write_report(out, f"LFW evaluation — {fa.model_id}", meta, ver, ident), as_json)


def _split_keys(split: Any) -> set[str]:
    """Every image of an identification split."""
    return {p for group in (split.gallery, split.known_probes, split.unknown_probes) for _, p in group}


def _read_groups(path: Path | None) -> dict[str, str] | None:
    """person → group from a two-column CSV (header optional)."""
    if path is None:
        return None
    import csv

    from .errors import InvalidInputError

    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise InvalidInputError("invalid_input", f"cannot read groups file {path}: {exc.strerror}") from None
    out = {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2 and r[0].strip()}
    out.pop("person", None)
    return out


def _eval_pairs(pairs: list[Any], title: str, out: Path, threshold: str | None, groups: Path | None,
                embedder: str, detector: str, flip: bool, select: str, as_json: bool) -> None:
    """Shared body of 'eval pairs' and 'eval folder'."""
    from .evaluate.report import write_report
    from .evaluate.runner import embed_images, evaluate_verification, group_rates
    from .match import resolve_threshold

    fa = _eval_atlas(embedder, detector, flip)
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    update, close = _progress_cb("embedding")
    try:
        ts = embed_images(fa, [Path(k) for k in keys], keys=keys, select=select, progress=update)
    finally:
        close()
    point = resolve_threshold(threshold, fa.model_id, fa.store.spec(fa.embedder_name).default_threshold, fa.calibrations)
    ver = evaluate_verification(ts, pairs, threshold=point.threshold)
    extra: dict[str, Any] = {"threshold_source": point.source}
    person_group = _read_groups(groups)
    if person_group:
        extra["groups"] = group_rates(pairs, ver.scores, ver.failed, person_group, point.threshold)
    meta = {"model_id": fa.model_id, "detector": detector, "select": select, "images": len(keys)}
    _emit_report(write_report(out, title, meta, ver, None, extra), as_json)


ThresholdOpt = Annotated[
    str | None, typer.Option("--threshold", "-t", help="Threshold for FMR/FNMR: a cosine score or far=1e-3.")
]
GroupsOpt = Annotated[Path | None, typer.Option("--groups", help="CSV person,group for a per-group (fairness) report.")]


@eval_app.command("pairs")
def eval_pairs(
    pairs_csv: Annotated[Path, typer.Argument(help="CSV with columns a,b,same (and optionally fold).")],
    out: OutOpt = None,
    threshold: ThresholdOpt = None,
    groups: GroupsOpt = None,
    embedder: EmbedderOpt = "sface",
    detector: DetectorOpt = "yunet",
    flip: FlipOpt = False,
    select: EvalSelectOpt = "largest",
    as_json: JsonOpt = False,
) -> None:
    """Verification metrics on your own list of pairs."""
    from .evaluate.protocols import read_pairs_csv

    _eval_pairs(read_pairs_csv(pairs_csv), f"Pairs evaluation — {pairs_csv.name}", out or Path("faceatlas-eval/pairs"),
                threshold, groups, embedder, detector, flip, select, as_json)


@eval_app.command("folder")
def eval_folder(
    folder: Annotated[Path, typer.Argument(help="One sub-folder of images per person.")],
    out: OutOpt = None,
    threshold: ThresholdOpt = None,
    groups: GroupsOpt = None,
    impostors: Annotated[float, typer.Option("--impostors-per-genuine", help="Impostor pairs sampled per genuine pair.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the impostor sample.")] = 0,
    embedder: EmbedderOpt = "sface",
    detector: DetectorOpt = "yunet",
    flip: FlipOpt = False,
    select: EvalSelectOpt = "largest",
    as_json: JsonOpt = False,
) -> None:
    """Verification metrics on a folder of people: every genuine pair and a sample of impostor pairs."""
    from .evaluate.protocols import folder_pairs

    pairs = folder_pairs(folder, impostors_per_genuine=impostors, seed=seed)
    _eval_pairs(pairs, f"Folder evaluation — {folder.name}", out or Path("faceatlas-eval/folder"),
                threshold, groups, embedder, detector, flip, select, as_json)


@app.command()
def calibrate(
    folder: Annotated[Path, typer.Argument(help="One sub-folder of images per person (an LFW images/ folder works).")],
    out: Annotated[Path | None, typer.Option("--out", help="Calibration file (default: $FACEATLAS_HOME/calibrations).")] = None,
    embedder: EmbedderOpt = "sface",
    detector: DetectorOpt = "yunet",
    flip: FlipOpt = False,
    select: EvalSelectOpt = "central",
    max_images: Annotated[int, typer.Option("--max-images", help="Use at most this many images (0 = all).")] = 0,
) -> None:
    """Measure score → false-accept-rate for a model from every impostor pair of a labelled folder."""
    from . import config
    from .evaluate.calibrate import calibrate_folder

    fa = _eval_atlas(embedder, detector, flip)
    update, close = _progress_cb("embedding")
    try:
        cal = calibrate_folder(fa, folder, select=select, max_images=max_images or None,
                               cache_dir=config.cache_dir() / "eval", progress=update)
    finally:
        close()
    target = out or config.home_dir() / "calibrations" / f"{fa.model_id}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    cal.save(target)
    typer.echo(
        f"calibration for {fa.model_id}: {cal.n_impostors} impostor and {cal.n_genuine} genuine pairs, "
        f"lowest resolvable FAR {cal.min_far:.1e}; saved to {target}"
    )
    for far in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        if far >= cal.min_far:
            typer.echo(f"  far={far:g} → threshold {cal.threshold_for(far):.4f}")


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


#: Command groups that live in their own modules; each exposes ``register(app)``.
EXTENSIONS = ("cli_gallery", "cli_media", "cli_server")


def _register_extensions() -> None:
    """Attach the command groups of the extension modules that are present."""
    import importlib

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(f"faceatlas.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"faceatlas.{name}":
                raise
            continue
        module.register(app)


_register_extensions()


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
