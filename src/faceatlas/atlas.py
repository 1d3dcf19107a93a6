"""The ``FaceAtlas`` facade: load → detect → align → embed → compare, with sensible defaults."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from . import config
from .detect import OnnxDetector, SelectPolicy, create_detector, select_face
from .detect.base import check_face_index
from .embed import CropEmbedder, create_embedder
from .errors import InvalidInputError, NoFaceError
from .images import DEFAULT_MAX_PIXELS, ColorOrder, ImageInput, LoadedImage, load_image
from .match import Calibrations, cosine, estimated_far, resolve_threshold
from .models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, ModelStore
from .types import Detection, Face, Template, Verification

log = logging.getLogger(__name__)


class FaceAtlas:
    """Face detection, templates and verification with one object; models load on first use; thread-safe."""

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        embedder: str = DEFAULT_EMBEDDER,
        *,
        models_dir: str | Path | None = None,
        offline: bool | None = None,
        threads: int | None = None,
        flip: bool = False,
        select: SelectPolicy = "largest",
        threshold: float | str | None = None,
        color: ColorOrder | None = None,
        det_score: float = 0.6,
        min_face_size: float = 0.0,
        multiscale: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        store: ModelStore | None = None,
    ) -> None:
        self.store = store or ModelStore(models_dir=models_dir, offline=offline)
        if embedder.endswith("+flip"):
            embedder, flip = embedder.removesuffix("+flip"), True
        self.detector_name = detector
        self.embedder_name = embedder
        self.threads = threads
        self.flip = flip
        self.select = select
        self.threshold = threshold
        self.color = color
        self.det_score = det_score
        self.min_face_size = min_face_size
        self.multiscale = multiscale
        self.max_pixels = max_pixels
        self.calibrations = Calibrations(config.home_dir() / "calibrations")
        self._lock = threading.Lock()
        self._detector: OnnxDetector | None = None
        self._embedder: CropEmbedder | None = None
        # Validate names now (cheap, no model loading) so typos fail early.
        self.store.spec(detector, "detection")
        self.store.spec(embedder, "recognition")

    # -- components (lazy) ----------------------------------------------------------------------------------

    @property
    def detector(self) -> OnnxDetector:
        """The detector, created on first use."""
        with self._lock:
            if self._detector is None:
                self._detector = create_detector(
                    self.detector_name,
                    self.store,
                    threads=self.threads,
                    score_threshold=self.det_score,
                    multiscale=self.multiscale,
                    min_face_size=self.min_face_size,
                )
            return self._detector

    @property
    def embedder(self) -> CropEmbedder:
        """The embedder, created on first use."""
        with self._lock:
            if self._embedder is None:
                self._embedder = create_embedder(self.embedder_name, self.store, threads=self.threads, flip=self.flip)
            return self._embedder

    @property
    def model_id(self) -> str:
        """Id stamped on templates this instance produces (embedder name, ``+flip`` when TTA is on)."""
        return self.embedder_name + ("+flip" if self.flip else "")

    def warmup(self) -> None:
        """Load both models and run them once so the first real call is not slow."""
        blank = LoadedImage(np.zeros((64, 64, 3), np.uint8), "<warmup>")
        self.detector.detect(blank)
        marks = np.array([[40, 50], [88, 50], [64, 75], [45, 95], [83, 95]], np.float32)
        self.embedder.embed_faces([(np.zeros((128, 128, 3), np.uint8), marks)])

    # -- stages ---------------------------------------------------------------------------------------------

    def load(self, image: ImageInput, color: ColorOrder | None = None) -> LoadedImage:
        """Decode any supported input to RGB pixels (limits and EXIF applied)."""
        return load_image(image, color=color or self.color, max_pixels=self.max_pixels)

    def detect(self, image: ImageInput, *, color: ColorOrder | None = None) -> list[Face]:
        """Every face in the image (box, score, landmarks), highest score first."""
        loaded = self.load(image, color)
        return [Face(det, i) for i, det in enumerate(self.detector.detect(loaded))]

    def align(self, image: ImageInput, face: Face | Detection, *, color: ColorOrder | None = None) -> npt.NDArray[np.uint8]:
        """The canonical RGB crop of one face (the 112×112 ArcFace crop, or the embedder's own alignment)."""
        loaded = self.load(image, color)
        det = face.detection if isinstance(face, Face) else face
        return self.embedder.align(loaded.rgb, det.landmarks)

    def embed(
        self,
        image: ImageInput,
        *,
        color: ColorOrder | None = None,
        faces: str = "all",
        select: SelectPolicy | None = None,
    ) -> list[Face]:
        """Faces with templates: all of them (``faces='all'``) or the one chosen by the selection policy."""
        return self.embed_many([image], color=color, faces=faces, select=select)[0]

    def embed_many(
        self,
        images: Iterable[ImageInput],
        *,
        color: ColorOrder | None = None,
        faces: str = "all",
        select: SelectPolicy | None = None,
        chunk: int = 32,
    ) -> list[list[Face]]:
        """Faces with templates for many images, embedding crops in shared batches of about ``chunk`` faces."""
        if faces not in ("all", "one"):
            raise InvalidInputError("invalid_input", f"faces must be 'all' or 'one', got {faces!r}")
        out: list[list[Face]] = []
        pending: list[tuple[LoadedImage, list[Face]]] = []
        n_pending = 0
        for img in images:
            loaded = self.load(img, color)
            found = [Face(d, i) for i, d in enumerate(self.detector.detect(loaded))]
            if faces == "one" and found:
                dets = [f.detection for f in found]
                found = [found[select_face(dets, loaded.width, loaded.height, select or self.select)]]
            pending.append((loaded, found))
            n_pending += len(found)
            if n_pending >= chunk:  # bounded memory: decoded images are released once embedded
                out.extend(self._attach_templates(pending))
                pending, n_pending = [], 0
        out.extend(self._attach_templates(pending))
        return out

    def template(
        self,
        image: ImageInput,
        *,
        color: ColorOrder | None = None,
        select: SelectPolicy | None = None,
        face_index: int | None = None,
    ) -> tuple[Face, int]:
        """One face with its template (by explicit index or selection policy) and the image's face count."""
        loaded = self.load(image, color)
        dets = self.detector.detect(loaded)
        if not dets:
            raise NoFaceError(f"no face found in {loaded.source}", source=loaded.source)
        if face_index is None:
            idx = select_face(dets, loaded.width, loaded.height, select or self.select)
        else:
            check_face_index(face_index, len(dets))
            idx = face_index
        face = self._attach_templates([(loaded, [Face(dets[idx], idx)])])[0][0]
        return face, len(dets)

    def _attach_templates(self, per_image: Sequence[tuple[LoadedImage, list[Face]]]) -> list[list[Face]]:
        """Align every face, embed all crops in one batched call and return faces carrying templates."""
        emb = self.embedder
        vectors = emb.embed_faces([(img.rgb, f.landmarks) for img, faces in per_image for f in faces])
        out: list[list[Face]] = []
        k = 0
        for _, faces in per_image:
            row = []
            for f in faces:
                row.append(Face(f.detection, f.index, Template(vectors[k], emb.model_id), f.quality))
                k += 1
            out.append(row)
        return out

    # -- comparison -----------------------------------------------------------------------------------------

    def compare(self, a: Template, b: Template) -> float:
        """Cosine similarity of two templates (same model required)."""
        return cosine(a, b)

    def verify(
        self,
        a: ImageInput | Face,
        b: ImageInput | Face,
        *,
        threshold: float | str | None = None,
        color: ColorOrder | None = None,
        select: SelectPolicy | None = None,
        face_a: int | None = None,
        face_b: int | None = None,
    ) -> Verification:
        """Are these two faces the same person? Echoes the score, threshold used and the faces compared."""
        fa, na = self._face_for_verify(a, color, select, face_a)
        fb, nb = self._face_for_verify(b, color, select, face_b)
        assert fa.template is not None and fb.template is not None
        point = resolve_threshold(
            threshold if threshold is not None else self.threshold,
            fa.template.model_id,
            self.store.spec(self.embedder_name).default_threshold,
            self.calibrations,
        )
        score = self.compare(fa.template, fb.template)
        return Verification(
            same=score >= point.threshold,
            score=score,
            threshold=point.threshold,
            model_id=fa.template.model_id,
            face_a=fa,
            face_b=fb,
            faces_in_a=na,
            faces_in_b=nb,
            far=estimated_far(score, fa.template.model_id, self.calibrations),
            threshold_source=point.source,
        )

    def _face_for_verify(
        self, x: ImageInput | Face, color: ColorOrder | None, select: SelectPolicy | None, index: int | None
    ) -> tuple[Face, int]:
        """A templated face from an image or an already-embedded Face."""
        if isinstance(x, Face):
            if x.template is None:
                raise NoFaceError("the Face passed to verify has no template; use FaceAtlas.embed first")
            return x, 1
        return self.template(x, color=color, select=select, face_index=index)

    def __repr__(self) -> str:
        return f"FaceAtlas(detector={self.detector_name!r}, embedder={self.model_id!r}, select={self.select!r})"

