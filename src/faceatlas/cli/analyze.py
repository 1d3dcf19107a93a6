"""``faceatlas analyze``: face-analysis estimates (age, gender, expression, pose, eyes, liveness) per face."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidInputError
from .common import Batch, DetectorOpt, JsonOpt, ScoreOpt, emit, image_paths, make_atlas

HeadsOpt = Annotated[
    str | None,
    typer.Option("--heads", help="Comma-separated heads: age,gender,expression,pose,eyes,liveness,landmarks68 "
                                 "(default: all but landmarks68)."),
]


def analyze(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    heads: HeadsOpt = None,
    as_json: JsonOpt = False,
    detector: DetectorOpt = "yunet",
    det_score: ScoreOpt = 0.6,
) -> None:
    """Estimate attributes of every face; estimates are approximate and nothing is stored."""
    from ..analysis import ANALYSIS_HEADS, DEFAULT_HEADS

    names = DEFAULT_HEADS if heads is None else tuple(h.strip() for h in heads.split(",") if h.strip())
    unknown = [h for h in names if h not in ANALYSIS_HEADS]
    if unknown or not names:
        raise InvalidInputError("invalid_input", f"unknown head(s) {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(ANALYSIS_HEADS)}")
    fa = make_atlas(ctx, detector=detector, det_score=det_score)
    batch = Batch("analyze", as_json)
    for path, faces in batch.run(image_paths(images), lambda p: fa.analyze(p, names)):
        if as_json:
            emit({"image": str(path), "faces": [f.to_dict() for f in faces]})
            continue
        typer.echo(f"{path}: {len(faces)} face(s)")
        for f in faces:
            x1, y1, x2, y2 = f.box.to_list()
            parts = [_text(name, f.head(name)) for name in names if f.head(name) is not None]
            typer.echo(f"  #{f.index} box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}] " + " ".join(parts))
    raise typer.Exit(batch.exit_code)


def _text(name: str, value: Any) -> str:
    """One short human-readable field for a head result."""
    if name == "age":
        return f"age≈{value.years:.0f}"
    if name == "gender":
        return f"gender={value.label}({value.probability:.2f})"
    if name == "expression":
        return f"expression={value.label}({value.probabilities[value.label]:.2f})"
    if name == "pose":
        return f"yaw={value.yaw:+.0f}° pitch={value.pitch:+.0f}° roll={value.roll:+.0f}°"
    if name == "eyes":
        return f"eyes={'open' if value.open else 'closed?'}({value.left_open:.2f},{value.right_open:.2f})"
    if name == "liveness":
        return f"liveness={'live' if value.live else 'SPOOF?'}({value.score:.2f}≥{value.threshold:g})"
    if name == "landmarks68":
        return "landmarks68=68 points (see --json)"
    return f"{name}=…"
