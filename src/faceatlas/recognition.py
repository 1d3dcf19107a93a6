"""1:N recognition: enrol people from photos into a gallery collection and identify faces against it."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import config
from .align import align_face
from .atlas import FaceAtlas
from .detect import select_face
from .errors import FaceAtlasError, InvalidInputError, NotFoundError
from .images import ImageInput, LoadedImage
from .match import resolve_threshold
from .models import PREPROCESSING_VERSION
from .quality import face_quality
from .types import Enrolment, Face, Identification, Match, Rejection, Template

log = logging.getLogger(__name__)

MultiFacePolicy = Literal["reject", "largest", "central", "score"]


def default_gallery_path() -> str:
    """Where the default gallery lives: ``$FACEATLAS_GALLERY`` or ``$FACEATLAS_HOME/gallery.db``."""
    return os.environ.get("FACEATLAS_GALLERY") or str(config.home_dir() / "gallery.db")


@dataclass(frozen=True)
class QualityGates:
    """Minimums an enrolment face must pass; each failure is reported per image with its reason."""

    min_face_size: float = 32.0
    min_det_score: float = 0.7
    min_quality: float = 0.1


@dataclass(frozen=True, eq=False)
class PreparedFace:
    """A face ready to enrol: its template, quality, the image hash and (optionally) the aligned crop."""

    source: str
    face: Face
    template: Template
    quality: float
    image_sha256: str | None
    crop: npt.NDArray[np.uint8]


class Recognizer:
    """Enrolment and identification over one gallery with one FaceAtlas pipeline; thread-safe."""

    def __init__(self, atlas: FaceAtlas | None = None, gallery: Any = None, *, gallery_path: str | None = None,
                 key: str | bytes | None = None) -> None:
        self.atlas = atlas or FaceAtlas()
        if gallery is None:
            from .gallery import Gallery

            path = gallery_path or default_gallery_path()
            if "://" not in path and ":" not in path.split(os.sep)[0]:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            gallery = Gallery.open(path, key=key)
        self.gallery = gallery

    # -- collections ------------------------------------------------------------------------------------------

    def ensure_collection(self, name: str) -> Any:
        """The collection ``name``, created with this pipeline's embedding contract if it does not exist."""
        try:
            coll = self.gallery.get_collection(name)
        except NotFoundError:
            emb = self.atlas.embedder
            try:
                return self.gallery.create_collection(name, emb.model_id, emb.model_sha256, emb.dim, PREPROCESSING_VERSION)
            except FaceAtlasError as exc:
                if exc.code != "conflict":
                    raise
                coll = self.gallery.get_collection(name)  # another process created it first
        self._check_contract(coll)
        return coll

    def _check_contract(self, coll: Any) -> None:
        """Refuse to mix templates of another model (or preprocessing) into a collection."""
        emb = self.atlas.embedder
        c = coll.contract
        if c.model_id != emb.model_id or c.dim != emb.dim or (c.model_sha256 and c.model_sha256 != emb.model_sha256):
            raise FaceAtlasError(
                "model_mismatch",
                f"collection {coll.name!r} holds {c.model_id} templates (dim {c.dim}); this pipeline makes "
                f"{emb.model_id} (dim {emb.dim}). Use the same model or re-embed the collection.",
            )

    # -- enrolment ------------------------------------------------------------------------------------------

    def prepare(
        self,
        image: ImageInput,
        *,
        source: str | None = None,
        multi_face: MultiFacePolicy = "reject",
        gates: QualityGates | None = None,
    ) -> PreparedFace:
        """Detect, check and embed the one face of an enrolment image; raise FaceAtlasError with the reason."""
        return prepare_face(self.atlas, image, source=source, multi_face=multi_face, gates=gates)

    def enroll(
        self,
        collection: str,
        person: str,
        images: Sequence[ImageInput],
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        strict: bool = False,
        keep_crops: bool = False,
        multi_face: MultiFacePolicy = "reject",
        gates: QualityGates | None = None,
        threshold: float | str | None = None,
        actor: str | None = None,
    ) -> Enrolment:
        """Enrol a person (created when new) from several images; bad images are rejected with a reason."""
        prepared: list[PreparedFace] = []
        rejected: list[Rejection] = []
        for i, img in enumerate(images):
            label = _label(img, i)
            try:
                prepared.append(self.prepare(img, source=label, multi_face=multi_face, gates=gates))
            except FaceAtlasError as exc:
                rejected.append(Rejection(label, exc.code, exc.message))
        return self.enroll_prepared(collection, person, prepared, rejected, name=name, metadata=metadata,
                                    strict=strict, keep_crops=keep_crops, threshold=threshold, actor=actor)

    def enroll_prepared(
        self,
        collection: str,
        person: str,
        prepared: Sequence[PreparedFace],
        rejected: Sequence[Rejection] = (),
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        strict: bool = False,
        keep_crops: bool = False,
        threshold: float | str | None = None,
        actor: str | None = None,
    ) -> Enrolment:
        """Write already-prepared faces for a person after duplicate and (optionally) strict checks."""
        coll = self.ensure_collection(collection)
        rejected = list(rejected)
        existing = self._person_or_none(coll.name, person)
        known_hashes = self._image_hashes(coll.name, [p.image_sha256 for p in prepared if p.image_sha256])
        keep: list[PreparedFace] = []
        for p in prepared:
            if p.image_sha256 and p.image_sha256 in known_hashes:
                rejected.append(Rejection(p.source, "duplicate_image", f"{p.source}: this exact image is already enrolled"))
                continue
            if p.image_sha256:
                known_hashes.add(p.image_sha256)
            keep.append(p)
        if strict and keep:
            keep, refused = self._strict_filter(coll.name, existing, keep, threshold)
            rejected.extend(refused)
        if existing is None:
            if not keep:
                return Enrolment(coll.name, -1, person, (), (), tuple(rejected))
            try:
                existing = self.gallery.add_person(coll.name, person, name=name, metadata=metadata, actor=actor)
            except FaceAtlasError as exc:
                if exc.code != "conflict":
                    raise
                existing = self.gallery.get_person(coll.name, person)  # created concurrently by another writer
        ids = self.gallery.add_samples(
            coll.name,
            existing.id,
            [p.template for p in keep],
            qualities=[p.quality for p in keep],
            detection_scores=[p.face.score for p in keep],
            boxes=[p.face.box for p in keep],
            image_sha256=[p.image_sha256 for p in keep],
            crops=[_png(p.crop) if keep_crops else None for p in keep],
            actor=actor,
        ) if keep else []
        return Enrolment(coll.name, existing.id, existing.external_id, tuple(ids), tuple(p.source for p in keep),
                         tuple(rejected))

    def _person_or_none(self, collection: str, person: str) -> Any:
        """The person with this external id, or None."""
        try:
            return self.gallery.get_person(collection, person)
        except NotFoundError:
            return None

    def _image_hashes(self, collection: str, candidates: list[str]) -> set[str]:
        """Which candidate source-image hashes are already enrolled in a collection (duplicate detection)."""
        if not candidates:
            return set()
        return set(self.gallery.known_image_hashes(collection, candidates))

    def _strict_filter(
        self, collection: str, person: Any, faces: list[PreparedFace], threshold: float | str | None
    ) -> tuple[list[PreparedFace], list[Rejection]]:
        """Drop samples that look more like another enrolled person than like their own."""
        point = self._threshold(threshold)
        own_vectors = [p.template.vector for p in faces]
        if person is not None:
            own_vectors += [s.template.vector for s in self._samples_with_templates(collection, person.id)]
        own = np.stack(own_vectors)
        hits = self.gallery.search(collection, np.stack([p.template.vector for p in faces]), k=3)
        keep, refused = [], []
        for i, (p, cands) in enumerate(zip(faces, hits, strict=True)):
            others = [c for c in cands if person is None or c.person_id != person.id]
            best_other = others[0] if others else None
            sims = own @ p.template.vector
            sims[i] = -1.0  # not itself
            best_own = float(sims.max()) if len(own) > 1 else None
            if best_other is not None and best_other.score >= point.threshold and (
                best_own is None or best_other.score > best_own
            ):
                refused.append(Rejection(
                    p.source, "ambiguous_identity",
                    f"{p.source}: closer to enrolled person {best_other.external_id!r} (score {best_other.score:.3f}) "
                    f"than to this person ({'no other sample' if best_own is None else f'{best_own:.3f}'})",
                ))
            else:
                keep.append(p)
        return keep, refused

    def _samples_with_templates(self, collection: str, person_id: int) -> list[Any]:
        """Samples of a person with their templates loaded."""
        return [self.gallery.get_sample(collection, s.id, include_template=True)
                for s in self.gallery.list_samples(collection, person_id)]

    # -- identification -----------------------------------------------------------------------------------------

    def _threshold(self, threshold: float | str | None) -> Any:
        """The operating point for this pipeline's model."""
        spec = self.atlas.store.spec(self.atlas.embedder_name)
        return resolve_threshold(threshold, self.atlas.model_id, spec.default_threshold, self.atlas.calibrations)

    def identify(
        self,
        collection: str,
        image: ImageInput,
        *,
        k: int = 5,
        threshold: float | str | None = None,
        aggregate: Literal["max", "centroid"] = "max",
        max_faces: int | None = None,
    ) -> list[Identification]:
        """Every face in the image with its top-k people and an open-set decision against the threshold."""
        return self.identify_many(collection, [image], k=k, threshold=threshold, aggregate=aggregate,
                                  max_faces=max_faces)[0]

    def identify_many(
        self,
        collection: str,
        images: Iterable[ImageInput],
        *,
        k: int = 5,
        threshold: float | str | None = None,
        aggregate: Literal["max", "centroid"] = "max",
        max_faces: int | None = None,
        on_image: Callable[[int], None] | None = None,
    ) -> list[list[Identification]]:
        """Identify the faces of many images; templates are embedded in shared batches."""
        coll = self.gallery.get_collection(collection)
        self._check_contract(coll)
        point = self._threshold(threshold)
        per_image = self.atlas.embed_many(images)
        out: list[list[Identification]] = []
        for n, faces in enumerate(per_image):
            if max_faces is not None:
                faces = faces[:max_faces]
            out.append(self._identify_faces(coll.name, faces, k, point, aggregate))
            if on_image:
                on_image(n)
        return out

    def identify_faces(self, collection: str, faces: Sequence[Face], *, k: int = 5,
                       threshold: float | str | None = None) -> list[Identification]:
        """Identify already-embedded faces (e.g. from video tracks)."""
        return self._identify_faces(collection, faces, k, self._threshold(threshold), "max")

    def _identify_faces(self, collection: str, faces: Sequence[Face], k: int, point: Any,
                        aggregate: Literal["max", "centroid"]) -> list[Identification]:
        """Search the gallery for each face and decide."""
        if not faces:
            return []
        vectors = np.stack([f.template.vector for f in faces if f.template is not None])
        hits = self.gallery.search(collection, vectors, k=k, aggregate=aggregate)
        results = []
        for face, cands in zip(faces, hits, strict=True):
            matches = tuple(
                Match(c.person_id, c.external_id, c.name, float(c.score),
                      self._far(float(c.score)), c.sample_id)
                for c in cands
            )
            top = matches[0] if matches else None
            decision = top if top is not None and top.score >= point.threshold else None
            margin = (matches[0].score - matches[1].score) if len(matches) > 1 else None
            results.append(Identification(face, matches, decision, point.threshold, point.source,
                                          self.atlas.model_id, margin))
        return results

    def _far(self, score: float) -> float | None:
        """Estimated FAR of a score from the model's calibration (None when uncalibrated)."""
        from .match import estimated_far

        return estimated_far(score, self.atlas.model_id, self.atlas.calibrations)

    def close(self) -> None:
        """Close the gallery."""
        self.gallery.close()


def prepare_face(
atlas: FaceAtlas,
image: ImageInput,
    *,
    source: str | None = None,
    multi_face: MultiFacePolicy = "reject",
    gates: QualityGates | None = None,
) -> PreparedFace:
    """Detect, check and embed the one face of an enrolment image; raise FaceAtlasError with the reason."""
    gates = gates or QualityGates()
    digest = _sha256_of(image)
    loaded = atlas.load(image)
    name = source or loaded.source
    dets = atlas.detector.detect(loaded)
    if not dets:
        raise FaceAtlasError("no_face", f"{name}: no face found")
    if len(dets) > 1 and multi_face == "reject":
        raise FaceAtlasError(
            "multiple_faces", f"{name}: {len(dets)} faces; enrol photos of one person or choose a policy"
        )
    idx = 0 if len(dets) == 1 else select_face(dets, loaded.width, loaded.height, multi_face)  # type: ignore[arg-type]
    det = dets[idx]
    if min(det.box.width, det.box.height) < gates.min_face_size:
        raise FaceAtlasError(
            "face_too_small", f"{name}: face is {det.box.width:.0f} px wide, below {gates.min_face_size:.0f}"
        )
    if det.score < gates.min_det_score:
        raise FaceAtlasError("low_detection_score", f"{name}: detection score {det.score:.2f} < {gates.min_det_score}")
    crop = align_face(loaded.rgb, det.landmarks)  # canonical 112 crop: quality and (optionally) kept for re-embedding
    q = face_quality(det, crop)
    if q.score < gates.min_quality:
        raise FaceAtlasError(
            "low_quality",
            f"{name}: quality {q.score:.2f} < {gates.min_quality} (size {q.size:.2f}, sharpness {q.sharpness:.2f}, "
            f"frontal {q.frontal:.2f}, confidence {q.confidence:.2f})",
        )
    vec = atlas.embedder.embed_faces([(loaded.rgb, det.landmarks)])[0]
    template = Template(vec, atlas.embedder.model_id)
    return PreparedFace(name, Face(det, idx, template, q.score), template, q.score, digest, crop)


def _sha256_of(image: ImageInput) -> str | None:
    """sha256 of the encoded image (files and bytes only), used to spot duplicate enrolments."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    if isinstance(image, (str, os.PathLike)):
        try:
            return hashlib.sha256(Path(os.fspath(image)).read_bytes()).hexdigest()
        except OSError:
            return None  # load_image reports the error properly
    if isinstance(image, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    if isinstance(image, LoadedImage):
        return hashlib.sha256(image.rgb.tobytes()).hexdigest()
    return None


def _label(image: ImageInput, i: int) -> str:
    """A printable name for an input image."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f"<image {i}>"


def _png(crop: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB crop as PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", crop[:, :, ::-1])
    if not ok:
        raise InvalidInputError("invalid_input", "could not encode the face crop")
    return bytes(buf)
