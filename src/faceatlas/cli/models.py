"""``faceatlas models``: list the known models and verify local model files."""

from __future__ import annotations

import os
from typing import Any

import typer

from .common import EXIT_ERROR, EXIT_OK, JsonOpt, emit, options

models_app = typer.Typer(help="List and verify model files.", no_args_is_help=True)


def _store(ctx: typer.Context) -> Any:
    """The model store of the global options."""
    from ..models import ModelStore

    opts = options(ctx)
    return ModelStore(models_dir=opts.models_dir, offline=opts.offline)


@models_app.command("list")
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every known model: task, licence, commercial use and where it resolves from."""
    rows = _store(ctx).status(verify=False)
    if as_json:
        for r in rows:
            emit(_status_dict(r))
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
def models_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check the sha256 of every locally available model file (and its transformed copy)."""
    bad = False
    for r in _store(ctx).status(verify=True):
        if not r.available:
            line = f"{r.spec.name}: not available locally"
        else:
            line = f"{r.spec.name}: {'OK' if r.ok else 'FAILED'} {r.path} ({r.message})"
            bad = bad or not r.ok
        if as_json:
            emit(_status_dict(r))
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
