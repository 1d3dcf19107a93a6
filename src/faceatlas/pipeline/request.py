"""What a caller asks of the pipeline for one image: which faces, which per-face heads, which limits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..detect import SELECT_POLICIES, SelectPolicy
from ..errors import InvalidInputError
from ..images import ColorOrder

FacesMode = Literal["all", "one"]
TooMany = Literal["keep", "refuse"]
MinorFaces = Literal["keep", "drop"]

#: A face narrower than this share of the largest face's width is minor (``minor_faces="drop"``).
MINOR_SIZE = 1 / 3
#: ... and so is a face whose detection score is below this share of the largest face's score,
MINOR_SCORE = 0.5
#: ... or a box lying at least this much inside the largest face's box (a phantom part of that face).
MINOR_INSIDE = 0.8

#: Heads every pipeline knows (more can be registered with :func:`faceatlas.pipeline.register_head`).
EMBEDDING, QUALITY, CROP = "embedding", "quality", "crop"


@dataclass(frozen=True)
class FaceRequest:
    """One typed request instead of a dozen flags: faces to keep, heads to run and limits to apply.

    ``faces="all"`` keeps every face (highest detector score first), at most ``max_faces`` of them: beyond that the
    image is refused with ``too_many_faces`` when ``too_many="refuse"``, else the extra faces are dropped.
    ``faces="one"`` keeps the face at ``face_index`` or the one the ``select`` policy picks (``None``: the
    pipeline's default policy). ``heads`` names the per-face heads to run (``()`` = detection only).
    ``require_face`` raises ``no_face`` when nothing is found; ``hash_image`` records the sha256 of the encoded
    input (paths and bytes), which enrolment uses to spot duplicates. ``minor_faces="drop"`` discards faces that are
    minor next to the largest one (far narrower, far weaker or nested inside it) before any head runs.
    """

    faces: FacesMode = "all"
    select: SelectPolicy | None = None
    face_index: int | None = None
    max_faces: int | None = None
    too_many: TooMany = "keep"
    heads: tuple[str, ...] = (EMBEDDING,)
    require_face: bool = False
    color: ColorOrder | None = None
    hash_image: bool = False
    minor_faces: MinorFaces = "keep"

    def __post_init__(self) -> None:
        if self.faces not in ("all", "one"):
            raise InvalidInputError("invalid_input", f"faces must be 'all' or 'one', got {self.faces!r}")
        if self.select is not None and self.select not in SELECT_POLICIES:
            raise InvalidInputError(
                "invalid_input", f"face selection policy must be one of {SELECT_POLICIES}, got {self.select!r}"
            )
        if self.face_index is not None and (isinstance(self.face_index, bool) or not isinstance(self.face_index, int)):
            raise InvalidInputError("invalid_input", "face_index must be an integer")
        if self.max_faces is not None and (
            isinstance(self.max_faces, bool) or not isinstance(self.max_faces, int) or self.max_faces < 1
        ):
            raise InvalidInputError("invalid_input", "max_faces must be a positive integer")
        if self.too_many not in ("keep", "refuse"):
            raise InvalidInputError("invalid_input", f"too_many must be 'keep' or 'refuse', got {self.too_many!r}")
        if self.minor_faces not in ("keep", "drop"):
            raise InvalidInputError("invalid_input", f"minor_faces must be 'keep' or 'drop', got {self.minor_faces!r}")
        if isinstance(self.heads, str):
            object.__setattr__(self, "heads", (self.heads,))
        object.__setattr__(self, "heads", tuple(dict.fromkeys(self.heads)))

    def but(self, **changes: object) -> FaceRequest:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: Detection only: every face, no heads.
DETECT = FaceRequest(heads=())
#: Every face with its template.
EMBED_ALL = FaceRequest()
#: The selected face with its template; an image without a face is an error.
EMBED_ONE = FaceRequest(faces="one", require_face=True)
