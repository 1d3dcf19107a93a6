"""``faceatlas eval`` (LFW, your pairs, your folders) and ``faceatlas calibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import Bar, DetectorOpt, EmbedderOpt, FlipOpt, JsonOpt, ThresholdOpt, make_atlas, require

eval_app = typer.Typer(help="Measure accuracy: LFW protocols, your own pairs or folders.", no_args_is_help=True)

OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder for report.json, plots and summary.md.")]
EvalSelectOpt = Annotated[str, typer.Option("--select", help="Face used per image: central|largest|score.")]
GroupsOpt = Annotated[Path | None, typer.Option("--groups", help="CSV person,group for a per-group (fairness) report.")]


def _require_plots() -> None:
    """Every report has plots: check matplotlib before embedding anything."""
    require("eval", "eval", "matplotlib")


def _emit_report(paths: dict[str, Path], as_json: bool) -> None:
    """Print the summary (or the JSON report) and where the files are."""
    if as_json:
        typer.echo(paths["json"].read_text().replace("\n", " "))
    else:
        typer.echo(paths["summary"].read_text())
        typer.echo(f"report: {paths['json']}", err=True)


def _lfw_root(data: Path | None) -> Path:
    """The LFW folder (holding images/ and pairs.txt) from --data or FACEATLAS_DATA."""
    from .. import config
    from ..errors import InvalidInputError

    base = data or config.data_dir()
    for cand in (base, base / "lfw"):
        if (cand / "pairs.txt").is_file() and (cand / "images").is_dir():
            return cand
    raise InvalidInputError("invalid_input", f"no LFW (pairs.txt and images/) under {base}")


@eval_app.command("lfw")
def eval_lfw(
    ctx: typer.Context,
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
    _require_plots()
    from .. import config
    from ..evaluate.protocols import lfw_identification_split, read_lfw_pairs
    from ..evaluate.report import write_report
    from ..evaluate.runner import embed_images, evaluate_identification, evaluate_verification

    root = _lfw_root(data)
    pairs = [p for p in read_lfw_pairs(root / "pairs.txt") if p.fold < folds]
    split = lfw_identification_split(root / "images") if identification else None
    keys = sorted({k for p in pairs for k in (p.a, p.b)} | (_split_keys(split) if split else set()))
    fa = make_atlas(ctx, detector=detector, embedder=embedder, flip=flip)
    with Bar("embedding") as bar:
        ts = embed_images(fa, [root / "images" / k for k in keys], keys=keys, select=select,
                          cache_dir=config.cache_dir() / "eval", progress=bar.update)
    ver = evaluate_verification(ts, pairs, threshold=fa.store.spec(fa.embedder_name).default_threshold)
    ident = evaluate_identification(ts, split) if split else None
    per_image, source = ts.seconds_per_image()  # from the cached run's timing when nothing was embedded now
    meta = {"model_id": fa.model_id, "detector": detector, "select": select, "data": str(root), "images": len(keys),
            "embed_seconds": round(ts.seconds, 1), "embedded_now": ts.computed,
            "seconds_per_image": None if per_image is None else round(per_image, 4),
            "seconds_per_image_from": source}
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

    from ..errors import InvalidInputError

    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise InvalidInputError("invalid_input", f"cannot read groups file {path}: {exc.strerror}") from None
    out = {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2 and r[0].strip()}
    out.pop("person", None)
    return out


def _eval_pairs(ctx: typer.Context, pairs: list[Any], title: str, out: Path, threshold: str | None, groups: Path | None,
                embedder: str, detector: str, flip: bool, select: str, as_json: bool) -> None:
    """Shared body of 'eval pairs' and 'eval folder'."""
    from ..evaluate.report import write_report
    from ..evaluate.runner import embed_images, evaluate_verification, group_rates

    fa = make_atlas(ctx, detector=detector, embedder=embedder, flip=flip)
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    with Bar("embedding") as bar:
        ts = embed_images(fa, [Path(k) for k in keys], keys=keys, select=select, progress=bar.update)
    point = fa.operating_point(threshold)
    ver = evaluate_verification(ts, pairs, threshold=point.threshold)
    extra: dict[str, Any] = {"threshold_source": point.source}
    person_group = _read_groups(groups)
    if person_group:
        extra["groups"] = group_rates(pairs, ver.scores, ver.failed, person_group, point.threshold)
    meta = {"model_id": fa.model_id, "detector": detector, "select": select, "images": len(keys)}
    _emit_report(write_report(out, title, meta, ver, None, extra), as_json)


@eval_app.command("pairs")
def eval_pairs(
    ctx: typer.Context,
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
    _require_plots()
    from ..evaluate.protocols import read_pairs_csv

    _eval_pairs(ctx, read_pairs_csv(pairs_csv), f"Pairs evaluation — {pairs_csv.name}",
                out or Path("faceatlas-eval/pairs"), threshold, groups, embedder, detector, flip, select, as_json)


@eval_app.command("folder")
def eval_folder(
    ctx: typer.Context,
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
    _require_plots()
    from ..evaluate.protocols import folder_pairs

    pairs = folder_pairs(folder, impostors_per_genuine=impostors, seed=seed)
    _eval_pairs(ctx, pairs, f"Folder evaluation — {folder.name}", out or Path("faceatlas-eval/folder"),
                threshold, groups, embedder, detector, flip, select, as_json)


def calibrate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="One sub-folder of images per person (an LFW images/ folder works).")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Name of this calibration (default: MODEL-FOLDER); saved as $FACEATLAS_HOME/calibrations/NAME.json "
        "and used only when chosen with --calibration NAME.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the calibration to this file instead.")] = None,
    embedder: EmbedderOpt = "sface",
    detector: DetectorOpt = "yunet",
    flip: FlipOpt = False,
    select: EvalSelectOpt = "central",
    max_images: Annotated[int, typer.Option("--max-images", help="Use at most this many images (0 = all).")] = 0,
) -> None:
    """Measure score → false-accept-rate for a model from every impostor pair of a labelled folder.

    The result is a named user calibration: it never replaces the shipped one; choose it with --calibration NAME.
    """
    from .. import config
    from ..evaluate.calibrate import calibrate_folder, calibration_target

    fa = make_atlas(ctx, detector=detector, embedder=embedder, flip=flip)
    label, target = calibration_target(config.home_dir() / "calibrations", fa.model_id, folder, name, out)
    with Bar("embedding") as bar:
        cal = calibrate_folder(fa, folder, select=select, max_images=max_images or None,
                               cache_dir=config.cache_dir() / "eval", progress=bar.update)
    target.parent.mkdir(parents=True, exist_ok=True)
    cal.save(target)
    typer.echo(
        f"calibration {label!r} for {fa.model_id}: {cal.n_impostors} impostor and {cal.n_genuine} genuine pairs, "
        f"lowest resolvable FAR {cal.min_far:.1e}; saved to {target}"
    )
    for far in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        if far >= cal.min_far:
            typer.echo(f"  far={far:g} → threshold {cal.threshold_for(far):.4f}")
    typer.echo(f"use it with: faceatlas --calibration {label} verify A B --threshold far=…  "
               "(the shipped calibration stays the default)")
