"""Enrolment policy: the gates an enrolment photo must pass, applied to what the pipeline made of it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import FaceAtlasError, InvalidInputError, NoFaceError
from ..images import ImageInput
from ..pipeline import CROP, EMBEDDING, QUALITY, FaceRequest, ImageResult, Pipeline
from ..types import Face, Rejection, Template

MultiFacePolicy = Literal["reject", "largest", "central", "score"]


@dataclass(frozen=True)
class QualityGates:
    """Minimums an enrolment face must pass; each failure is reported per image with its reason."""

    min_face_size: float = 32.0
    min_det_score: float = 0.7
    min_quality: float = 0.1
    #: Refuse faces turned further than this many degrees left/right (``pose_out_of_range``); None = no limit.
    max_yaw: float | None = None
    #: Refuse faces tilted further than this many degrees up/down (``pose_out_of_range``); None = no limit.
    max_pitch: float | None = None
    #: Refuse faces with an eye that looks closed (``eyes_closed``).
    require_eyes_open: bool = False
    #: Refuse faces the passive liveness check takes for a replay (``spoof_suspected``).
    liveness: bool = False

    def heads(self) -> tuple[str, ...]:
        """The analysis heads these gates need (none by default, so plain enrolment costs nothing extra)."""
        need = {"pose": self.max_yaw is not None or self.max_pitch is not None, "eyes": self.require_eyes_open,
                "liveness": self.liveness}
        return tuple(name for name, wanted in need.items() if wanted)


@dataclass(frozen=True, eq=False)
class PreparedFace:
    """A face ready to enrol: its template, quality, the image hash and the canonical aligned crop."""

    source: str
    face: Face
    template: Template
    quality: float
    image_sha256: str | None
    crop: npt.NDArray[np.uint8]


def enrol_request(multi_face: MultiFacePolicy = "reject", gates: QualityGates | None = None) -> FaceRequest:
    """The pipeline request behind enrolment: one face (by policy), template, quality and crop, image hash.

    Gates on pose, eyes or liveness add the analysis heads they read.
    """
    extra = gates.heads() if gates is not None else ()
    if multi_face == "reject":  # every face but minor ones (far smaller, weaker or nested): more than one is refused
        return FaceRequest(faces="all", minor_faces="drop", heads=(EMBEDDING, QUALITY, CROP, *extra), hash_image=True)
    return FaceRequest(faces="one", select=multi_face, heads=(EMBEDDING, QUALITY, CROP, *extra), hash_image=True)


def check_gates(result: ImageResult, name: str, multi_face: MultiFacePolicy, gates: QualityGates) -> PreparedFace:
    """Apply the enrolment policy to one pipeline result; raise FaceAtlasError with the reason."""
    if result.error is not None:
        raise result.error
    if not result.faces:
        raise NoFaceError(f"{name}: no face found", source=name)
    if len(result.faces) > 1:  # the "reject" policy: several faces that are not minor next to the main one
        raise FaceAtlasError(
            "multiple_faces", f"{name}: {result.detected} faces; enrol photos of one person or choose a policy"
        )
    face = result.faces[0]
    det = face.detection
    if min(det.box.width, det.box.height) < gates.min_face_size:
        raise FaceAtlasError(
            "face_too_small", f"{name}: face is {det.box.width:.0f} px wide, below {gates.min_face_size:.0f}"
        )
    if det.score < gates.min_det_score:
        raise FaceAtlasError("low_detection_score", f"{name}: detection score {det.score:.2f} < {gates.min_det_score}")
    q = face.head(QUALITY)
    if q.score < gates.min_quality:
        raise FaceAtlasError(
            "low_quality",
            f"{name}: quality {q.score:.2f} < {gates.min_quality} (size {q.size:.2f}, sharpness {q.sharpness:.2f}, "
            f"frontal {q.frontal:.2f}, confidence {q.confidence:.2f})",
        )
    _analysis_gates(face, name, gates)
    assert face.template is not None and face.crop is not None
    return PreparedFace(name, face, face.template, float(q.score), result.sha256, face.crop)


def _analysis_gates(face: Face, name: str, gates: QualityGates) -> None:
    """Pose, eye and liveness gates (each only when asked for); raise FaceAtlasError with the reason."""
    for head in gates.heads():
        if face.head(head) is None:
            raise InvalidInputError("invalid_input", f"{name}: the {head} gate needs the {head} head; build the "
                                    "request with enrol_request(multi_face, gates)")
    pose = face.head("pose") if gates.max_yaw is not None or gates.max_pitch is not None else None
    if pose is not None:
        for angle, limit, what in ((pose.yaw, gates.max_yaw, "yaw"), (pose.pitch, gates.max_pitch, "pitch")):
            if limit is not None and abs(angle) > limit:
                raise FaceAtlasError("pose_out_of_range", f"{name}: head {what} {angle:+.0f}° is beyond ±{limit:g}°",
                                     yaw=round(pose.yaw, 1), pitch=round(pose.pitch, 1))
    eyes = face.head("eyes") if gates.require_eyes_open else None
    if eyes is not None and not eyes.open:
        raise FaceAtlasError("eyes_closed", f"{name}: an eye looks closed (open probability left "
                             f"{eyes.left_open:.2f}, right {eyes.right_open:.2f})")
    if gates.liveness:
        from ..analysis.liveness import require_live

        require_live(face, name)


def prepare_faces(
    pipeline: Pipeline,
    images: Sequence[ImageInput],
    *,
    labels: Sequence[str] | None = None,
    multi_face: MultiFacePolicy = "reject",
    gates: QualityGates | None = None,
    hashes: Sequence[str | None] | None = None,
) -> Iterator[PreparedFace | Rejection]:
    """Each image's enrolment face or the reason it was refused, in order (images batched through the pipeline).

    ``hashes`` overrides the image hashes (e.g. a server that decoded uploaded bytes itself).
    """
    gates = gates or QualityGates()
    names = list(labels) if labels is not None else [label_of(img, i) for i, img in enumerate(images)]
    results = pipeline.iter_many(images, enrol_request(multi_face, gates), errors="keep")
    for i, result in enumerate(results):
        if hashes is not None and result.error is None:
            result = ImageResult(result.source, result.width, result.height, result.faces, result.detected, hashes[i])
        try:
            yield check_gates(result, names[i], multi_face, gates)
        except FaceAtlasError as exc:
            yield Rejection(names[i], exc.code, exc.message)


def prepare_face(
    pipeline: Pipeline,
    image: ImageInput,
    *,
    source: str | None = None,
    multi_face: MultiFacePolicy = "reject",
    gates: QualityGates | None = None,
) -> PreparedFace:
    """Detect, check and embed the one face of an enrolment image; raise FaceAtlasError with the reason."""
    gates = gates or QualityGates()
    result = pipeline.run_many([image], enrol_request(multi_face, gates), errors="keep")[0]
    return check_gates(result, source or result.source, multi_face, gates)


def label_of(image: ImageInput, i: int) -> str:
    """A printable name for an input image."""
    import os

    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f"<image {i}>"
