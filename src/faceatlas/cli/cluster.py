"""``faceatlas cluster``: group the faces of a photo folder by person, then promote groups into a gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..errors import FaceAtlasError
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    Bar,
    DetectorOpt,
    EmbedderOpt,
    GalleryOpt,
    JsonOpt,
    emit,
    fail,
    make_atlas,
    open_gallery,
    require,
)


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

#: Optional modules each clustering algorithm needs (the default, chinese_whispers, needs none).
_ALGORITHM_NEEDS = {"agglomerative": ("scipy",), "hdbscan": ("sklearn",), "dbscan": ("sklearn",)}


#: Where the work runs with --ray, and how far the local graph step goes (benchmarks/cluster_scale.py, 2 cores).
_RAY_HELP = (
    "Embed the photos on Ray: local (start one here), auto (join a running cluster) or ray://host:port. Actors (one "
    "per CPU) read the images from their paths, so every node must see the same paths. The clustering itself stays in "
    "this process and compares every face with every other: 16k faces take 4 CPU-seconds and 0.3 GiB, 100k faces "
    "106 CPU-seconds and 1.8 GiB, 300k faces 17 CPU-minutes and 5.3 GiB; past about 300k faces it needs a kNN search "
    "(the gallery's index or Milvus), which this command does not do."
)


def _ray_embedder(ctx: typer.Context, atlas: Any, address: str, actors: int) -> Any:
    """The Ray pool that embeds the photos for ``cluster --ray`` (one pipeline and one model thread per actor)."""
    from ..distributed.cli_support import worker_settings
    from ..distributed.cluster import RayPhotoEmbedder
    from ..distributed.ray_runner import guard_stdout

    guard_stdout()  # stdout carries the command's output only
    return RayPhotoEmbedder(address, worker_settings(ctx, atlas), atlas.embedder.dim, actors=actors)


def _cluster_threshold(value: str | None, atlas: Any) -> float | None:
    """A clustering threshold from a number or an operating point (far=...), None for the default."""
    if value is None:
        return None
    return float(atlas.operating_point(value).threshold)


@cluster_app.command("run", hidden=True)
def cluster_run(
    ctx: typer.Context,
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
    ray: Annotated[str | None, typer.Option("--ray", help=_RAY_HELP)] = None,
    ray_actors: Annotated[int, typer.Option("--ray-actors", min=0, help="Ray actors (0 = one per CPU of the cluster).")] = 0,
) -> None:
    """Group every face in a photo folder by person, without labels."""
    from ..cluster import ClusterState, cluster_folder, write_contact_sheet

    on_ray: Any = None
    try:
        require("cluster", "cluster", *_ALGORITHM_NEEDS.get(algorithm or "", ()))
        if ray:
            require("cluster --ray", "ray", "ray")
        state = ClusterState.load(state_file) if state_file is not None and state_file.is_file() else None
        if state is not None:
            embedder = state.model_id
        atlas = make_atlas(ctx, detector=detector, embedder=embedder)
        on_ray = _ray_embedder(ctx, atlas, ray, ray_actors) if ray else None
        with Bar("faces", transient=True) as bar:
            result, state = cluster_folder(folder, atlas, state=state, algorithm=algorithm,
                                           threshold=_cluster_threshold(threshold, atlas), min_size=min_size,
                                           min_face=min_face, progress=bar.update, embed=on_ray)
        if state_file is not None:
            state.save(state_file)
        if html_out is not None:
            write_contact_sheet(result, html_out)
    except FaceAtlasError as exc:
        fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    for p in result.problems:
        typer.echo(f"faceatlas: warning [{p.code}]: {p.message}", err=True)
    if as_json:
        emit(result.to_dict())
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
    if on_ray is not None and on_ray.note():
        typer.echo(on_ray.note())
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
    from ..cluster import ClusterState, promote

    try:
        state = ClusterState.load(state_file)
        with open_gallery(gallery) as g:
            res = promote(state, cluster, g, collection, person, name)
        state.save(state_file)
    except FaceAtlasError as exc:
        fail(exc, as_json)
        raise typer.Exit(EXIT_ERROR) from None
    for warning in res.warnings:
        typer.echo(f"faceatlas: warning: {warning}", err=True)
    if as_json:
        emit(res.to_dict())
    else:
        made = " (new collection)" if res.created_collection else ""
        who = "new person" if res.created_person else "existing person"
        typer.echo(f"cluster {res.cluster}: {res.samples} samples enrolled as {who} {res.person!r} "
                   f"in collection {res.collection!r}{made}")
    raise typer.Exit(EXIT_OK)
