"""Single-image commands: ``detect``, ``embed`` and ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FaceAtlasError
from .common import (
    EXIT_DIFFERENT,
    EXIT_ERROR,
    EXIT_OK,
    Batch,
    DetectorOpt,
    EmbedderOpt,
    FlipOpt,
    JsonOpt,
    ScoreOpt,
    SelectOpt,
    ThresholdOpt,
    emit,
    fail,
    image_paths,
    make_atlas,
)

ImagesArg = Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")]


def detect(
    ctx: typer.Context,
    images: ImagesArg,
    as_json: JsonOpt = False,
    detector: DetectorOpt = "yunet",
    det_score: ScoreOpt = 0.6,
) -> None:
    """Find faces: box, score and five landmarks for every face in each image."""
    fa = make_atlas(ctx, detector=detector, det_score=det_score)
    batch = Batch("detect", as_json)
    for path, faces in batch.run(image_paths(images), fa.detect):
        if as_json:
            emit({"image": str(path), "faces": [f.to_dict() for f in faces]})
            continue
        typer.echo(f"{path}: {len(faces)} face(s)")
        for f in faces:
            x1, y1, x2, y2 = f.box.to_list()
            typer.echo(f"  #{f.index} score {f.score:.3f} box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    raise typer.Exit(batch.exit_code)


def embed(
    ctx: typer.Context,
    images: ImagesArg,
    as_json: JsonOpt = False,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="Embed every face, not only the selected one.")] = False,
    select: SelectOpt = "largest",
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    flip: FlipOpt = False,
) -> None:
    """Compute face templates (L2-normalised embeddings); --json prints the vectors."""
    fa = make_atlas(ctx, detector=detector, embedder=embedder, flip=flip, select=select)
    faces_mode = "all" if all_faces else "one"
    batch = Batch("embed", as_json)
    for path, faces in batch.run(image_paths(images), lambda p: fa.embed(p, faces=faces_mode)):
        if as_json:
            emit({"image": str(path), "faces": [f.to_dict(include_template=True) for f in faces]})
            continue
        typer.echo(f"{path}: {len(faces)} template(s), model {fa.model_id}")
        for f in faces:
            assert f.template is not None
            head = " ".join(f"{v:+.3f}" for v in f.template.vector[:6])
            typer.echo(f"  #{f.index} box {f.box.to_list()} dim {f.template.dim} [{head} …]")
    raise typer.Exit(batch.exit_code)


def verify(
    ctx: typer.Context,
    image_a: Annotated[Path, typer.Argument(help="First image.")],
    image_b: Annotated[Path, typer.Argument(help="Second image.")],
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
    select: SelectOpt = "largest",
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    flip: FlipOpt = False,
    liveness: Annotated[bool, typer.Option(
        "--liveness", help="Refuse a face the passive liveness check takes for a replay (exit 2, spoof_suspected).")]
    = False,
) -> None:
    """Same person? Exit 0 if yes, 1 if no, 2 on error."""
    try:
        fa = make_atlas(ctx, detector=detector, embedder=embedder, flip=flip, select=select)
        result = fa.verify(image_a, image_b, threshold=threshold, liveness=liveness)
    except FaceAtlasError as exc:
        fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        emit({"image_a": str(image_a), "image_b": str(image_b), **result.to_dict()})
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
