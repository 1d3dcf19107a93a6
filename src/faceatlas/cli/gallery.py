"""``faceatlas collection`` (create, list, delete, export, import, reembed) and ``faceatlas person`` (list, show, delete)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import FaceAtlasError
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    CollectionOpt,
    EmbedderOpt,
    GalleryOpt,
    JsonOpt,
    emit,
    make_recognizer,
    open_gallery,
)

collection_app = typer.Typer(help="Create, list, delete, export, import and re-embed collections.", no_args_is_help=True)
person_app = typer.Typer(help="List, show and delete enrolled people.", no_args_is_help=True)


# -- collections ------------------------------------------------------------------------------------------------------


@collection_app.command("create")
def collection_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection name.")],
    gallery: GalleryOpt = None,
    embedder: EmbedderOpt = "sface",
    as_json: JsonOpt = False,
) -> None:
    """Create a collection pinned to an embedding model."""
    from ..errors import NotFoundError

    rec = make_recognizer(ctx, open_gallery(gallery), embedder)
    try:
        rec.gallery.get_collection(name)
        raise FaceAtlasError("conflict", f"collection {name!r} already exists")
    except NotFoundError:
        pass
    _collection_out(rec.ensure_collection(name), as_json)


def _collection_out(coll: Any, as_json: bool) -> None:
    """Print one collection."""
    c = coll.contract
    if as_json:
        emit({"name": coll.name, "model_id": c.model_id, "dim": c.dim, "preprocessing": c.preprocessing,
              "persons": coll.persons, "samples": coll.samples})
    else:
        typer.echo(f"{coll.name}: model {c.model_id} (dim {c.dim}), {coll.persons} people, {coll.samples} faces")


@collection_app.command("list")
def collection_list(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their model and sizes."""
    for coll in open_gallery(gallery).list_collections():
        _collection_out(coll, as_json)


@collection_app.command("delete")
def collection_delete(name: Annotated[str, typer.Argument()], gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a collection, its people and every template (gone from the file too)."""
    g = open_gallery(gallery)
    n = g.delete_collection(name)
    erasure = _erasure(g, n)
    if as_json:
        emit({"deleted": name, "samples": int(n), "erasure": erasure})
    else:
        typer.echo(f"deleted collection {name} ({n} faces){_erasure_note(erasure)}")


@collection_app.command("export")
def collection_export(name: Annotated[str, typer.Argument()], file: Annotated[Path, typer.Argument()],
                      gallery: GalleryOpt = None) -> None:
    """Export a collection to one file (templates encrypted when the gallery has a key)."""
    path = open_gallery(gallery).export_collection(name, file)
    typer.echo(f"exported {name} to {path}")


@collection_app.command("import")
def collection_import(file: Annotated[Path, typer.Argument()], gallery: GalleryOpt = None,
                      name: Annotated[str | None, typer.Option("--name", help="Import under another name.")] = None) -> None:
    """Import a collection exported by 'collection export'."""
    coll = open_gallery(gallery).import_collection(file, name=name)
    typer.echo(f"imported {coll.name}: {coll.persons} people, {coll.samples} faces")


@collection_app.command("reembed")
def collection_reembed(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection to migrate.")],
    to: Annotated[str, typer.Option("--to", help="Target embedder model.")],
    new_name: Annotated[str | None, typer.Option("--new-name", help="Name of the migrated collection.")] = None,
    gallery: GalleryOpt = None,
) -> None:
    """Re-embed a collection with another model from its stored face crops (enrolled with --keep-crops)."""
    from ..recognition.reembed import reembed_collection

    rec = make_recognizer(ctx, open_gallery(gallery), to)
    target = new_name or f"{name}-{rec.atlas.model_id}"
    moved, missing = reembed_collection(rec, name, target)
    typer.echo(f"re-embedded {moved} faces of {name} into {target} with {rec.atlas.model_id}; {missing} without a crop")
    raise typer.Exit(EXIT_ERROR if missing and not moved else EXIT_OK)


# -- people -----------------------------------------------------------------------------------------------------------


@person_app.command("list")
def person_list(collection: CollectionOpt, gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List the people of a collection (text mode: a header line, then one tab-separated line per person)."""
    people = open_gallery(gallery).list_persons(collection)
    if not as_json:
        typer.echo("person\tname\tfaces\tid")
    for p in people:
        if as_json:
            emit({"id": p.id, "person": p.external_id, "name": p.name, "faces": p.samples, "metadata": dict(p.metadata)})
        else:
            typer.echo(f"{p.external_id}\t{p.name or ''}\t{p.samples} face(s)\tid {p.id}")


@person_app.command("show")
def person_show(person: Annotated[str, typer.Argument(help="External id (or #N for internal id N).")],
                collection: CollectionOpt, gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Show one person and their enrolled faces (never the templates)."""
    g = open_gallery(gallery)
    p = g.get_person(collection, _ref(person))
    samples = g.list_samples(collection, p.id)
    obj: dict[str, Any] = {"id": p.id, "person": p.external_id, "name": p.name, "metadata": dict(p.metadata),
           "faces": [{"id": s.id, "quality": s.quality, "detection_score": s.detection_score,
                      "box": None if s.box is None else s.box.to_list(), "image_sha256": s.image_sha256,
                      "has_crop": s.has_crop} for s in samples]}
    if as_json:
        emit(obj)
        return
    typer.echo(f"{p.external_id} (id {p.id}) {p.name or ''}: {len(samples)} face(s)")
    for f in obj["faces"]:
        q = "n/a" if f["quality"] is None else f"{f['quality']:.2f}"
        typer.echo(f"  face {f['id']}: quality {q}, box {f['box']}")


@person_app.command("delete")
def person_delete(person: Annotated[str, typer.Argument(help="External id (or #N for internal id N).")],
                  collection: CollectionOpt, gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a person and all their templates (from the index and the file)."""
    g = open_gallery(gallery)
    n = g.delete_person(collection, _ref(person))
    erasure = _erasure(g, n)
    if as_json:
        emit({"deleted": person, "samples": int(n), "erasure": erasure})
    else:
        typer.echo(f"deleted {person} ({n} faces){_erasure_note(erasure)}")


#: How long a CLI delete waits for another process's read snapshot to end before it reports the erasure as pending.
ERASURE_WAIT_S = 30.0


def _erasure(g: Any, result: Any) -> str:
    """Wait (bounded) for the deleted bytes to be overwritten on disk: this process's retries end when it exits."""
    if getattr(result, "erased", True) or g.finish_erasure(ERASURE_WAIT_S):
        return "complete"
    return "pending"


def _erasure_note(erasure: str) -> str:
    """A warning for text output when the bytes could not be overwritten yet."""
    if erasure == "complete":
        return ""
    return ("; WARNING: another process holds the gallery open for reading, so the deleted bytes stay in the file "
            "until the next write to this gallery succeeds in overwriting them")


def _ref(person: str) -> str | int:
    """Person reference: external ids are strings; '#12' means internal id 12."""
    return int(person[1:]) if person.startswith("#") and person[1:].isdigit() else person
