"""The one face pipeline: load → detect → select → align → per-face heads, shared by every surface.

The library facade, the recogniser, the REST service, video, clustering and evaluation all call a
:class:`Pipeline`; nothing else calls a detector or an embedder. Models load on first use; a pipeline is
thread-safe and meant to be shared.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config
from ..detect import create_detector, select_face
from ..detect.base import check_face_index
from ..embed import create_embedder, flip_id, split_flip
from ..errors import FaceAtlasError, InvalidInputError, NoFaceError
from ..images import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from ..models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, ModelStore, apply_profile
from ..types import Detection, Face, Template
from .heads import CANONICAL, CropSpec, FaceBatch, Head, head_factory
from .request import CROP, EMBED_ALL, EMBEDDING, MINOR_INSIDE, MINOR_SCORE, MINOR_SIZE, QUALITY, FaceRequest

if TYPE_CHECKING:  # pragma: no cover - types only: thresholds and calibrations load when first used
    import numpy.typing as npt

    from ..detect import OnnxDetector, SelectPolicy
    from ..embed import CropEmbedder
    from ..images import ColorOrder, ImageInput
    from ..thresholds import Calibrations, OperatingPoint


@dataclass(frozen=True, eq=False)
class ImageResult:
    """What the pipeline made of one image: its size, the kept faces (with head results) and the detected count."""

    source: str
    width: int
    height: int
    faces: tuple[Face, ...]
    detected: int
    sha256: str | None = None
    error: FaceAtlasError | None = field(default=None, repr=False)

    @property
    def face(self) -> Face:
        """The single kept face (``no_face`` when there is none)."""
        if not self.faces:
            raise NoFaceError(f"no face found in {self.source}", source=self.source)
        return self.faces[0]


@dataclass(frozen=True)
class DetectorOptions:
    """How the detector runs: minimum score, minimum face size, multi-scale passes, input size."""

    score: float = 0.6
    min_face_size: float = 0.0
    multiscale: bool = True
    input_size: int | None = None


class Pipeline:
    """load → detect → select → align → heads, with lazily created, shared, thread-safe models."""

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
        detect_size: int | None = None,
        calibration: str | Path | None = None,
        profile: str | None = None,
    ) -> None:
        self.store = store or ModelStore(models_dir=models_dir, offline=offline)
        detector, embedder = apply_profile(profile, detector, embedder)  # "fast": models/profiles.py
        embedder, flip = split_flip(embedder, flip)
        self.detector_name = detector
        self.embedder_name = embedder
        self.threads = threads
        self.flip = flip
        self.select = select
        self.threshold = threshold
        self.color = color
        self.detector_options = DetectorOptions(det_score, min_face_size, multiscale, detect_size)
        self.max_pixels = max_pixels
        # a user calibration (name or path) is used only when chosen here or in FACEATLAS_CALIBRATION; the
        # environment is read now, the calibration files when a threshold or FAR first needs them
        self._calibration_source = (config.home_dir() / "calibrations",
                                    calibration if calibration is not None else config.calibration())
        self._calibrations: Calibrations | None = None
        self._lock = threading.Lock()
        self._detector: OnnxDetector | None = None
        self._embedder: CropEmbedder | None = None
        self._parent: Pipeline | None = None
        self._heads: dict[str, Head] = {}
        # Validate names now (cheap, no model loading) so typos fail early.
        self.store.spec(detector, "detection")
        self.store.spec(embedder, "recognition")

    # -- configuration ------------------------------------------------------------------------------------------

    @property
    def det_score(self) -> float:
        """Minimum detection score."""
        return self.detector_options.score

    @property
    def min_face_size(self) -> float:
        """Minimum face size in pixels."""
        return self.detector_options.min_face_size

    @property
    def multiscale(self) -> bool:
        """Whether the detector adds zoomed-out and tiled passes."""
        return self.detector_options.multiscale

    def with_detector(
        self,
        *,
        det_score: float | None = None,
        min_face_size: float | None = None,
        multiscale: bool | None = None,
        detect_size: int | None = None,
    ) -> Pipeline:
        """A pipeline that detects differently (e.g. video frames) but shares this one's embedder and heads."""
        opts = self.detector_options
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        child.detector_options = DetectorOptions(
            opts.score if det_score is None else det_score,
            opts.min_face_size if min_face_size is None else min_face_size,
            opts.multiscale if multiscale is None else multiscale,
            opts.input_size if detect_size is None else detect_size,
        )
        child._lock = threading.Lock()
        child._detector = None
        child._parent = self._root()
        child._heads = {}
        return child

    def _root(self) -> Pipeline:
        """The pipeline that owns the embedder (itself unless derived with :meth:`with_detector`)."""
        return self if self._parent is None else self._parent

    # -- models (lazy) ------------------------------------------------------------------------------------------

    @property
    def detector(self) -> OnnxDetector:
        """The detector, created on first use."""
        with self._lock:
            if self._detector is None:
                opts = self.detector_options
                extra: dict[str, Any] = {} if opts.input_size is None else {"input_size": opts.input_size}
                self._detector = create_detector(
                    self.detector_name,
                    self.store,
                    threads=self.threads,
                    score_threshold=opts.score,
                    multiscale=opts.multiscale,
                    min_face_size=opts.min_face_size,
                    **extra,
                )
            return self._detector

    @property
    def embedder(self) -> CropEmbedder:
        """The embedder, created on first use (shared with derived pipelines)."""
        root = self._root()
        if root is not self:
            return root.embedder
        with self._lock:
            if self._embedder is None:
                self._embedder = create_embedder(self.embedder_name, self.store, threads=self.threads, flip=self.flip)
            return self._embedder

    @property
    def model_id(self) -> str:
        """Id stamped on templates this pipeline produces (embedder name, ``+flip`` when TTA is on)."""
        return flip_id(self.embedder_name, self.flip)

    def head(self, name: str) -> Head:
        """The per-face head ``name`` (created on first use)."""
        root = self._root()
        with root._lock:
            got = root._heads.get(name)
            if got is None:
                got = head_factory(name)(root)
                root._heads[name] = got
            return got

    def warmup(self) -> None:
        """Load both models and run them once so the first real call is not slow."""
        self.detector.detect(LoadedImage(np.zeros((64, 64, 3), np.uint8), "<warmup>"))
        marks = np.array([[40, 50], [88, 50], [64, 75], [45, 95], [83, 95]], np.float32)
        blank = LoadedImage(np.zeros((128, 128, 3), np.uint8), "<warmup>")
        self.run_heads([(blank, Detection(_box(0, 0, 128, 128), 1.0, marks))], (EMBEDDING,))

    # -- thresholds (the one resolution) ------------------------------------------------------------------------

    @property
    def calibrations(self) -> Calibrations:
        """Score → FAR calibrations (shipped, or the chosen user calibration), created on first use."""
        got = self._calibrations
        if got is not None:
            return got
        root = self._root()
        if root is not self:
            return root.calibrations
        from ..thresholds import Calibrations

        with self._lock:
            if self._calibrations is None:
                self._calibrations = Calibrations(*self._calibration_source)
            return self._calibrations

    @calibrations.setter
    def calibrations(self, value: Calibrations) -> None:
        """Use these calibrations from now on."""
        self._calibrations = value

    def operating_point(self, threshold: float | str | None = None) -> OperatingPoint:
        """The threshold to apply: the caller's, else this pipeline's, else ``FACEATLAS_THRESHOLD``, else the model's."""
        from ..thresholds import resolve_threshold

        for candidate in (threshold, self.threshold, config.default_threshold()):
            if candidate is not None and not (isinstance(candidate, str) and not candidate.strip()):
                return resolve_threshold(candidate, self.model_id, None, self.calibrations)
        return resolve_threshold(None, self.model_id, self.store.spec(self.embedder_name).default_threshold,
                                 self.calibrations)

    def far(self, score: float) -> float | None:
        """Estimated false-accept rate of a score under this model's calibration (None when uncalibrated)."""
        from ..thresholds import estimated_far

        return estimated_far(score, self.model_id, self.calibrations)

    # -- the pipeline -------------------------------------------------------------------------------------------

    def load(self, image: ImageInput, color: ColorOrder | None = None) -> LoadedImage:
        """Decode any supported input to RGB pixels (limits and EXIF applied)."""
        return load_image(image, color=color or self.color, max_pixels=self.max_pixels)

    def run(self, image: ImageInput, request: FaceRequest = EMBED_ALL) -> ImageResult:
        """One image through the pipeline (errors raise)."""
        return self.run_many([image], request)[0]

    def run_many(
        self, images: Iterable[ImageInput], request: FaceRequest = EMBED_ALL, *, chunk: int | None = None,
        errors: str = "raise",
    ) -> list[ImageResult]:
        """Many images; heads run on shared batches of about ``chunk`` faces (``errors='keep'``: per-image errors)."""
        return list(self.iter_many(images, request, chunk=chunk, errors=errors))

    def iter_many(
        self, images: Iterable[ImageInput], request: FaceRequest = EMBED_ALL, *, chunk: int | None = None,
        errors: str = "raise",
    ) -> Iterator[ImageResult]:
        """Like :meth:`run_many`, yielding results in order as batches finish (bounded memory)."""
        if errors not in ("raise", "keep"):
            raise InvalidInputError("invalid_input", f"errors must be 'raise' or 'keep', got {errors!r}")
        chunk = self.batch_faces() if chunk is None else chunk
        for name in request.heads:
            self.head(name)  # unknown names fail before any work
        pending: list[tuple[LoadedImage | None, ImageResult]] = []
        n_faces = 0
        for i, img in enumerate(images):
            try:
                loaded, result = self._detect_one(img, request)
            except FaceAtlasError as exc:
                if errors == "raise":
                    raise
                pending.append((None, ImageResult(_label(img, i), 0, 0, (), 0, None, exc)))
                continue
            pending.append((loaded, result))
            n_faces += len(result.faces)
            if n_faces >= chunk:
                yield from self._finish(pending, request.heads)
                pending, n_faces = [], 0
        yield from self._finish(pending, request.heads)

    def batch_faces(self) -> int:
        """Default faces per shared head batch in :meth:`iter_many`: as many as the models have threads.

        Bigger batches are slower here, not faster: ``benchmarks/bulk_chunk.py`` (2 cores, LFW photos) measured CPU per
        image at 0.80x chunk 32's with chunk 1 on one thread, and 0.76x with chunk 2 on two threads (chunk 1 0.89x).
        """
        return max(1, int(self.threads or config.default_threads()))

    def faces_of(
        self, image: LoadedImage, detections: Sequence[Detection], heads: Sequence[str] = (EMBEDDING,)
    ) -> list[Face]:
        """Run heads on faces found elsewhere (e.g. video's tracker-side detection or cached landmarks)."""
        results = self.run_heads([(image, d) for d in detections], heads)
        return [_face(d, i, {n: results[n][i] for n in results}) for i, d in enumerate(detections)]

    def run_heads(self, items: Sequence[tuple[LoadedImage, Detection]], heads: Sequence[str]) -> dict[str, list[Any]]:
        """Every requested head's results for these (image, detection) pairs, crops shared between heads."""
        batch = FaceBatch(items, heads)
        return {name: list(self.head(name).run(batch)) for name in heads}

    def embed_aligned(self, crops: npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]],
                      spec: CropSpec = CANONICAL) -> list[Template]:
        """Templates of crops already aligned to ``spec`` (e.g. stored 112×112 crops, for re-embedding)."""
        emb = self.embedder
        members = getattr(emb, "members", None) or [(emb, 1.0)]
        if any((m.template, m.size[0]) != (spec.template, spec.size) for m, _ in members):
            raise FaceAtlasError(
                "reembed_unsupported",
                f"{emb.model_id} aligns faces differently from {spec.size}×{spec.size} {spec.template} crops; "
                "re-enrol from photos",
            )
        batch = np.asarray(crops)
        if batch.ndim == 3:
            batch = batch[None]
        return [Template(v, emb.model_id) for v in emb.embed_crops(batch)]

    def embed_views(self, items: Sequence[tuple[LoadedImage, Detection]]) -> tuple[list[Template], list[Template]]:
        """Templates without and with flip TTA from one pass (evaluation fills both caches at once)."""
        emb = self.embedder
        if getattr(emb, "members", None) or emb.flip:
            raise InvalidInputError("invalid_input", "views need a single model without flip TTA")
        batch = FaceBatch(items)
        plain, flipped = emb.embed_crops_both(batch.crops(CropSpec(emb.template, emb.size[0])))
        return ([Template(v, emb.model_id) for v in plain], [Template(v, flip_id(emb.model_id, True)) for v in flipped])

    # -- steps ----------------------------------------------------------------------------------------------------

    def _detect_one(self, image: ImageInput, request: FaceRequest) -> tuple[LoadedImage, ImageResult]:
        """Load, detect and select the faces of one image (no heads yet)."""
        digest = _sha256_of(image) if request.hash_image else None
        loaded = self.load(image, request.color)
        dets = self.detector.detect(loaded)
        faces = [Face(d, i) for i, d in enumerate(dets)]
        if request.minor_faces == "drop" and len(faces) > 1:
            faces = _without_minor(faces)
        limit = request.max_faces
        if limit is not None and len(faces) > limit and request.too_many == "refuse":
            raise FaceAtlasError(
                "too_many_faces", f"{len(faces)} faces found; the limit is {limit} per image", faces=len(faces), limit=limit
            )
        if request.faces == "one" and faces:
            if request.face_index is not None:
                check_face_index(request.face_index, len(faces))
                faces = [faces[request.face_index]]
            else:
                faces = [faces[select_face(dets, loaded.width, loaded.height, request.select or self.select)]]
        elif limit is not None:
            faces = faces[:limit]
        if request.require_face and not faces:
            raise NoFaceError(f"no face found in {loaded.source}", source=loaded.source)
        return loaded, ImageResult(loaded.source, loaded.width, loaded.height, tuple(faces), len(dets), digest)

    def _finish(self, pending: list[tuple[LoadedImage | None, ImageResult]], heads: Sequence[str]) -> list[ImageResult]:
        """Run the heads on every face of the pending images in one batch and attach the results."""
        items = [(img, f.detection) for img, r in pending if img is not None for f in r.faces]
        results = self.run_heads(items, heads) if items and heads else {}
        out, k = [], 0
        for img, r in pending:
            if img is None or not r.faces or not results:
                out.append(r)
                continue
            faces = []
            for f in r.faces:
                faces.append(_face(f.detection, f.index, {n: v[k] for n, v in results.items()}))
                k += 1
            out.append(ImageResult(r.source, r.width, r.height, tuple(faces), r.detected, r.sha256))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(detector={self.detector_name!r}, embedder={self.model_id!r}, select={self.select!r})"


def _face(det: Detection, index: int, results: dict[str, Any]) -> Face:
    """A Face carrying head results: template, quality score and crop in their fields, everything in ``heads``."""
    quality = results.get(QUALITY)
    extras = {n: v for n, v in results.items() if n not in (EMBEDDING, CROP)}
    return Face(det, index, results.get(EMBEDDING), None if quality is None else float(quality.score),
                results.get(CROP), extras)


def _without_minor(faces: list[Face]) -> list[Face]:
    """The faces that are not minor next to the largest one (far narrower, far weaker or nested inside it)."""
    main = max(faces, key=lambda f: f.box.width)
    return [f for f in faces if f is main or not _minor(f, main)]


def _minor(face: Face, main: Face) -> bool:
    """Whether ``face`` is too small, too weak or too much inside ``main`` to be another person."""
    a, m = face.box, main.box
    inter_w = max(0.0, min(a.x2, m.x2) - max(a.x1, m.x1))
    inter_h = max(0.0, min(a.y2, m.y2) - max(a.y1, m.y1))
    return (a.width < MINOR_SIZE * m.width or face.score < MINOR_SCORE * main.score
            or inter_w * inter_h >= MINOR_INSIDE * a.area)


def _box(x1: float, y1: float, x2: float, y2: float) -> Any:
    """A Box (imported lazily to keep this module's imports short)."""
    from ..types import Box

    return Box(x1, y1, x2, y2)


def _label(image: ImageInput, i: int) -> str:
    """A printable name for an input image."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, LoadedImage):
        return image.source
    return f"<image {i}>"


def _sha256_of(image: ImageInput) -> str | None:
    """sha256 of the encoded image (files and bytes) or of the pixels (arrays), to spot duplicate enrolments."""
    import hashlib  # imported here: only enrolment asks for it (hashlib loads OpenSSL)

    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    if isinstance(image, (str, os.PathLike)):
        try:
            return hashlib.sha256(Path(os.fspath(image)).read_bytes()).hexdigest()
        except OSError:
            return None  # loading reports the error properly
    if isinstance(image, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    if isinstance(image, LoadedImage):
        return hashlib.sha256(image.rgb.tobytes()).hexdigest()
    return None
