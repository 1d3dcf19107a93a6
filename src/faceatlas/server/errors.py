"""HTTP errors of the REST server: one JSON shape, stable codes, and the status for every library error code."""

from __future__ import annotations

import json
from typing import Any

from ..errors import FaceAtlasError

#: Codes only the server produces (the library's are in ``faceatlas.errors.ERROR_CODES``), with their status.
SERVER_ERROR_CODES: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "no API key, or an unknown, malformed or revoked one"),
    "forbidden": (403, "the key is valid but lacks the scope or the collection for this request"),
    "rate_limited": (429, "too many requests for this key (or client); retry after the Retry-After seconds"),
    "request_too_large": (413, "the request body is larger than the server's upload limit"),
    "unsupported_media_type": (415, "the body is neither multipart/form-data, JSON, nor a raw image"),
    "invalid_request": (422, "a field is missing, of the wrong type or out of range"),
    "invalid_json": (400, "the body is not valid JSON (or not a JSON object)"),
    "invalid_base64": (400, "an image field is not valid base64 (or data: URL)"),
    "too_many_faces": (422, "the image has more faces than the server's per-image limit"),
    "too_many_images": (422, "more images in one request than the server accepts"),
    "enrolment_rejected": (422, "no image of the enrolment could be used (each rejection has its reason)"),
    "method_not_allowed": (405, "the path exists but not with this HTTP method"),
    "request_timeout": (408, "the request body did not arrive within the request timeout"),
    "timeout": (503, "the work did not finish within the request timeout; retry later"),
    "busy": (503, "the server's work queue is full; retry after the Retry-After seconds"),
}

# Library codes that are the caller's doing map to 4xx; the rest (gallery or model trouble) are the server's.
_LIBRARY_STATUS: dict[str, int] = {
    "image_not_found": 400,
    "image_empty": 400,
    "image_corrupt": 400,
    "image_invalid": 400,
    "image_unsupported": 415,
    "image_too_large": 413,
    "color_order_required": 400,
    "invalid_input": 400,
    "invalid_threshold": 400,
    "far_unresolvable": 400,
    "calibration_missing": 422,
    "no_face": 422,
    "face_index": 422,
    "multiple_faces": 422,
    "face_too_small": 422,
    "low_detection_score": 422,
    "low_quality": 422,
    "duplicate_image": 422,
    "ambiguous_identity": 422,
    "pose_out_of_range": 422,
    "eyes_closed": 422,
    "spoof_suspected": 422,
    "import_invalid": 400,
    "not_found": 404,
    "model_unknown": 404,
    "conflict": 409,
    "model_mismatch": 409,
    "gallery_busy": 503,
    "gallery_corrupt": 500,
    "gallery_key_wrong": 500,
    "gallery_key_missing": 500,
    "gallery_key_invalid": 500,
    "gallery_not_encrypted": 500,
    "gallery_too_new": 500,
    "gallery_readonly": 500,
    "gallery_closed": 500,
    "gallery_error": 500,
    "index_unavailable": 500,
    "model_not_found": 500,
    "model_checksum": 500,
    "model_offline": 500,
    "model_download": 500,
    "model_invalid": 500,
    "model_task": 500,
    "model_runtime_missing": 500,
    "missing_dependency": 500,
    "internal": 500,
}


def status_for(code: str) -> int:
    """HTTP status for an error code (library or server); unknown library codes count as bad input (400)."""
    if code in SERVER_ERROR_CODES:
        return SERVER_ERROR_CODES[code][0]
    return _LIBRARY_STATUS.get(code, 400)


class ApiError(Exception):
    """An error to send as ``{"error": {...}}`` with its HTTP status and extra headers."""

    def __init__(self, code: str, message: str, status: int | None = None, *, headers: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else status_for(code)
        self.headers = headers or {}
        self.details = details

    @classmethod
    def from_library(cls, exc: FaceAtlasError) -> ApiError:
        """Wrap a library error with the status its code maps to (details kept only when JSON-safe)."""
        body = exc.to_dict()
        return cls(exc.code, exc.message, details=body.get("details"))

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON error body."""
        err: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def error_bytes(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> bytes:
    """An encoded JSON error body (for responses sent below the framework)."""
    err: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        err["details"] = details
    return json.dumps({"error": err}, separators=(",", ":")).encode("utf-8")
