"""1:N recognition: enrol people from photos into a gallery collection and identify faces against it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError, NotFoundError
from ..facade import FaceAtlas
from ..images import ImageInput
from ..models import PREPROCESSING_VERSION
from ..pipeline import FaceRequest
from ..thresholds import OperatingPoint
from ..types import Enrolment, Face, Identification, Match, Rejection
from .enrol import MultiFacePolicy, PreparedFace, QualityGates, label_of, prepare_face, prepare_faces

log = logging.getLogger(__name__)

LIVENESS = "liveness"  # the analysis head asked for by ``liveness=True`` (faceatlas.analysis.LIVENESS)

T = TypeVar("T")

#: How often a write that lost a race with another writer (``conflict``) is re-planned and tried again.
CONFLICT_RETRIES = 3


def retry_on_conflict(fn: Callable[[], T], attempts: int = CONFLICT_RETRIES) -> T:
    """Run ``fn``; when another writer got there first (``conflict``), run it again (it re-reads the state)."""
    for attempt in range(attempts):
        try:
            return fn()
        except FaceAtlasError as exc:
            if exc.code != "conflict" or attempt == attempts - 1:
                raise
            log.debug("write conflict, retrying (%d/%d)", attempt + 1, attempts)
    raise AssertionError("unreachable")  # pragma: no cover


class Recognizer:
    """Enrolment and identification over one gallery with one pipeline; thread-safe."""

    def __init__(self, atlas: FaceAtlas | None = None, gallery: Any = None, *, gallery_path: str | None = None,
                 key: str | bytes | None = None) -> None:
        self.atlas = atlas or FaceAtlas()
        if gallery is None:
            from ..gallery import Gallery

            gallery = Gallery.open(gallery_path, key=key)
        self.gallery = gallery

    @property
    def pipeline(self) -> FaceAtlas:
        """The pipeline every template comes from."""
        return self.atlas

    # -- collections ------------------------------------------------------------------------------------------

    def ensure_collection(self, name: str) -> Any:
        """The collection ``name``, created with this pipeline's embedding contract if it does not exist."""
        return retry_on_conflict(lambda: self._ensure_collection(name))

    def _ensure_collection(self, name: str) -> Any:
        """One attempt of :meth:`ensure_collection` (``conflict`` when another process creates it meanwhile)."""
        emb = self.atlas.embedder
        try:
            return self.gallery.check_contract(name, self.atlas.model_id, emb.dim, emb.model_sha256)
        except NotFoundError:
            self.gallery.create_collection(name, self.atlas.model_id, emb.model_sha256, emb.dim, PREPROCESSING_VERSION)
            return self.gallery.get_collection(name)

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
        labels: Sequence[str] | None = None,
        hashes: Sequence[str | None] | None = None,
        liveness: bool = False,
    ) -> Enrolment:
        """Enrol a person (created when new) from several images; bad images are rejected with a reason.

        ``liveness=True`` refuses faces the passive liveness check takes for a replay (``spoof_suspected``).
        """
        if liveness:
            gates = replace(gates or QualityGates(), liveness=True)
        prepared: list[PreparedFace] = []
        rejected: list[Rejection] = []
        names = list(labels) if labels is not None else [label_of(img, i) for i, img in enumerate(images)]
        for item in prepare_faces(self.atlas, images, labels=names, multi_face=multi_face, gates=gates, hashes=hashes):
            (prepared if isinstance(item, PreparedFace) else rejected).append(item)  # type: ignore[arg-type]
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
        return retry_on_conflict(lambda: self._write(coll.name, person, prepared, list(rejected), name, metadata,
                                                      strict, keep_crops, threshold, actor))

    def _write(
        self, collection: str, person: str, prepared: Sequence[PreparedFace], rejected: list[Rejection],
        name: str | None, metadata: dict[str, Any] | None, strict: bool, keep_crops: bool,
        threshold: float | str | None, actor: str | None,
    ) -> Enrolment:
        """One attempt at writing an enrolment (``conflict`` when another writer created the person meanwhile)."""
        existing = self._person_or_none(collection, person)
        known = set(self.gallery.known_image_hashes(collection, [p.image_sha256 for p in prepared if p.image_sha256]))
        keep: list[PreparedFace] = []
        for p in prepared:
            if p.image_sha256 and p.image_sha256 in known:
                rejected.append(Rejection(p.source, "duplicate_image", f"{p.source}: this exact image is already enrolled"))
                continue
            if p.image_sha256:
                known.add(p.image_sha256)
            keep.append(p)
        if strict and keep:
            keep, refused = self._strict_filter(collection, existing, keep, threshold)
            rejected.extend(refused)
        if not keep:
            pid, ext = (-1, person) if existing is None else (existing.id, existing.external_id)
            return Enrolment(collection, pid, ext, (), (), tuple(rejected))
        fields: dict[str, Any] = {
            "qualities": [p.quality for p in keep],
            "detection_scores": [p.face.score for p in keep],
            "boxes": [p.face.box for p in keep],
            "image_sha256": [p.image_sha256 for p in keep],
            "crops": [_png(p.crop) if keep_crops else None for p in keep],
            "actor": actor,
        }
        templates = [p.template for p in keep]
        if existing is None:
            existing, ids = self._add_person_with_samples(collection, person, templates, name, metadata, fields)
        else:
            ids = self.gallery.add_samples(collection, existing.id, templates, **fields)
        return Enrolment(collection, existing.id, existing.external_id, tuple(ids), tuple(p.source for p in keep),
                         tuple(rejected))

    def _add_person_with_samples(
        self, collection: str, person: str, templates: list[Any], name: str | None, metadata: dict[str, Any] | None,
        fields: dict[str, Any],
    ) -> tuple[Any, list[int]]:
        """Create a person together with its first faces (one transaction where the gallery offers it)."""
        atomic = getattr(self.gallery, "add_person_with_samples", None)
        if atomic is not None:
            return atomic(collection, person, templates, name=name, metadata=metadata, **fields)
        created = self.gallery.add_person(collection, person, name=name, metadata=metadata, actor=fields["actor"])
        return created, self.gallery.add_samples(collection, created.id, templates, **fields)

    def _person_or_none(self, collection: str, person: str) -> Any:
        """The person with this external id, or None."""
        try:
            return self.gallery.get_person(collection, person)
        except NotFoundError:
            return None

    def _strict_filter(
        self, collection: str, person: Any, faces: list[PreparedFace], threshold: float | str | None
    ) -> tuple[list[PreparedFace], list[Rejection]]:
        """Drop samples that look more like another enrolled person than like their own."""
        point = self.atlas.operating_point(threshold)
        own_vectors = [p.template.vector for p in faces]
        if person is not None:
            own_vectors += [s.template.vector for s in self._samples_with_templates(collection, person.id)]
        own = np.stack(own_vectors)
        hits = self.gallery.search(collection, [p.template for p in faces], k=3)
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

    def identify(
        self,
        collection: str,
        image: ImageInput,
        *,
        k: int = 5,
        threshold: float | str | None = None,
        aggregate: Literal["max", "centroid"] = "max",
        max_faces: int | None = None,
        liveness: bool = False,
    ) -> list[Identification]:
        """Every face in the image with its top-k people and an open-set decision against the threshold.

        ``liveness=True`` runs the passive liveness head on every face: each result carries ``live``, and a face
        taken for a replay is not searched (no candidates, ``decision`` None).
        """
        return self.identify_many(collection, [image], k=k, threshold=threshold, aggregate=aggregate,
                                  max_faces=max_faces, liveness=liveness)[0]

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
        request: FaceRequest | None = None,
        liveness: bool = False,
    ) -> list[list[Identification]]:
        """Identify the faces of many images; templates are embedded in shared batches.

        ``max_faces`` keeps the first faces of a crowded image; pass a ``request`` for other policies (e.g. refuse).
        ``liveness=True``: see :meth:`identify`.
        """
        coll = self.gallery.check_contract(collection, self.atlas.model_id, self.atlas.embedder.dim)
        point = self.atlas.operating_point(threshold)
        req = request or FaceRequest(max_faces=max_faces)
        if liveness and LIVENESS not in req.heads:
            req = req.but(heads=(*req.heads, LIVENESS))
        out: list[list[Identification]] = []
        for n, result in enumerate(self.atlas.iter_many(images, req)):
            out.append(self._identify_faces(coll.name, result.faces, k, point, aggregate, liveness))
            if on_image:
                on_image(n)
        return out

    def identify_faces(self, collection: str, faces: Sequence[Face], *, k: int = 5,
                       threshold: float | str | None = None) -> list[Identification]:
        """Identify already-embedded faces (e.g. from video tracks); the gallery checks their model."""
        return self._identify_faces(collection, faces, k, self.atlas.operating_point(threshold), "max")

    def _identify_faces(self, collection: str, faces: Sequence[Face], k: int, point: OperatingPoint,
                        aggregate: Literal["max", "centroid"], liveness: bool = False) -> list[Identification]:
        """Search the gallery for each face and decide (faces judged a replay are not searched when ``liveness``)."""
        if not faces:
            return []
        if any(f.template is None for f in faces):
            raise InvalidInputError("invalid_input", "every face to identify needs a template")
        live = [_is_live(f) if liveness else None for f in faces]
        searched = [f for f, ok in zip(faces, live, strict=True) if ok is not False]
        found = iter(self.gallery.search(collection, [f.template for f in searched], k=k, aggregate=aggregate)
                     if searched else [])
        hits = [[] if ok is False else next(found) for ok in live]
        results = []
        for face, cands, ok in zip(faces, hits, live, strict=True):
            matches = tuple(
                Match(c.person_id, c.external_id, c.name, float(c.score), self.atlas.far(float(c.score)), c.sample_id)
                for c in cands
            )
            top = matches[0] if matches else None
            decision = top if top is not None and top.score >= point.threshold else None
            margin = (matches[0].score - matches[1].score) if len(matches) > 1 else None
            assert face.template is not None
            results.append(Identification(face, matches, decision, point.threshold, point.source,
                                          face.template.model_id, margin, ok))
        return results

    def close(self) -> None:
        """Close the gallery."""
        self.gallery.close()


def _is_live(face: Face) -> bool:
    """The liveness verdict of a face that went through the liveness head (``invalid_input`` if it did not)."""
    result = face.head(LIVENESS)
    if result is None:
        raise InvalidInputError("invalid_input", "identification with liveness needs the liveness head on every face")
    return bool(result.live)


def _png(crop: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB crop as PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", crop[:, :, ::-1])
    if not ok:
        raise InvalidInputError("invalid_input", "could not encode the face crop")
    return bytes(buf)
