"""``FaceAtlas``: the friendly face of the pipeline — detect, embed, align and verify in one call each."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .errors import NoFaceError
from .pipeline import DETECT, EMBEDDING, CropSpec, FaceBatch, FaceRequest, Pipeline
from .types import Face

if TYPE_CHECKING:  # pragma: no cover - types only: a cold start imports nothing it does not run
    import numpy as np
    import numpy.typing as npt

    from .detect import SelectPolicy
    from .explain import Explanation
    from .images import ColorOrder, ImageInput
    from .types import Detection, Template, Verification


class FaceAtlas(Pipeline):
    """Face detection, templates and verification with one object; models load on first use; thread-safe.

    It *is* the :class:`~faceatlas.pipeline.Pipeline` (same constructor), plus the everyday calls below; the
    recogniser, REST service, video and clustering use the same object.
    """

    def detect(self, image: ImageInput, *, color: ColorOrder | None = None) -> list[Face]:
        """Every face in the image (box, score, landmarks), highest score first."""
        return list(self.run(image, DETECT.but(color=color)).faces)

    def align(self, image: ImageInput, face: Face | Detection, *, color: ColorOrder | None = None) -> npt.NDArray[np.uint8]:
        """The canonical RGB crop of one face in this embedder's alignment (112×112 ArcFace for most models)."""
        loaded = self.load(image, color)
        det = face.detection if isinstance(face, Face) else face
        emb = self.embedder
        members = getattr(emb, "members", None)
        first = members[0][0] if members else emb
        return FaceBatch([(loaded, det)]).crops(CropSpec(first.template, first.size[0]))[0]

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
        chunk: int | None = None,
    ) -> list[list[Face]]:
        """Faces with templates for many images, embedding crops in shared batches of about ``chunk`` faces.

        ``chunk=None``: :meth:`batch_faces` (as many faces as the models have threads; measured fastest)."""
        request = FaceRequest(faces=faces, select=select, color=color)  # type: ignore[arg-type]
        return [list(r.faces) for r in self.iter_many(images, request, chunk=chunk)]

    def template(
        self,
        image: ImageInput,
        *,
        color: ColorOrder | None = None,
        select: SelectPolicy | None = None,
        face_index: int | None = None,
        max_faces: int | None = None,
    ) -> tuple[Face, int]:
        """One face with its template (by explicit index or selection policy) and the image's face count.

        ``max_faces`` refuses (``too_many_faces``) an image with more faces than that.
        """
        result = self.run(image, FaceRequest(faces="one", select=select, face_index=face_index, color=color,
                                             require_face=True, max_faces=max_faces, too_many="refuse"))
        return result.face, result.detected

    def compare(self, a: Template, b: Template) -> float:
        """Cosine similarity of two templates (same model required)."""
        from .thresholds import cosine

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
        max_faces: int | None = None,
        liveness: bool = False,
    ) -> Verification:
        """Are these two faces the same person? Echoes the score, threshold used and the faces compared.

        ``liveness=True`` also runs the passive liveness head on both faces and refuses a suspected replay
        (``spoof_suspected``).
        """
        from .types import Verification

        fa, na = self._face_for_verify(a, color, select, face_a, max_faces, liveness)
        fb, nb = self._face_for_verify(b, color, select, face_b, max_faces, liveness)
        assert fa.template is not None and fb.template is not None
        point = self.operating_point(threshold)
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
            far=self.far(score),
            threshold_source=point.source,
        )

    def explain(self, a: ImageInput | Face, b: ImageInput | Face, *, grid: int = 7,
                threshold: float | str | None = None, color: ColorOrder | None = None,
                face_a: int | None = None, face_b: int | None = None) -> Explanation:
        """"Why this match": occlusion maps (score drop per greyed-out patch) over the two aligned faces."""
        from .explain import explain_pair

        return explain_pair(self, a, b, grid=grid, threshold=threshold, color=color, face_a=face_a, face_b=face_b)

    def _face_for_verify(
        self, x: ImageInput | Face, color: ColorOrder | None, select: SelectPolicy | None, index: int | None,
        max_faces: int | None, liveness: bool = False,
    ) -> tuple[Face, int]:
        """A templated face from an image or an already-embedded Face (checked for liveness when asked)."""
        if isinstance(x, Face):
            if x.template is None:
                raise NoFaceError("the Face passed to verify has no template; use FaceAtlas.embed first")
            face, n = x, 1
        elif not liveness:
            return self.template(x, color=color, select=select, face_index=index, max_faces=max_faces)
        else:
            result = self.run(x, FaceRequest(faces="one", select=select, face_index=index, color=color,
                                             require_face=True, max_faces=max_faces, too_many="refuse",
                                             heads=(EMBEDDING, "liveness")))
            face, n = result.face, result.detected
        if liveness:
            from .analysis.liveness import require_live

            require_live(face, str(x) if isinstance(x, (str, os.PathLike)) else "the image")
        return face, n

    def analyze(
        self,
        image: ImageInput,
        heads: Sequence[str] | None = None,
        *,
        color: ColorOrder | None = None,
        faces: str = "all",
        select: SelectPolicy | None = None,
        max_faces: int | None = None,
    ) -> list[Face]:
        """Faces with face-analysis estimates (default: age, gender, expression, pose, eyes, liveness) in ``face.heads``.

        ``heads`` names any registered heads (``faceatlas.analysis.ANALYSIS_HEADS``, plus "embedding", "quality").
        Every result is an estimate, computed on request and never stored with templates.
        """
        from .analysis import DEFAULT_HEADS

        request = FaceRequest(faces=faces, select=select, color=color, max_faces=max_faces,  # type: ignore[arg-type]
                              heads=tuple(DEFAULT_HEADS if heads is None else heads))
        return list(self.run(image, request).faces)
