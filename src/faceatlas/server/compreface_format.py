"""CompreFace's wire format for faceatlas results: similarity scale, image ids, face objects and error bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import MutableMapping
from typing import Any

from .errors import ApiError
from .service import Analysis, Service

PREFIX = "/api/v1"
#: Where the server's operating threshold lands on CompreFace's 0..1 similarity scale.
MATCH_SIMILARITY = 0.5
#: Half-width (years) of the age range reported for the ``age`` plugin around the estimate.
AGE_BAND = 4
NO_FACE = "No face is found in the given image"
#: faceatlas error code → CompreFace numeric code (anything else: 0, CompreFace's "undefined").
CF_CODES: dict[str, int] = {
    "no_face": 28, "low_detection_score": 28, "too_many_faces": 31, "multiple_faces": 31, "conflict": 43,
    "unauthorized": 10, "forbidden": 10, "invalid_request": 26, "invalid_json": 26, "invalid_base64": 26,
    "invalid_input": 26, "image_corrupt": 26, "image_empty": 26, "image_invalid": 26, "image_unsupported": 21,
    "face_too_small": 26, "low_quality": 26, "duplicate_image": 26, "model_mismatch": 26,
}
#: Codes for "no such subject" and "no such image" (set per error: a plain 404 path is code 0).
SUBJECT_NOT_FOUND, IMAGE_NOT_FOUND = 42, 11

Scope = MutableMapping[str, Any]


# -- values ---------------------------------------------------------------------------------------------


def similarity(score: float, threshold: float) -> float:
    """A cosine score on CompreFace's 0..1 scale: monotone, the threshold at ``MATCH_SIMILARITY``."""
    t = min(max(threshold, 1e-6), 1.0 - 1e-6)
    if score >= t:
        value = MATCH_SIMILARITY + (1.0 - MATCH_SIMILARITY) * (score - t) / (1.0 - t)
    else:
        value = MATCH_SIMILARITY * max(score, 0.0) / t
    return round(min(1.0, max(0.0, value)), 5)


def image_id(sample_id: int) -> str:
    """A sample id as a CompreFace ``image_id`` (UUID text)."""
    return str(uuid.UUID(int=sample_id))


def sample_id(text: str) -> int:
    """The sample id of an ``image_id`` (UUID text, or a plain number); 400 if malformed, 404 if out of range."""
    text = text.strip()
    try:
        value = int(text) if text.isdigit() and len(text) < 24 else uuid.UUID(text).int
    except ValueError:
        raise ApiError("invalid_request", "image_id must be a UUID", details={"compreface_code": 26}) from None
    if not 0 < value < 2**63:
        raise ApiError("not_found", f"no image with id {text[:40]}", details={"compreface_code": IMAGE_NOT_FOUND})
    return value


def _box(face: Any, width: int, height: int) -> dict[str, Any]:
    """CompreFace's ``box``: detection probability and integer corners clamped to the image."""
    b = face.box
    return {"probability": round(float(face.score), 5),
            "x_max": int(min(width, max(0, round(b.x2)))), "y_max": int(min(height, max(0, round(b.y2)))),
            "x_min": int(min(width, max(0, round(b.x1)))), "y_min": int(min(height, max(0, round(b.y1))))}


def face_json(face: Any, analysis: Analysis, plugins: set[str], status: bool) -> dict[str, Any]:
    """One face as CompreFace writes it: plugin results, ``box``, ``landmarks``, ``execution_time`` (status)."""
    out: dict[str, Any] = {}
    age, gender, pose = face.head("age"), face.head("gender"), face.head("pose")
    if "age" in plugins and age is not None:
        years = int(round(age.years))
        out["age"] = {"low": max(0, years - AGE_BAND), "high": years + AGE_BAND}
    if "gender" in plugins and gender is not None:
        out["gender"] = {"probability": round(float(gender.probability), 5), "value": gender.label}
    if "pose" in plugins and pose is not None:
        out["pose"] = {"pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2), "yaw": round(pose.yaw, 2)}
    if "calculator" in plugins and face.template is not None:
        out["embedding"] = [float(v) for v in face.template.vector]
    out["box"] = _box(face, analysis.width, analysis.height)
    if "landmarks" in plugins:
        out["landmarks"] = [[int(round(x)), int(round(y))] for x, y in face.landmarks.tolist()]
    if status:
        out["execution_time"] = {_plugin(k): round(v, 1) for k, v in analysis.timings.items()}
    return out


def _plugin(head: str) -> str:
    """CompreFace's name for a stage."""
    return "calculator" if head == "embedding" else head


def versions(svc: Service, plugins: set[str], embedded: bool = True) -> dict[str, str]:
    """``plugins_versions``: which faceatlas model answers for each stage (``calculator`` when templates were made)."""
    out = {"detector": f"faceatlas.{svc.atlas.detector_name}"}
    if embedded:
        out["calculator"] = f"faceatlas.{svc.atlas.model_id}"
    out.update({p: f"faceatlas.{p}" for p in sorted(plugins) if p in ("age", "gender", "pose")})
    return out


# -- error bodies ------------------------------------------------------------------------------------------------


class CompatErrors:
    """ASGI layer for ``/api/v1/``: errors also carry CompreFace's ``message`` and ``code``; no caching."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Pass other paths through; rewrite error bodies of compat paths."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_compat(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
                message["headers"] = headers + [(b"cache-control", b"no-store")]
                is_json = any(k.lower() == b"content-type" and b"json" in v for k, v in headers)
                if int(message["status"]) >= 400 and is_json:
                    held["start"] = message
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _compat_body(b"".join(chunks))
                start = held.pop("start")
                start["headers"] = [h for h in start["headers"] if h[0].lower() != b"content-length"] + [
                    (b"content-length", str(len(body)).encode("ascii"))]
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_compat)


def _compat_body(raw: bytes) -> bytes:
    """A faceatlas error body with CompreFace's ``message`` and numeric ``code`` added at the top."""
    try:
        data = json.loads(raw)
        err = data["error"]
        code = (err.get("details") or {}).get("compreface_code", CF_CODES.get(str(err["code"]), 0))
        return json.dumps({"message": str(err["message"]), "code": int(code), **data}).encode("utf-8")
    except (ValueError, KeyError, TypeError, AttributeError):
        return raw
