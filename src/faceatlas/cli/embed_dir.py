"""``embed-dir``: every face of a folder of photos as templates in a Parquet file (locally or on Ray)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import EXIT_ERROR, EXIT_OK, Bar, EmbedderOpt, make_atlas, require

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write (one row per face).")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="Run on Ray: local (start one here), auto (join a running cluster) or ray://host:port.")]
RayActorsOpt = Annotated[int, typer.Option("--ray-actors", min=0, help="Ray actors (0 = one per CPU of the cluster).")]


def embed_dir(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively, following links).")],
    out: OutOpt,
    embedder: EmbedderOpt = "sface",
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = 0,
) -> None:
    """Templates, boxes, detection scores, quality and image hash of every face in a folder, as Parquet."""
    require("embed-dir", "ray", "pyarrow", *(("ray",) if ray else ()))
    from ..distributed.cli_support import worker_settings
    from ..distributed.parquet import TemplateWriter
    from ..distributed.ray_runner import NodeTally, chunks_of
    from ..distributed.worker import ChunkResult, PhotoWorker

    start = time.perf_counter()
    paths = images_under(folder)
    atlas = make_atlas(ctx, embedder=embedder)
    settings = worker_settings(ctx, atlas)
    writer = TemplateWriter(out, atlas.model_id, atlas.embedder.dim)
    counts: Counter[str] = Counter()
    nodes = NodeTally()
    pool: Any = None
    try:
        if ray:
            from ..distributed.ray_runner import RayPhotoPool, guard_stdout

            guard_stdout()  # stdout carries the command's output only
            pool = RayPhotoPool(ray, settings, actors=ray_actors)
            results: Iterator[ChunkResult] = pool.map_ordered("embed", chunks_of(paths))
        else:
            worker = PhotoWorker(settings, node="local", pipeline=atlas)
            results = (worker.embed(chunk) for chunk in chunks_of(paths, 32))
        with Bar("embed", len(paths)) as bar:
            for res in results:
                nodes.add(res)
                for item in res.items:
                    counts["images"] += 1
                    counts["faces"] += len(item.faces)
                    counts["errors" if item.error else "no_face" if not item.faces else "with_faces"] += 1
                    if item.error:
                        typer.echo(f"faceatlas: error: {item.source}: {item.error}", err=True)
                    writer.add(item.faces)
                    bar.advance()
    finally:
        writer.close()
        if pool is not None:
            pool.shutdown()
    seconds = time.perf_counter() - start
    where = f"; images per node: {', '.join(f'{k[:8]} {v}' for k, v in sorted(nodes.nodes.items()))}" if ray else ""
    typer.echo(f"{counts['images']} images: {counts['faces']} faces written to {out}, {counts['no_face']} without a "
               f"face, {counts['errors']} errors in {seconds:.1f}s ({counts['images'] / max(seconds, 1e-9):.1f} "
               f"images/s{where})")
    raise typer.Exit(EXIT_ERROR if counts["errors"] else EXIT_OK)


def images_under(folder: Path) -> list[str]:
    """Image files below ``folder``, sorted, following symbolic links (a folder of links to people works)."""
    import os

    from ..errors import InvalidInputError
    from ..evaluate import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise InvalidInputError("invalid_input", f"{folder} is not a folder")
    found = [os.path.join(root, name) for root, _, files in os.walk(folder, followlinks=True) for name in files
             if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)
