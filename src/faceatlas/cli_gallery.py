"""Gallery commands: collections, people, enrolment (files and folders) and 1:N identification."""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import FaceAtlasError

EXIT_OK, EXIT_ERROR = 0, 2

collection_app = typer.Typer(help="Create, list, delete, export, import and re-embed collections.", no_args_is_help=True)
person_app = typer.Typer(help="List, show and delete enrolled people.", no_args_is_help=True)

GalleryOpt = Annotated[
    str | None,
    typer.Option("--gallery", help="SQLite path, milvus-lite:PATH or milvus://host:port (default: $FACEATLAS_HOME/gallery.db)."),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")]
EmbedderOpt = Annotated[str, typer.Option("--embedder", help="Embedder model for new collections.")]
ThresholdOpt = Annotated[
    str | None, typer.Option("--threshold", "-t", help="Cosine threshold (0.3) or operating point (far=1e-3).")
]


def _emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on its own line."""
    typer.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _gallery(path: str | None) -> Any:
    """Open the gallery (creating the default one when needed)."""
    from .gallery import Gallery
    from .recognition import default_gallery_path

    target = path or default_gallery_path()
    if "://" not in target and not target.startswith(("milvus-lite:", "sqlite:")):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    return Gallery.open(target)


def _recognizer(gallery: str | None, embedder: str = "sface", threads: int | None = None) -> Any:
    """A Recognizer on the chosen gallery with the global CLI model options."""
    from .cli import _atlas
    from .recognition import Recognizer

    atlas = _atlas(embedder=embedder) if threads is None else _atlas(embedder=embedder, threads=threads)
    return Recognizer(atlas, _gallery(gallery))


def _embedder_for(gallery: Any, collection: str, default: str) -> str:
    """The embedder a collection was created with (so identify/enrol use the same model)."""
    from .errors import NotFoundError

    try:
        return str(gallery.get_collection(collection).contract.model_id)
    except NotFoundError:
        return default


# -- collections ---------------------------------------------------------------------------------------------------


@collection_app.command("create")
def collection_create(
    name: Annotated[str, typer.Argument(help="Collection name.")], gallery: GalleryOpt = None, embedder: EmbedderOpt = "sface",
    as_json: JsonOpt = False,
) -> None:
    """Create a collection pinned to an embedding model."""
    rec = _recognizer(gallery, embedder)
    from .errors import NotFoundError

    try:
        rec.gallery.get_collection(name)
        raise FaceAtlasError("conflict", f"collection {name!r} already exists")
    except NotFoundError:
        pass
    coll = rec.ensure_collection(name)
    _collection_out(coll, as_json)


def _collection_out(coll: Any, as_json: bool) -> None:
    """Print one collection."""
    c = coll.contract
    if as_json:
        _emit({"name": coll.name, "model_id": c.model_id, "dim": c.dim, "preprocessing": c.preprocessing,
               "persons": coll.persons, "samples": coll.samples})
    else:
        typer.echo(f"{coll.name}: model {c.model_id} (dim {c.dim}), {coll.persons} people, {coll.samples} faces")


@collection_app.command("list")
def collection_list(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their model and sizes."""
    g = _gallery(gallery)
    for coll in g.list_collections():
        _collection_out(coll, as_json)


@collection_app.command("delete")
def collection_delete(name: Annotated[str, typer.Argument()], gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a collection, its people and every template (gone from the file too)."""
    n = _gallery(gallery).delete_collection(name)
    _emit({"deleted": name, "samples": n}) if as_json else typer.echo(f"deleted collection {name} ({n} faces)")


@collection_app.command("export")
def collection_export(name: Annotated[str, typer.Argument()], file: Annotated[Path, typer.Argument()],
                      gallery: GalleryOpt = None) -> None:
    """Export a collection to one file (templates encrypted when the gallery has a key)."""
    path = _gallery(gallery).export_collection(name, file)
    typer.echo(f"exported {name} to {path}")


@collection_app.command("import")
def collection_import(file: Annotated[Path, typer.Argument()], gallery: GalleryOpt = None,
                      name: Annotated[str | None, typer.Option("--name", help="Import under another name.")] = None) -> None:
    """Import a collection exported by 'collection export'."""
    coll = _gallery(gallery).import_collection(file, name=name)
    typer.echo(f"imported {coll.name}: {coll.persons} people, {coll.samples} faces")


@collection_app.command("reembed")
def collection_reembed(
    name: Annotated[str, typer.Argument(help="Collection to migrate.")],
    to: Annotated[str, typer.Option("--to", help="Target embedder model.")],
    new_name: Annotated[str | None, typer.Option("--new-name", help="Name of the migrated collection.")] = None,
    gallery: GalleryOpt = None,
) -> None:
    """Re-embed a collection with another model from its stored face crops (enrolled with --keep-crops)."""
    from .migrate import reembed_collection

    rec = _recognizer(gallery, to)
    target = new_name or f"{name}-{rec.atlas.model_id}"
    moved, missing = reembed_collection(rec, name, target)
    typer.echo(f"re-embedded {moved} faces of {name} into {target} with {rec.atlas.model_id}; {missing} without a crop")
    raise typer.Exit(EXIT_ERROR if missing and not moved else EXIT_OK)


# -- people --------------------------------------------------------------------------------------------------------


@person_app.command("list")
def person_list(collection: CollectionOpt, gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List the people of a collection."""
    for p in _gallery(gallery).list_persons(collection):
        if as_json:
            _emit({"id": p.id, "person": p.external_id, "name": p.name, "faces": p.samples, "metadata": dict(p.metadata)})
        else:
            typer.echo(f"{p.external_id}\t{p.name or ''}\t{p.samples} face(s)\tid {p.id}")


@person_app.command("show")
def person_show(person: Annotated[str, typer.Argument(help="External id (or numeric internal id).")],
                collection: CollectionOpt, gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """Show one person and their enrolled faces (never the templates)."""
    g = _gallery(gallery)
    p = g.get_person(collection, _ref(person))
    samples = g.list_samples(collection, p.id)
    obj = {"id": p.id, "person": p.external_id, "name": p.name, "metadata": dict(p.metadata),
           "faces": [{"id": s.id, "quality": s.quality, "detection_score": s.detection_score,
                      "box": None if s.box is None else s.box.to_list(), "image_sha256": s.image_sha256,
                      "has_crop": s.has_crop} for s in samples]}
    if as_json:
        _emit(obj)
    else:
        typer.echo(f"{p.external_id} (id {p.id}) {p.name or ''}: {len(samples)} face(s)")
        for f in obj["faces"]:
            q = "n/a" if f["quality"] is None else f"{f['quality']:.2f}"
            typer.echo(f"  face {f['id']}: quality {q}, box {f['box']}")


@person_app.command("delete")
def person_delete(person: Annotated[str, typer.Argument()], collection: CollectionOpt, gallery: GalleryOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Delete a person and all their templates (from the index and the file)."""
    n = _gallery(gallery).delete_person(collection, _ref(person))
    _emit({"deleted": person, "samples": n}) if as_json else typer.echo(f"deleted {person} ({n} faces)")


def _ref(person: str) -> str | int:
    """Person reference: external ids are strings; '#12' means internal id 12."""
    return int(person[1:]) if person.startswith("#") and person[1:].isdigit() else person


# -- enrol ---------------------------------------------------------------------------------------------------------


EnrolFlags = dict[str, Any]


def enroll(
    images: Annotated[list[Path], typer.Argument(help="Photos of the person.")],
    collection: CollectionOpt,
    person: Annotated[str, typer.Option("--person", "-p", help="Person id (created if new).")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    gallery: GalleryOpt = None,
    embedder: EmbedderOpt = "sface",
    strict: Annotated[bool, typer.Option("--strict", help="Reject samples closer to another person than to this one.")] = False,
    keep_crops: Annotated[bool, typer.Option("--keep-crops", help="Also store the aligned crop (allows re-embedding).")] = False,
    multi_face: Annotated[str, typer.Option("--multi-face", help="Several faces: reject|largest|central|score.")] = "reject",
    as_json: JsonOpt = False,
) -> None:
    """Enrol one person from several photos; rejected photos are listed with their reason."""
    g = _gallery(gallery)
    rec = _recognizer_on(g, _embedder_for(g, collection, embedder))
    res = rec.enroll(collection, person, images, name=name, strict=strict, keep_crops=keep_crops,
                     multi_face=multi_face)
    _enrolment_out(res, as_json)
    raise typer.Exit(EXIT_OK if res.sample_ids else EXIT_ERROR)


def _recognizer_on(gallery: Any, embedder: str, threads: int | None = None) -> Any:
    """A Recognizer on an already-open gallery."""
    from .cli import _atlas
    from .recognition import Recognizer

    atlas = _atlas(embedder=embedder) if threads is None else _atlas(embedder=embedder, threads=threads)
    return Recognizer(atlas, gallery)


def _enrolment_out(res: Any, as_json: bool) -> None:
    """Print an enrolment result."""
    if as_json:
        _emit(res.to_dict())
        return
    typer.echo(f"{res.person}: enrolled {len(res.sample_ids)} face(s) in {res.collection}")
    for r in res.rejected:
        typer.echo(f"  rejected [{r.code}] {r.message}", err=True)


def enroll_dir(
    folder: Annotated[Path, typer.Argument(help="One sub-folder of photos per person (folder name = person id).")],
    collection: CollectionOpt,
    gallery: GalleryOpt = None,
    embedder: EmbedderOpt = "sface",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Images analysed in parallel (0 = one per core).")] = 0,
    strict: Annotated[bool, typer.Option("--strict", help="Reject samples closer to another person.")] = False,
    keep_crops: Annotated[bool, typer.Option("--keep-crops", help="Also store aligned face crops.")] = False,
    multi_face: Annotated[str, typer.Option("--multi-face", help="reject|largest|central|score.")] = "reject",
    as_json: JsonOpt = False,
) -> None:
    """Enrol a whole folder (one sub-folder per person), using every core; one line per person written."""
    from . import config
    from .evaluate.calibrate import labelled_images
    from .recognition import prepare_face

    paths, labels = labelled_images(folder)
    n_workers = workers or config.default_threads()
    g = _gallery(gallery)
    rec = _recognizer_on(g, _embedder_for(g, collection, embedder), threads=1 if n_workers > 1 else None)
    rec.ensure_collection(collection)
    by_person: dict[str, list[Path]] = {}
    for p, lab in zip(paths, labels, strict=True):
        by_person.setdefault(lab, []).append(p)

    def work(path: Path) -> Any:
        try:
            return prepare_face(rec.atlas, path, multi_face=multi_face)  # type: ignore[arg-type]
        except FaceAtlasError as exc:
            return exc

    failed = 0
    from .types import Rejection

    with ThreadPoolExecutor(max_workers=n_workers) as pool, _Bar(len(paths)) as advance:
        for person, results in _prepared_by_person(pool, work, _ordered(by_person), ahead=4 * n_workers):
            prepared, rejected = [], []
            for path, res in results:
                if isinstance(res, FaceAtlasError):
                    rejected.append(Rejection(str(path), res.code, res.message))
                else:
                    prepared.append(res)
                advance()
            try:
                out = rec.enroll_prepared(collection, person, prepared, rejected, strict=strict, keep_crops=keep_crops)
            except FaceAtlasError as exc:
                failed += 1
                typer.echo(f"faceatlas: error [{exc.code}]: {person}: {exc.message}", err=True)
                continue
            # Printed only after the write committed: each line is an acknowledged write.
            if as_json:
                _emit(out.to_dict())
                sys.stdout.flush()
            elif out.rejected:
                typer.echo(f"{person}: {len(out.sample_ids)} enrolled, {len(out.rejected)} rejected")
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


def _prepared_by_person(
    pool: ThreadPoolExecutor, work: Any, people: Iterator[tuple[str, list[Path]]], ahead: int
) -> Iterator[tuple[str, list[tuple[Path, Any]]]]:
    """Each person with ``(path, work(path))`` for their images, in order, keeping up to ``ahead`` images in flight.

    Work is submitted across person boundaries, so workers stay busy when people have one photo each (most of LFW);
    a person is handed back as soon as their last image is done."""
    queue: deque[tuple[str, Path, Any]] = deque()
    flat = ((person, path) for person, imgs in people for path in imgs)

    def refill() -> None:
        while len(queue) < max(1, ahead):
            nxt = next(flat, None)
            if nxt is None:
                return
            queue.append((nxt[0], nxt[1], pool.submit(work, nxt[1])))

    done: list[tuple[Path, Any]] = []
    refill()
    while queue:
        person, path, future = queue.popleft()
        done.append((path, future.result()))
        refill()
        if not queue or queue[0][0] != person:
            yield person, done
            done = []


def _ordered(by_person: dict[str, list[Path]]) -> Iterator[tuple[str, list[Path]]]:
    """People in name order."""
    for person in sorted(by_person):
        yield person, by_person[person]


class _Bar:
    """Context manager yielding an 'advance' callable; a rich bar on stderr when it is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._progress: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("enrol"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True))
        self._progress.start()
        task = self._progress.add_task("enrol", total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- identify ------------------------------------------------------------------------------------------------------


def identify(
    images: Annotated[list[Path], typer.Argument(help="Photos to identify.")],
    collection: CollectionOpt,
    gallery: GalleryOpt = None,
    k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Candidates per face.")] = 5,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who is in each photo? Every face with its best candidates and a decision (unknown below the threshold)."""
    g = _gallery(gallery)
    rec = _recognizer_on(g, _embedder_for(g, collection, "sface"))
    failed = False
    for path in images:
        try:
            results = rec.identify(collection, path, k=k, threshold=threshold)
        except FaceAtlasError as exc:
            if exc.code in ("not_found", "model_mismatch"):
                raise
            failed = True
            if as_json:
                _emit({"image": str(path), "error": exc.to_dict()})
            typer.echo(f"faceatlas: error [{exc.code}]: {exc.message}", err=True)
            continue
        if as_json:
            _emit({"image": str(path), "faces": [r.to_dict() for r in results]})
            continue
        typer.echo(f"{path}: {len(results)} face(s)")
        for r in results:
            who = r.decision.external_id if r.decision else "unknown"
            top = f"{r.matches[0].external_id} {r.matches[0].score:.3f}" if r.matches else "no candidates"
            typer.echo(f"  #{r.face.index} {who}  (best: {top}; threshold {r.threshold:.3f})")
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach the gallery commands to the main CLI."""
    app.add_typer(collection_app, name="collection")
    app.add_typer(person_app, name="person")
    app.command("enroll")(enroll)
    app.command("enroll-dir")(enroll_dir)
    app.command("identify")(identify)
