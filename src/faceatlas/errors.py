"""One exception type with stable error codes, shared by the library, CLI and REST server."""

from __future__ import annotations

from typing import Any


class FaceAtlasError(Exception):
    """Base error: a stable machine-readable ``code`` plus a one-line human ``message``."""

    code: str

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """Serialise as the ``error`` object used by ``--json`` output and REST bodies."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = {k: v for k, v in self.details.items() if _is_jsonable(v)}
        return out


class ImageError(FaceAtlasError):
    """An input image could not be turned into pixels (missing, empty, corrupt, too large...)."""


class ModelError(FaceAtlasError):
    """A model could not be resolved, verified, transformed or loaded."""


class NoFaceError(FaceAtlasError):
    """An operation that needs a face found none."""

    def __init__(self, message: str = "no face found in the image", **details: Any) -> None:
        super().__init__("no_face", message, **details)


class InvalidInputError(FaceAtlasError):
    """An argument has the wrong type or value."""


class NotFoundError(FaceAtlasError):
    """A referenced object (collection, person, face, key) does not exist."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("not_found", message, **details)


def _is_jsonable(value: Any) -> bool:
    """Tell whether a detail value is a plain JSON scalar or list of scalars."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (str, int, float, bool)) or v is None for v in value)
    return False


# Stable codes, listed once so documentation and tests can enumerate them.
ERROR_CODES: dict[str, str] = {
    "image_not_found": "the image path does not exist",
    "image_empty": "the image file or buffer has no bytes",
    "image_corrupt": "the image data is truncated or damaged",
    "image_unsupported": "the data is not an image format we can decode",
    "image_too_large": "the image has more pixels (or bytes) than the configured limit",
    "image_invalid": "an in-memory image has an unusable shape or dtype",
    "color_order_required": "a numpy image needs its colour order ('rgb' or 'bgr')",
    "invalid_input": "an argument has the wrong type or value",
    "no_face": "no face was found where one is required",
    "face_index": "the requested face index does not exist in the image",
    "multiple_faces": "an enrolment image shows more than one face and the policy is to reject it",
    "face_too_small": "the face is smaller than the enrolment's minimum face size",
    "low_detection_score": "the face's detection score is below the enrolment's minimum",
    "low_quality": "the face's quality score (size, sharpness, pose) is below the enrolment's minimum",
    "duplicate_image": "this exact image is already enrolled",
    "pose_out_of_range": "the face is turned further (yaw or pitch) than the enrolment allows",
    "eyes_closed": "the enrolment requires open eyes and at least one eye looks closed",
    "spoof_suspected": "the passive liveness check judged the face a likely replay or print (not a certified PAD)",
    "ambiguous_identity": "the face matches another enrolled person better than the person it is enrolled for",
    "reembed_unsupported": "stored crops cannot be re-embedded for a model that aligns faces differently",
    "model_unknown": "no model of that name is in the manifest",
    "model_not_found": "the model file is in none of its sources",
    "model_checksum": "a model file's sha256 does not match the manifest",
    "model_offline": "the model must be downloaded but FACEATLAS_OFFLINE=1 forbids it",
    "model_download": "downloading the model failed",
    "model_invalid": "the model file cannot be loaded or transformed",
    "model_task": "the model exists but is not of the task asked for",
    "model_mismatch": "templates from different models cannot be compared",
    "invalid_threshold": "a threshold is neither a number nor an operating point like far=1e-3",
    "far_unresolvable": "the asked-for FAR is below what the calibration's impostor pairs can resolve",
    "calibration_missing": "an operating point was asked for a model that has no calibration",
    "not_found": "a referenced object does not exist",
    "conflict": "an object with that id or name already exists",
    "gallery_corrupt": "the gallery file is not a readable faceatlas database",
    "gallery_key_wrong": "the encryption key does not open this gallery",
    "gallery_key_missing": "the gallery is encrypted and no key was given",
    "gallery_key_invalid": "the key is not 32 bytes, hex, base64, a key file or a passphrase",
    "gallery_not_encrypted": "a key was given for a gallery created without encryption",
    "gallery_too_new": "the gallery was written by a newer faceatlas (schema version too high)",
    "gallery_busy": "the gallery stayed locked by another writer past the busy timeout",
    "gallery_readonly": "the gallery file or folder is not writable",
    "gallery_closed": "the gallery was used after close()",
    "gallery_key_unsupported": "a Milvus gallery cannot take an encryption key (its templates must stay searchable)",
    "gallery_backend_mismatch": "the gallery keeps its templates in another backend than the URI asks for",
    "gallery_error": "the database reported an unexpected error",
    "import_invalid": "an export file is damaged or of another format",
    "index_unavailable": "the approximate index library is not installed",
    "model_runtime_missing": "the model needs an optional runtime that is not installed",
    "missing_dependency": "an optional dependency of this feature is not installed",
    "video_not_found": "the video file does not exist",
    "video_unreadable": "the video, camera or stream cannot be opened or decoded",
    "video_empty": "the video has no frames",
    "video_write_failed": "an output video could not be written",
    "cluster_state_invalid": "a cluster state file is damaged or of another format",
    "internal": "an unexpected failure (a bug): please report it",
    # REST server (their HTTP statuses are in faceatlas.server.errors)
    "unauthorized": "no API key, or an unknown, malformed or revoked one",
    "forbidden": "the key is valid but lacks the scope or the collection for this request",
    "rate_limited": "too many requests for this key (or client); retry after the Retry-After seconds",
    "request_too_large": "the request body is larger than the server's upload limit",
    "unsupported_media_type": "the body is neither multipart/form-data, JSON, nor a raw image",
    "invalid_request": "a field is missing, of the wrong type or out of range",
    "invalid_json": "the body is not valid JSON (or not a JSON object)",
    "invalid_base64": "an image field is not valid base64 (or data: URL)",
    "too_many_faces": "the image has more faces than the server's per-image limit",
    "too_many_images": "more images in one request than the server accepts",
    "enrolment_rejected": "no image of the enrolment could be used (each rejection has its reason)",
    "method_not_allowed": "the path exists but not with this HTTP method",
    "request_timeout": "the request body did not arrive within the request timeout",
    "timeout": "the work did not finish within the request timeout; retry later",
    "busy": "the server's work queue is full; retry after the Retry-After seconds",
}
