"""The work behind the endpoints: one FaceAtlas and one Recognizer per process, CPU work on a bounded pool."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..errors import FaceAtlasError, ModelError, NotFoundError
from ..facade import FaceAtlas
from ..images import ImageInput, LoadedImage, load_image
from ..pipeline import EMBEDDING, FaceRequest
from ..recognition import Recognizer
from ..thresholds import OperatingPoint
from ..types import Face, Rejection
from .errors import ApiError
from .inputs import Upload
from .settings import ServerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


def open_gallery(path: str | None) -> Any:
    """Open (creating when needed) the gallery the server works on."""
    from ..gallery import Gallery

    return Gallery.open(path)


def session_threads(settings: ServerSettings) -> int:
    """Threads per model session so that workers × concurrent jobs × threads does not oversubscribe the cores."""
    from ..config import default_threads

    return max(1, default_threads() // (settings.workers * settings.jobs))


@dataclass(frozen=True)
class Analysis:
    """The faces of one image with the heads asked for, and how long each stage took (milliseconds)."""

    width: int
    height: int
    faces: list[Face]
    timings: dict[str, float]


class Service:
    """Detection, verification, enrolment and identification for the endpoints; thread-safe."""

    def __init__(self, settings: ServerSettings, atlas: FaceAtlas | None = None, gallery: Any = None) -> None:
        self.settings = settings
        self.atlas = atlas or FaceAtlas(
            settings.detector,
            settings.embedder,
            models_dir=settings.models_dir,
            offline=settings.offline,
            threads=settings.threads or session_threads(settings),
            max_pixels=settings.max_pixels,
        )
        self.recognizer = Recognizer(self.atlas, gallery if gallery is not None else open_gallery(settings.gallery))
        self.max_pixels = min(settings.max_pixels, self.atlas.max_pixels)
        self._pool = ThreadPoolExecutor(settings.jobs, thread_name_prefix="faceatlas-work")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()

    @property
    def gallery(self) -> Any:
        """The gallery behind the recognizer."""
        return self.recognizer.gallery

    def warmup(self) -> None:
        """Load the models, run them once and build the gallery's search indexes."""
        started = time.perf_counter()
        self.atlas.warmup()
        self.gallery.refresh()
        log.info("warm-up done in %.2f s (pid %d)", time.perf_counter() - started, os.getpid())

    def close(self) -> None:
        """Stop the work pool and close the gallery."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.recognizer.close()

    # -- running work -----------------------------------------------------------------------------------------

    async def run(self, deadline: float, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound ``fn`` on the bounded pool, giving up (503) at ``deadline`` or when the queue is full."""
        with self._pending_lock:
            if self._pending >= self.settings.jobs + self.settings.max_queue:
                raise ApiError("busy", "the server is at capacity; retry shortly", headers={"Retry-After": "1"})
            self._pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout=remaining)
        except asyncio.TimeoutError:
            future.cancel()  # only succeeds while it is still queued; running work finishes in the background
            raise ApiError("timeout", f"the request did not finish within {self.settings.request_timeout:g} s",
                           headers={"Retry-After": "1"}) from None

    def _done(self, _future: Any) -> None:
        """Count a finished (or cancelled) job out of the queue."""
        with self._pending_lock:
            self._pending -= 1

    # -- operations (called on the pool) ----------------------------------------------------------------------

    def operating_point(self, threshold: float | str | None) -> OperatingPoint:
        """The threshold this pipeline applies for a request's ``threshold`` field."""
        return self.atlas.operating_point(threshold)

    def _load(self, upload: Upload) -> LoadedImage:
        """Decode an uploaded image once, under the server's pixel limit."""
        return load_image(upload.data, max_pixels=self.max_pixels)

    def _request(self, templates: bool) -> FaceRequest:
        """Every face (at most the server's limit, else ``too_many_faces``), with templates when asked."""
        return FaceRequest(max_faces=self.settings.max_faces, too_many="refuse", heads=(EMBEDDING,) if templates else ())

    def _faces(self, loaded: LoadedImage, with_templates: bool) -> list[Face]:
        """Every face of a decoded upload through the pipeline (refusing more than the limit)."""
        return list(self.atlas.run(loaded, self._request(with_templates)).faces)

    def detect(self, upload: Upload, templates: bool) -> dict[str, Any]:
        """Every face of an image (with template vectors only when ``templates``)."""
        loaded = self._load(upload)
        faces = self._faces(loaded, with_templates=templates)
        out: dict[str, Any] = {
            "image": {"width": loaded.width, "height": loaded.height},
            "detector": self.atlas.detector_name,
            "faces": [f.to_dict(include_template=templates) for f in faces],
        }
        if templates:
            out["model_id"] = self.atlas.model_id
        return out

    def verify(self, a: Upload, b: Upload, threshold: float | str | None, heads: Sequence[str] = (),
               liveness: bool = False) -> dict[str, Any]:
        """1:1 verification of the selected face of each image (``spoof_suspected`` for a replay when ``liveness``)."""
        la, lb = self._load(a), self._load(b)
        result = self.atlas.verify(la, lb, threshold=threshold, max_faces=self.settings.max_faces, liveness=liveness)
        out = {**result.to_dict(), "detector": self.atlas.detector_name}
        for key, extra in zip(("face_a", "face_b"), self._head_dicts(
                [(la, result.face_a.detection), (lb, result.face_b.detection)], heads), strict=True):
            out[key].update(extra)
        return out

    def _head_dicts(self, items: Sequence[tuple[LoadedImage, Any]], heads: Sequence[str]) -> list[dict[str, Any]]:
        """The JSON of analysis ``heads`` for each (image, detection) pair (empty dicts when none are asked)."""
        if not heads or not items:
            return [{} for _ in items]
        results = self.atlas.run_heads(items, list(heads))
        return [{h: results[h][i].to_dict() for h in heads} for i in range(len(items))]

    def explain(self, a: Upload, b: Upload, threshold: float | str | None, grid: int) -> dict[str, Any]:
        """"Why this match": occlusion maps over the two aligned faces (with the crops, as base64 PNG)."""
        la, lb = self._load(a), self._load(b)
        for loaded in (la, lb):
            self._faces(loaded, with_templates=False)  # refuses more faces than the server's limit
        return self.atlas.explain(la, lb, grid=grid, threshold=threshold).to_dict(include_crops=True)

    def enroll_choice(self, collection: str, person: str, upload: Upload, *, face_index: int | None,
                      multi_face: str, name: str | None, metadata: dict[str, Any] | None,
                      actor: str, heads: Sequence[str] = (), liveness: bool = False,
                      keep_crops: bool = False) -> dict[str, Any]:
        """Enrol one face of a group photo: the face at ``face_index`` (as /v1/detect numbers them) or by policy."""
        import hashlib

        from ..recognition.enrol import QualityGates, check_gates, enrol_request

        loaded = self._load(upload)
        policy = "largest" if face_index is not None else multi_face
        gates = QualityGates(liveness=liveness)
        request = enrol_request(policy, gates).but(max_faces=self.settings.max_faces, too_many="refuse")  # type: ignore[arg-type]
        if face_index is not None:
            request = request.but(face_index=face_index, select=None)
        try:
            prepared = [check_gates(self.atlas.run(loaded, request), upload.label, policy, gates)]  # type: ignore[arg-type]
            rejected: list[Rejection] = []
        except FaceAtlasError as exc:
            prepared, rejected = [], [Rejection(upload.label, exc.code, exc.message)]
        analysis = self._head_dicts([(loaded, p.face.detection) for p in prepared], heads)
        if prepared:  # duplicate detection per (photo, face): each person of a group photo can be enrolled once
            box = prepared[0].face.detection.box
            mark = f"#face={box.x1:.0f},{box.y1:.0f},{box.x2:.0f},{box.y2:.0f}".encode()
            prepared = [replace(prepared[0], image_sha256=hashlib.sha256(upload.data + mark).hexdigest())]
        with self._write_lock:
            result = self.recognizer.enroll_prepared(collection, person, prepared, rejected, name=name,
                                                     metadata=metadata, actor=actor, keep_crops=keep_crops)
        if not result.sample_ids:
            reasons = "; ".join(f"{r.image}: {r.code}" for r in result.rejected) or "no image"
            raise ApiError("enrolment_rejected", f"no image could be enrolled ({reasons})",
                           details={"rejected": [r.to_dict() for r in result.rejected]})
        out = {**result.to_dict(), "model_id": self.atlas.model_id, "face_index": face_index}
        if heads:
            out["analysis"] = [{"image": upload.label, **a} for a in analysis]
        return out

    def identify(self, collection: str, upload: Upload, k: int, threshold: float | str | None,
                 heads: Sequence[str] = (), liveness: bool = False) -> dict[str, Any]:
        """Every face of an image with its top-k people and an open-set decision.

        With ``liveness`` a face taken for a replay refuses the whole request (``spoof_suspected``).
        """
        point = self.operating_point(threshold)
        loaded = self._load(upload)
        request = self._request(True)
        request = request.but(heads=(*request.heads, *(h for h in heads if h not in request.heads)))
        results = self.recognizer.identify_many(collection, [loaded], k=k, threshold=threshold,
                                                request=request, liveness=liveness)[0]
        spoofs = [r.face.index for r in results if r.live is False]
        if spoofs:
            raise FaceAtlasError("spoof_suspected", f"face(s) {', '.join(map(str, spoofs))} of the image look like a "
                                 "print or screen replay (a single-frame passive check, not a certified PAD)",
                                 faces=spoofs)
        return {
            "collection": self.gallery.get_collection(collection).name,
            "image": {"width": loaded.width, "height": loaded.height},
            "model_id": self.atlas.model_id,
            "detector": self.atlas.detector_name,
            "threshold": round(point.threshold, 4),
            "threshold_source": point.source,
            "faces": [r.to_dict() for r in results],
        }

    def enroll(self, collection: str, person: str, uploads: Sequence[Upload], *, name: str | None,
               metadata: dict[str, Any] | None, actor: str, must_exist: bool = False, heads: Sequence[str] = (),
               liveness: bool = False, keep_crops: bool = False) -> dict[str, Any]:
        """Enrol a person (created when new) from uploaded photos; each unusable photo is rejected with a reason.

        ``liveness`` refuses replays (``spoof_suspected`` per photo); ``heads`` adds analysis of each enrolled face
        to the answer (never stored).
        """
        import hashlib

        from ..recognition.enrol import PreparedFace, QualityGates, prepare_faces

        if must_exist:
            self.gallery.get_person(collection, person)
        images: list[ImageInput] = []
        labels: list[str] = []
        hashes: list[str | None] = []
        rejected: list[Rejection] = []
        for up in uploads:
            try:
                images.append(self._load(up))  # decoded once; the hash is of the uploaded file (duplicate detection)
            except FaceAtlasError as exc:
                rejected.append(Rejection(up.label, exc.code, exc.message))
                continue
            labels.append(up.label)
            hashes.append(hashlib.sha256(up.data).hexdigest())
        prepared: list[PreparedFace] = []
        refused: list[Rejection] = []
        analysis: list[dict[str, Any]] = []
        items = prepare_faces(self.atlas, images, labels=labels, gates=QualityGates(liveness=liveness), hashes=hashes)
        for image, item in zip(images, items, strict=True):
            if isinstance(item, PreparedFace):
                prepared.append(item)
                if heads:
                    assert isinstance(image, LoadedImage)
                    analysis.append({"image": item.source, **self._head_dicts([(image, item.face.detection)], heads)[0]})
            else:
                refused.append(item)
        with self._write_lock:
            result = self.recognizer.enroll_prepared(collection, person, prepared, refused, name=name,
                                                     metadata=metadata, actor=actor, keep_crops=keep_crops)
        if rejected:
            result = replace(result, rejected=tuple(rejected) + result.rejected)
        out = {**result.to_dict(), "model_id": self.atlas.model_id}
        if heads:
            out["analysis"] = [a for a in analysis if a["image"] in result.accepted]
        if not result.sample_ids:
            reasons = "; ".join(f"{r.image}: {r.code}" for r in result.rejected) or "no image"
            raise ApiError("enrolment_rejected", f"no image could be enrolled ({reasons})",
                           details={"rejected": [r.to_dict() for r in result.rejected]})
        return out

    def ensure_collection(self, name: str) -> Any:
        """The collection, created with this server's model contract when missing."""
        return self.recognizer.ensure_collection(name)

    # -- gallery reads and deletes (quick; run on the generic thread pool) --------------------------------------

    def person_with_faces(self, collection: str, person: str, templates: bool) -> dict[str, Any]:
        """A person and its enrolled faces (template vectors only when ``templates``)."""
        p = self.gallery.get_person(collection, person)
        return {**p.to_dict(), "faces": [self._sample_dict(collection, s.id, templates)
                                         for s in self.gallery.list_samples(collection, p.id)]}

    def face(self, collection: str, person: str, face_id: int, templates: bool) -> dict[str, Any]:
        """One enrolled face of a person (404 when it belongs to someone else)."""
        p = self.gallery.get_person(collection, person)
        sample = self.gallery.get_sample(collection, face_id)
        if sample.person_id != p.id:
            raise NotFoundError(f"person {person!r} has no face {face_id}")
        return self._sample_dict(collection, face_id, templates)

    def face_crop(self, collection: str, person: str, face_id: int) -> bytes:
        """The aligned crop (PNG) kept with one enrolled face of a person (404 when none was kept)."""
        self.face(collection, person, face_id, templates=False)
        crop = self.gallery.get_crop(collection, face_id)
        if crop is None:
            raise NotFoundError(f"no crop was kept for face {face_id} of {person!r} (enrol with keep_crops=true)")
        return crop

    def _sample_dict(self, collection: str, sample_id: int, templates: bool) -> dict[str, Any]:
        """A sample's JSON, with its template vector only when asked (and allowed)."""
        sample = self.gallery.get_sample(collection, sample_id, include_template=templates)
        out: dict[str, Any] = sample.to_dict()
        if templates and sample.template is not None:
            out["template"] = sample.template.to_dict(include_vector=True)
        return out

    def delete_face(self, collection: str, person: str, face_id: int, actor: str) -> dict[str, Any]:
        """Delete one face of a person; ``erasure`` says whether its bytes are already wiped from disk."""
        with self._write_lock:
            self.face(collection, person, face_id, templates=False)
            result = self.gallery.delete_sample(collection, face_id, actor=actor)
        return {"deleted": {"collection": collection, "person": person, "face_id": face_id},
                "erasure": _erasure(result)}

    def delete_person(self, collection: str, person: str, actor: str) -> dict[str, Any]:
        """Delete a person and every face of it; ``erasure`` says whether the bytes are already wiped from disk."""
        with self._write_lock:
            result = self.gallery.delete_person(collection, person, actor=actor)
        return {"deleted": {"collection": collection, "person": person, "faces": int(result)},
                "erasure": _erasure(result)}

    # -- CompreFace compatibility (server/compreface.py): analysis, nearest people, examples and subjects ------

    def analyze(self, upload: Upload, heads: Sequence[str], min_score: float | None = None,
                limit: int = 0) -> Analysis:
        """The faces of an image, biggest first (at most ``limit``; 0: all), with ``heads`` run and timed per head."""
        loaded = self._load(upload)
        started = time.perf_counter()
        found = self.atlas.run(loaded, FaceRequest(heads=())).faces
        timings = {"detector": (time.perf_counter() - started) * 1000.0}
        kept = sorted((f for f in found if min_score is None or f.score >= min_score),
                      key=lambda f: f.box.width * f.box.height, reverse=True)
        kept = kept[:limit] if limit > 0 else kept
        if len(kept) > self.settings.max_faces:
            raise ApiError("too_many_faces", f"{len(kept)} faces found; the limit is {self.settings.max_faces} "
                                             "per image (pass a limit)")
        if any(h not in (EMBEDDING, "quality", "crop") for h in heads):
            import faceatlas.analysis  # noqa: F401 - registers the analysis heads (age, gender, pose, ...)
        items = [(loaded, f.detection) for f in kept]
        results: dict[str, list[Any]] = {}
        for head in heads:
            started = time.perf_counter()
            try:
                results[head] = self.atlas.run_heads(items, [head])[head] if items else []
            except ModelError as exc:  # an optional analysis head whose model is not installed: left out
                if head == EMBEDDING:
                    raise
                log.warning("head %s unavailable: %s", head, exc.message)
                continue
            timings[head] = (time.perf_counter() - started) * 1000.0
        faces = [Face(f.detection, i, results[EMBEDDING][i] if EMBEDDING in results else None, None, None,
                      {h: r[i] for h, r in results.items() if h != EMBEDDING}) for i, f in enumerate(kept)]
        return Analysis(loaded.width, loaded.height, faces, timings)

    def analyze_json(self, upload: Upload, heads: Sequence[str]) -> dict[str, Any]:
        """``POST /v1/analyze``: every face (biggest first) with the analysis heads' estimates and timings."""
        found = self.analyze(upload, heads)
        return {"image": {"width": found.width, "height": found.height}, "detector": self.atlas.detector_name,
                "heads": [h for h in heads if h in found.timings],
                "timings_ms": {k: round(v, 2) for k, v in found.timings.items()},
                "faces": [f.to_dict() for f in found.faces]}

    def nearest(self, collection: str, templates: Sequence[Any], k: int) -> list[list[Any]]:
        """The ``k`` most similar people of a collection for each template (empty lists when it does not exist)."""
        if not templates:
            return []
        try:
            self.gallery.get_collection(collection)
        except NotFoundError:
            return [[] for _ in templates]
        return list(self.gallery.search(collection, list(templates), k=k))

    def add_example(self, collection: str, subject: str, upload: Upload, min_score: float | None,
                    actor: str) -> int:
        """Enrol one photo (one face) for ``subject`` (created when new); the new sample id, or the rejection."""
        from ..recognition.enrol import QualityGates

        gates = QualityGates() if min_score is None else QualityGates(min_det_score=min_score)
        loaded = self._load(upload)
        import hashlib

        with self._write_lock:
            result = self.recognizer.enroll(collection, subject, [loaded], actor=actor, labels=[upload.label],
                                            hashes=[hashlib.sha256(upload.data).hexdigest()], gates=gates)
        if not result.sample_ids:
            first = result.rejected[0] if result.rejected else Rejection(upload.label, "no_face", "no face")
            raise FaceAtlasError(first.code, first.message)
        return int(result.sample_ids[0])

    def examples(self, collection: str, subject: str | None, offset: int, count: int) -> tuple[list[Any], int]:
        """A page of ``(sample, subject)`` of a collection (or of one subject) in id order, and the total."""
        try:
            coll = self.gallery.get_collection(collection)
        except NotFoundError:
            return [], 0
        people = [self.gallery.get_person(collection, subject)] if subject is not None else \
            self.gallery.list_persons(collection)
        total = people[0].samples if subject is not None else coll.samples
        rows: list[Any] = []
        seen = 0
        for p in people:
            if len(rows) >= count:
                break
            if seen + p.samples <= offset:
                seen += p.samples
                continue
            for s in self.gallery.list_samples(collection, p.id):
                if seen >= offset and len(rows) < count:
                    rows.append((s, p.external_id))
                seen += 1
        return rows, total

    def delete_examples(self, collection: str, sample_ids: Sequence[int], actor: str) -> list[tuple[int, str]]:
        """Delete these samples of a collection (unknown ids are skipped); ``(id, subject)`` of each deleted one."""
        done: list[tuple[int, str]] = []
        with self._write_lock:
            for sid in dict.fromkeys(sample_ids):
                try:
                    sample = self.gallery.get_sample(collection, sid)
                    subject = self.gallery.get_person(collection, sample.person_id).external_id
                    self.gallery.delete_sample(collection, sid, actor=actor)
                except NotFoundError:
                    continue
                done.append((sid, subject))
        return done

    def subject_example_ids(self, collection: str, subject: str | None) -> list[int]:
        """Ids of every sample of a subject (or of the whole collection); none when either does not exist."""
        try:
            people = [self.gallery.get_person(collection, subject)] if subject is not None else \
                self.gallery.list_persons(collection)
        except NotFoundError:
            return []
        return [s.id for p in people for s in self.gallery.list_samples(collection, p.id)]

    def subjects(self, collection: str) -> list[str]:
        """Every subject (person id) of a collection, in creation order (none when it does not exist)."""
        try:
            return [p.external_id for p in self.gallery.list_persons(collection)]
        except NotFoundError:
            return []

    def add_subject(self, collection: str, subject: str, actor: str) -> None:
        """Create a subject without faces (``conflict`` when it exists)."""
        self.ensure_collection(collection)
        self.gallery.add_person(collection, subject, actor=actor)

    def rename_subject(self, collection: str, old: str, new: str, actor: str) -> None:
        """Rename a subject; into an existing one its faces are merged (templates move, the old subject goes)."""
        with self._write_lock:
            source = self.gallery.get_person(collection, old)
            if old == new:
                return
            samples = [self.gallery.get_sample(collection, s.id, include_template=True)
                       for s in self.gallery.list_samples(collection, source.id)]
            try:
                target = self.gallery.get_person(collection, new)
            except NotFoundError:
                target = self.gallery.add_person(collection, new, name=source.name, metadata=dict(source.metadata),
                                                 actor=actor)
            if samples:
                self.gallery.add_samples(collection, target.id, [s.template for s in samples],
                                         qualities=[s.quality for s in samples],
                                         detection_scores=[s.detection_score for s in samples],
                                         boxes=[s.box for s in samples], actor=actor)
            self.gallery.delete_person(collection, source.id, actor=actor)

    def delete_subjects(self, collection: str, actor: str) -> int:
        """Delete every subject of a collection with its faces; how many subjects went."""
        with self._write_lock:
            people = self.subjects(collection)
            for person in people:
                self.gallery.delete_person(collection, person, actor=actor)
        return len(people)

    def example(self, collection: str, sample_id: int) -> tuple[Any, str]:
        """A stored sample with its template, and its subject (``not_found`` when absent)."""
        sample = self.gallery.get_sample(collection, sample_id, include_template=True)
        return sample, self.gallery.get_person(collection, sample.person_id).external_id

    def models(self) -> dict[str, Any]:
        """The models this server runs and every model it knows."""
        spec = self.atlas.store.spec(self.atlas.embedder_name)
        known = []
        for row in self.atlas.store.status(verify=False):
            s = row.spec
            known.append({"name": s.name, "task": s.task, "dim": s.dim, "license": s.license,
                          "commercial_use": s.commercial_use, "available": row.available,
                          "default_threshold": s.default_threshold})
        return {
            "detector": self.atlas.detector_name,
            "embedder": self.atlas.model_id,
            "dim": spec.dim,
            "default_threshold": spec.default_threshold,
            "calibrated": self.atlas.calibrations.get(self.atlas.model_id) is not None,
            "models": known,
        }


def _erasure(result: Any) -> str:
    """``complete`` when a delete's bytes are gone from disk, ``pending`` while a background task still wipes them."""
    return "complete" if getattr(result, "erased", True) else "pending"
