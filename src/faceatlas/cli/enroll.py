"""Enrolment and 1:N search: ``enroll``, ``enroll-dir`` and ``identify``."""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import FaceAtlasError
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    Bar,
    Batch,
    CollectionOpt,
    EmbedderOpt,
    GalleryOpt,
    JsonOpt,
    ThresholdOpt,
    collection_embedder,
    emit,
    error_line,
    image_paths,
    make_recognizer,
    open_gallery,
    require,
    require_gallery,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..recognition import QualityGates
    from ..types import Enrolment

StrictOpt = Annotated[bool, typer.Option("--strict", help="Reject samples closer to another person than to this one.")]
KeepCropsOpt = Annotated[bool, typer.Option("--keep-crops", help="Also store the aligned crop (allows re-embedding).")]
MultiFaceOpt = Annotated[str, typer.Option("--multi-face", help="Several faces in a photo: reject|largest|central|score.")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="Run on Ray: local (start one here), auto (join a running cluster) or ray://host:port.")]
RayActorsOpt = Annotated[int, typer.Option("--ray-actors", min=0, help="Ray actors (0 = one per CPU of the cluster).")]
MaxYawOpt = Annotated[float | None, typer.Option("--max-yaw", min=0, max=90,
                                                 help="Reject faces turned more than this many degrees (pose head).")]
MaxPitchOpt = Annotated[float | None, typer.Option("--max-pitch", min=0, max=90,
                                                   help="Reject faces tilted more than this many degrees (pose head).")]
EyesOpenOpt = Annotated[bool, typer.Option("--require-eyes-open", help="Reject faces with an eye that looks closed.")]
LivenessOpt = Annotated[bool, typer.Option(
    "--liveness", help="Refuse faces the passive liveness check takes for a print/screen replay (not a certified PAD).")]


def _gates(max_yaw: float | None, max_pitch: float | None, eyes_open: bool, liveness: bool) -> QualityGates:
    """Enrolment gates from the command-line options (defaults when none is given)."""
    from ..recognition import QualityGates

    return QualityGates(max_yaw=max_yaw, max_pitch=max_pitch, require_eyes_open=eyes_open, liveness=liveness)


def enroll(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Photos of the person.")],
    collection: CollectionOpt,
    person: Annotated[str, typer.Option("--person", "-p", help="Person id (created if new).")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    gallery: GalleryOpt = None,
    embedder: EmbedderOpt = "sface",
    strict: StrictOpt = False,
    keep_crops: KeepCropsOpt = False,
    multi_face: MultiFaceOpt = "reject",
    max_yaw: MaxYawOpt = None,
    max_pitch: MaxPitchOpt = None,
    require_eyes_open: EyesOpenOpt = False,
    liveness: LivenessOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Enrol one person from several photos; rejected photos are listed with their reason."""
    g = open_gallery(gallery)
    rec = make_recognizer(ctx, g, collection_embedder(g, collection, embedder))
    res = rec.enroll(collection, person, images, name=name, strict=strict, keep_crops=keep_crops,
                     multi_face=multi_face,  # type: ignore[arg-type]
                     gates=_gates(max_yaw, max_pitch, require_eyes_open, liveness))
    if as_json:
        emit(res.to_dict())
    else:
        typer.echo(f"{res.person}: enrolled {len(res.sample_ids)} face(s) in {res.collection}")
        for r in res.rejected:
            typer.echo(f"  rejected [{r.code}] {r.message}", err=True)
    raise typer.Exit(EXIT_OK if res.sample_ids else EXIT_ERROR)


def enroll_dir(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="One sub-folder of photos per person (folder name = person id).")],
    collection: CollectionOpt,
    gallery: GalleryOpt = None,
    embedder: EmbedderOpt = "sface",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Images analysed in parallel (0 = one per core).")] = 0,
    strict: StrictOpt = False,
    keep_crops: KeepCropsOpt = False,
    multi_face: MultiFaceOpt = "reject",
    max_yaw: MaxYawOpt = None,
    max_pitch: MaxPitchOpt = None,
    require_eyes_open: EyesOpenOpt = False,
    liveness: LivenessOpt = False,
    as_json: JsonOpt = False,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = 0,
) -> None:
    """Enrol a whole folder (one sub-folder per person), using every core; one line per person, then a summary."""
    require_gallery(gallery)
    if ray:
        require("enroll-dir --ray", "ray", "ray")
    from .. import config
    from ..evaluate.calibrate import labelled_images
    from ..types import Rejection

    start = time.perf_counter()
    paths, labels = labelled_images(folder)
    n_workers = workers or config.default_threads()
    g = open_gallery(gallery)
    rec = make_recognizer(ctx, g, collection_embedder(g, collection, embedder), threads=1 if n_workers > 1 else None)
    rec.ensure_collection(collection)
    gates = _gates(max_yaw, max_pitch, require_eyes_open, liveness)
    by_person: dict[str, list[Path]] = {}
    for p, lab in zip(paths, labels, strict=True):
        by_person.setdefault(lab, []).append(p)

    def work(path: Path) -> Any:
        try:
            return rec.prepare(path, multi_face=multi_face, gates=gates)  # type: ignore[arg-type]
        except FaceAtlasError as exc:
            return exc

    tally = _Tally()
    with ThreadPoolExecutor(max_workers=n_workers) as pool, Bar("enrol", len(paths)) as bar:
        if ray:
            from ..distributed.cli_support import ray_enrol_source

            source: Any = ray_enrol_source(ray, ray_actors, ctx, rec, collection, by_person, multi_face, gates,
                                           tally)
        else:
            source = _prepared_by_person(pool, work, _ordered(by_person), ahead=4 * n_workers)
        for person, results in source:
            prepared, rejected = [], []
            for path, res in results:
                if isinstance(res, FaceAtlasError):
                    rejected.append(Rejection(str(path), res.code, res.message))
                elif isinstance(res, Rejection):
                    rejected.append(res)
                elif getattr(res, "skipped", False):
                    tally.skipped += 1
                else:
                    prepared.append(res)
                bar.advance()
            if not prepared and not rejected:
                continue
            try:
                began = time.perf_counter()
                out = rec.enroll_prepared(collection, person, prepared, rejected, strict=strict, keep_crops=keep_crops)
                tally.write_s += time.perf_counter() - began
            except FaceAtlasError as exc:
                tally.failed += 1
                error_line(exc, prefix=f"{person}: ")
                continue
            tally.add(out, len(results))
            # Printed only after the write committed: each line is an acknowledged write.
            if as_json:
                emit(out.to_dict())
                sys.stdout.flush()
            else:
                typer.echo(_person_line(out))
    if not as_json:
        typer.echo(tally.summary(time.perf_counter() - start))
    raise typer.Exit(EXIT_ERROR if tally.failed else EXIT_OK)


def _person_line(out: Enrolment) -> str:
    """One person's enrolment: faces enrolled, and each rejected image with its reason code and message."""
    line = f"{out.person}: {len(out.sample_ids)} enrolled"
    if out.rejected:
        reasons = "; ".join(f"{Path(r.image).name} [{r.code}] {r.message}" for r in out.rejected)
        line += f", {len(out.rejected)} rejected: {reasons}"
    return line


class _Tally:
    """Running totals of an enroll-dir run."""

    def __init__(self) -> None:
        self.people = 0
        self.images = 0
        self.enrolled = 0
        self.failed = 0
        self.skipped = 0
        self.rate_note = ""
        self.write_s = 0.0
        self.reasons: Counter[str] = Counter()

    def add(self, out: Enrolment, images: int) -> None:
        """Count one person's committed enrolment."""
        self.people += 1
        self.images += images
        self.enrolled += len(out.sample_ids)
        self.reasons.update(r.code for r in out.rejected)

    def summary(self, seconds: float) -> str:
        """The closing line: people, images, faces enrolled, rejections by reason, time."""
        rejected = sum(self.reasons.values())
        by_reason = ", ".join(f"{code} {n}" for code, n in sorted(self.reasons.items()))
        failed = f", {self.failed} people failed" if self.failed else ""
        skipped = f", {self.skipped} already enrolled (skipped)" if self.skipped else ""
        return (f"{self.people} people, {self.images} images: {self.enrolled} faces enrolled, {rejected} rejected"
                f"{f' ({by_reason})' if by_reason else ''}{skipped}{failed} in {seconds:.1f}s{self.rate_note}"
                f"{f'; gallery writes {self.write_s:.1f}s' if self.rate_note else ''}")


def _prepared_by_person(
    pool: ThreadPoolExecutor, work: Callable[[Path], Any], people: Iterator[tuple[str, list[Path]]], ahead: int
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


def identify(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Photos or folders of photos (searched recursively) to identify.")],
    collection: CollectionOpt,
    gallery: GalleryOpt = None,
    k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Candidates per face.")] = 5,
    threshold: ThresholdOpt = None,
    liveness: LivenessOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Who is in each photo? Every face with its best candidates and a decision (unknown below the threshold).

    With --liveness a face taken for a replay is not searched and shows as "spoof?" (``live: false`` in JSON).
    """
    g = open_gallery(gallery)
    rec = make_recognizer(ctx, g, collection_embedder(g, collection, "sface"))
    batch = Batch("identify", as_json, fatal=("not_found", "model_mismatch"))
    for path, results in batch.run(image_paths(images), lambda p: rec.identify(collection, p, k=k, threshold=threshold,
                                                                                liveness=liveness)):
        if as_json:
            emit({"image": str(path), "faces": [r.to_dict() for r in results]})
            continue
        typer.echo(f"{path}: {len(results)} face(s)")
        for r in results:
            if r.live is False:
                typer.echo(f"  #{r.face.index} spoof? (passive liveness score {r.face.head('liveness').score:.3f}; "
                           "not searched)")
                continue
            who = r.decision.external_id if r.decision else "unknown"
            top = f"{r.matches[0].external_id} {r.matches[0].score:.3f}" if r.matches else "no candidates"
            typer.echo(f"  #{r.face.index} {who}  (best: {top}; threshold {r.threshold:.3f})")
    raise typer.Exit(batch.exit_code)
