"""The root ``faceatlas`` typer app, its global options and the console entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import config
from ..errors import FaceAtlasError
from .common import EXIT_ERROR, GlobalOptions, fail

app = typer.Typer(
    name="faceatlas",
    help="Face detection, alignment, embedding and verification.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wraps long option help and defaults instead of cutting them with '…'
    context_settings={"max_content_width": 120},  # use wide terminals (click stops at 80 columns by default)
)


@app.callback()
def _global(
    ctx: typer.Context,
    models_dir: Annotated[
        Path | None, typer.Option("--models-dir", help="Extra models folder (default: $FACEATLAS_MODELS).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Threads per model session.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
    calibration: Annotated[str | None, typer.Option(
        "--calibration", help="Score→FAR calibration for far=… thresholds: a name from 'faceatlas calibrate --name' "
        "or a file (default: the shipped one).")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Model choice: default (YuNet + SFace, LFW 99.38 %) or fast (YuNet + faceplugin-512: ~0.7x "
        "the time per image, LFW 99.07 %, templates not comparable with SFace's); --detector/--embedder still win.")] = None,
) -> None:
    """faceatlas — face recognition from the shell."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = GlobalOptions(models_dir=models_dir, offline=True if offline else None, threads=threads, verbose=verbose,
                            calibration=calibration, profile=profile)


def main() -> None:
    """Console entry point: run the app, turning any uncaught library error into one line and exit 2."""
    try:
        app()
    except FaceAtlasError as exc:
        fail(exc, as_json="--json" in sys.argv)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        typer.echo("faceatlas: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, never a traceback
        if config.debug():
            raise
        typer.echo(f"faceatlas: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_ERROR)
