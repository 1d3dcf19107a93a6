"""CompreFace-compatible REST API under ``/api/v1/`` (recognition, detection, verification), on the same pipeline.

Mapping (documented in the README, "Coming from CompreFace / Double Take"):

- a CompreFace *service* is a faceatlas collection plus scopes: the ``x-api-key`` (or ``Authorization: Bearer``) key
  must be limited to one collection, which the recognition routes use; a key valid for every collection (the admin
  key, ``--no-auth``) uses the collection ``default``. Reads need ``read``, adding faces and subjects ``enrol``,
  deletes ``delete``; the ``calculator`` plugin (embeddings) answers only for keys with ``templates`` and is ignored
  otherwise, as CompreFace ignores plugins a service lacks.
- ``image_id`` is the sample id written as a UUID (``00000000-0000-0000-0000-00000000002a`` is sample 42).
- ``similarity`` maps the cosine score monotonically onto 0..1 so that the server's operating threshold lands on
  exactly 0.5 (CompreFace's own scale puts its "same person" boundary at about 0.5): linear from cosine 0 → 0 to the
  threshold → 0.5, and from the threshold → 0.5 to cosine 1 → 1; negative cosines are 0.
- errors keep faceatlas's ``{"error": {...}}`` object and add CompreFace's top-level ``message`` and numeric ``code``
  (28: no face, 31: too many faces, 42/11: unknown subject/image, 43: subject exists, 26: invalid input, 10: key not
  valid for this service); face and input errors are 400 as in CompreFace, auth and limits keep their statuses.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import FaceAtlasError, NoFaceError, NotFoundError
from .auth import ANONYMOUS, Principal, limit_anonymous, peer, token_from_headers
from .compreface_format import (
    IMAGE_NOT_FOUND,
    NO_FACE,
    PREFIX,
    SUBJECT_NOT_FOUND,
    CompatErrors,
    face_json,
    image_id,
    sample_id,
    similarity,
    versions,
)
from .errors import ApiError
from .inputs import Upload, bool_field, int_field, parse_body, printable, text_field
from .service import Service

log = logging.getLogger("faceatlas.server")

#: The collection of keys that may use every collection (and of ``--no-auth``).
DEFAULT_COLLECTION = "default"
_TO_400 = (409, 415, 422)  # statuses CompreFace answers with a plain 400
_MAX_IDS = 1000
PLUGINS = ("landmarks", "calculator", "age", "gender", "pose")

T = TypeVar("T")


# -- request helpers ---------------------------------------------------------------------------------------------


def _svc(request: Request) -> Service:
    """The app's service (503 while it starts)."""
    svc: Service = request.app.state.ctx.svc()
    return svc


def caller(request: Request) -> Principal:
    """The caller's principal (the key the middleware checked before the body, or checked here); 401/429."""
    ctx = request.app.state.ctx
    if not ctx.settings.auth or ctx.authenticator is None:
        limit_anonymous(ctx.limiter, peer(request.scope))
        return ANONYMOUS
    key = getattr(request.state, "key", None)
    if key is None:
        key = ctx.authenticator.check(token_from_headers(request.scope.get("headers", [])), peer(request.scope))
        request.state.key_id = key.id
    return Principal.from_key(key)


def collection_of(principal: Principal) -> str:
    """The collection a CompreFace key works on: its only collection, or ``default`` for all-collection keys."""
    if principal.collections is None:
        return DEFAULT_COLLECTION
    if len(principal.collections) == 1:
        return next(iter(principal.collections))
    raise ApiError("forbidden", "a CompreFace key must be limited to one collection "
                                "(faceatlas keys create --compreface recognition --collection NAME)")


def allow(principal: Principal, scope: str, collection: str | None) -> None:
    """403 unless the key may do ``scope`` (on ``collection``)."""
    if not principal.allows(scope, collection):
        what = f"the {scope!r} scope" if not principal.allows(scope) else "this collection"
        raise ApiError("forbidden", f"this API key is not valid for this service (it lacks {what})")


def plugins_of(fields: dict[str, Any], principal: Principal, collection: str | None) -> set[str]:
    """The known ``face_plugins`` asked for; ``calculator`` only for keys with ``templates`` (else ignored)."""
    raw = fields.get("face_plugins")
    if not isinstance(raw, str):
        return set()
    asked = {p.strip().lower() for p in raw[:256].split(",")} & set(PLUGINS)
    if "calculator" in asked and not principal.allows("templates", collection):
        asked.discard("calculator")
    return asked


def heads_for(plugins: set[str], embed: bool) -> list[str]:
    """Pipeline heads for the plugins (``embedding`` when a template is needed)."""
    heads = ["embedding"] if embed or "calculator" in plugins else []
    return heads + [p for p in ("age", "gender", "pose") if p in plugins]


def det_threshold(fields: dict[str, Any]) -> float | None:
    """``det_prob_threshold`` in [0, 1] (None when absent)."""
    value = fields.get("det_prob_threshold")
    if value is None or value == "":
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ApiError("invalid_request", "det_prob_threshold must be a number from 0.0 to 1.0")
    return number


def subject_field(fields: dict[str, Any], required: bool = True) -> str | None:
    """A subject name (1-256 printable characters)."""
    return text_field(fields, "subject", required=required)


def cosine(a: Any, b: Any) -> float:
    """Cosine of two templates of the same model (``model_mismatch`` otherwise)."""
    if a is None or b is None or a.model_id != b.model_id:
        raise ApiError("model_mismatch", "the saved example was made by another model")
    return float(np.dot(a.vector, b.vector))


def _no_image(text: str) -> ApiError:
    """404 (code 11) for an image id that names no example of the collection."""
    return ApiError("not_found", f"no image with id {text[:40]}", details={"compreface_code": IMAGE_NOT_FOUND})


def _path_subject(name: str) -> str:
    """A subject taken from the path."""
    if not printable(name):
        raise ApiError("invalid_request", "the subject must be 1-256 printable characters")
    return name


def compat(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Answer a route's errors with CompreFace's statuses (face and input errors are 400)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except FaceAtlasError as exc:
            err = ApiError.from_library(exc)
            if exc.code == "not_found":  # the library's lookups here are of subjects
                err.details = {**(err.details or {}), "compreface_code": SUBJECT_NOT_FOUND}
        except ApiError as exc:
            err = exc
        if err.status in _TO_400:
            err.status = 400
        raise err

    return wrapper


async def _image(request: Request, name: str = "file") -> tuple[Upload, dict[str, Any]]:
    """The one image of a request (multipart ``file`` or JSON base64) and its fields (query parameters too)."""
    body = await parse_body(request, {name: False}, max_images=1)
    return body.image(name), body.fields


async def _recognize_work(svc: Service, request: Request, upload: Upload, collection: str, fields: dict[str, Any],
                          plugins: set[str]) -> dict[str, Any]:
    """Faces of the upload with their most similar subjects."""
    limit = int_field(fields, "limit", 0, 0, 10_000)
    count = int_field(fields, "prediction_count", 1, 1, 100)
    status = bool_field(fields, "status")
    min_score = det_threshold(fields)

    def work() -> dict[str, Any]:
        analysis = svc.analyze(upload, heads_for(plugins, True), min_score, limit)
        if not analysis.faces:
            raise NoFaceError(NO_FACE)
        hits = svc.nearest(collection, [f.template for f in analysis.faces], count)
        threshold = svc.operating_point(None).threshold
        result = []
        for face, cands in zip(analysis.faces, hits, strict=True):
            item = face_json(face, analysis, plugins, status)
            item["subjects"] = [{"similarity": similarity(c.score, threshold), "subject": c.external_id}
                                for c in cands]
            result.append(item)
        out: dict[str, Any] = {"result": result}
        if status:
            out["plugins_versions"] = versions(svc, plugins)
        return out

    return await svc.run(float(request.state.deadline), work)


# -- routes ------------------------------------------------------------------------------------------------------


def build_router() -> APIRouter:
    """Every CompreFace route (mounted under ``/api/v1``)."""
    r = APIRouter(tags=["CompreFace compatibility"])

    @r.post("/recognition/faces", status_code=201)
    @r.post("/recognition/faces/", status_code=201, include_in_schema=False)
    @compat
    async def add_face(request: Request) -> JSONResponse:
        """Add an example (one face) of a subject: ``subject`` and ``det_prob_threshold`` query parameters."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "enrol", coll)
        upload, fields = await _image(request)
        subject = subject_field(fields) or ""
        min_score = det_threshold(fields)
        svc = _svc(request)
        sid = await svc.run(float(request.state.deadline), svc.add_example, coll, subject, upload, min_score,
                            principal.actor)
        return JSONResponse({"image_id": image_id(sid), "subject": subject}, 201)

    @r.get("/recognition/faces")
    @r.get("/recognition/faces/", include_in_schema=False)
    @compat
    async def list_faces(request: Request) -> JSONResponse:
        """Saved examples, paged (``page`` from 0, ``size``), optionally of one ``subject``."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "read", coll)
        fields = dict(request.query_params)
        page = int_field(fields, "page", 0, 0, 10**7)
        size = int_field(fields, "size", 20, 1, 1000)
        subject = subject_field(fields, required=False)
        rows, total = await run_in_threadpool(_svc(request).examples, coll, subject, page * size, size)
        return JSONResponse({"faces": [{"image_id": image_id(s.id), "subject": name} for s, name in rows],
                             "page_number": page, "page_size": size,
                             "total_pages": (total + size - 1) // size, "total_elements": total})

    @r.delete("/recognition/faces")
    @r.delete("/recognition/faces/", include_in_schema=False)
    @compat
    async def delete_faces(request: Request) -> JSONResponse:
        """Delete every example of ``subject`` (every example of the collection without it)."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "delete", coll)
        subject = subject_field(dict(request.query_params), required=False)
        svc = _svc(request)
        ids = await run_in_threadpool(svc.subject_example_ids, coll, subject)
        done = await run_in_threadpool(svc.delete_examples, coll, ids, principal.actor)
        return JSONResponse({"deleted": len(done)})

    @r.post("/recognition/faces/delete")
    @r.delete("/recognition/faces/delete", include_in_schema=False)  # some clients send the list with DELETE
    @compat
    async def delete_many(request: Request) -> JSONResponse:
        """Delete several examples by ``image_id`` (a JSON list); unknown ids are ignored."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "delete", coll)
        try:
            ids = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise ApiError("invalid_json", "the body must be a JSON list of image ids") from None
        if not isinstance(ids, list) or len(ids) > _MAX_IDS or not all(isinstance(i, str) for i in ids):
            raise ApiError("invalid_request", f"the body must be a JSON list of at most {_MAX_IDS} image ids")
        sids = []
        for text in ids:
            try:
                sids.append(sample_id(text))
            except ApiError:
                continue
        done = await run_in_threadpool(_svc(request).delete_examples, coll, sids, principal.actor)
        return JSONResponse([{"image_id": image_id(s), "subject": name} for s, name in done])

    @r.delete("/recognition/faces/{image}")
    @compat
    async def delete_face(image: str, request: Request) -> JSONResponse:
        """Delete one example by ``image_id`` (404 if there is none)."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "delete", coll)
        sid = sample_id(image)
        done = await run_in_threadpool(_svc(request).delete_examples, coll, [sid], principal.actor)
        if not done:
            raise _no_image(image)
        return JSONResponse({"image_id": image_id(done[0][0]), "subject": done[0][1]})

    @r.post("/recognition/faces/{image}/verify")
    @compat
    async def verify_face(image: str, request: Request) -> JSONResponse:
        """Compare every face of the upload with one saved example: ``similarity`` per face."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "read", coll)
        sid = sample_id(image)
        upload, fields = await _image(request)
        plugins = plugins_of(fields, principal, coll)
        limit = int_field(fields, "limit", 0, 0, 10_000)
        status = bool_field(fields, "status")
        min_score = det_threshold(fields)
        svc = _svc(request)

        def work() -> dict[str, Any]:
            try:
                sample, _ = svc.example(coll, sid)
            except NotFoundError:
                raise _no_image(image) from None
            analysis = svc.analyze(upload, heads_for(plugins, True), min_score, limit)
            if not analysis.faces:
                raise NoFaceError(NO_FACE)
            threshold = svc.operating_point(None).threshold
            result = []
            for face in analysis.faces:
                item = face_json(face, analysis, plugins, status)
                item["similarity"] = similarity(cosine(face.template, sample.template), threshold)
                result.append(item)
            result.sort(key=lambda x: x["similarity"], reverse=True)
            out: dict[str, Any] = {"result": result}
            if status:
                out["plugins_versions"] = versions(svc, plugins)
            return out

        return JSONResponse(await svc.run(float(request.state.deadline), work))

    @r.post("/recognition/recognize")
    @compat
    async def recognize(request: Request) -> JSONResponse:
        """Every face (biggest first, ``limit``) with its ``prediction_count`` most similar subjects."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "read", coll)
        upload, fields = await _image(request)
        plugins = plugins_of(fields, principal, coll)
        return JSONResponse(await _recognize_work(_svc(request), request, upload, coll, fields, plugins))

    _subject_routes(r)
    _service_routes(r)
    return r


def _subject_routes(r: APIRouter) -> None:
    """Subjects: add, list, rename (merging into an existing one), delete one, delete all."""

    @r.post("/recognition/subjects", status_code=201)
    @r.post("/recognition/subjects/", status_code=201, include_in_schema=False)
    @compat
    async def add_subject(request: Request) -> JSONResponse:
        """Create a subject without examples (400, code 43, if it exists)."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "enrol", coll)
        body = await parse_body(request, {}, max_images=0)
        subject = subject_field(body.fields) or ""
        await run_in_threadpool(_svc(request).add_subject, coll, subject, principal.actor)
        return JSONResponse({"subject": subject}, 201)

    @r.get("/recognition/subjects")
    @r.get("/recognition/subjects/", include_in_schema=False)
    @compat
    async def list_subjects(request: Request) -> JSONResponse:
        """Every subject of the collection."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "read", coll)
        return JSONResponse({"subjects": await run_in_threadpool(_svc(request).subjects, coll)})

    @r.put("/recognition/subjects/{subject}")
    @compat
    async def rename_subject(subject: str, request: Request) -> JSONResponse:
        """Rename a subject; into an existing name its examples are merged."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "enrol", coll)
        body = await parse_body(request, {}, max_images=0)
        new = text_field({"subject": body.fields.get("subject")}, "subject", required=True) or ""
        try:
            await run_in_threadpool(_svc(request).rename_subject, coll, _path_subject(subject), new, principal.actor)
        except NotFoundError:
            return JSONResponse({"updated": False})
        return JSONResponse({"updated": True})

    @r.delete("/recognition/subjects/{subject}")
    @compat
    async def delete_subject(subject: str, request: Request) -> JSONResponse:
        """Delete a subject with every example of it."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "delete", coll)
        await run_in_threadpool(_svc(request).delete_person, coll, _path_subject(subject), principal.actor)
        return JSONResponse({"subject": subject})

    @r.delete("/recognition/subjects")
    @r.delete("/recognition/subjects/", include_in_schema=False)
    @compat
    async def delete_subjects(request: Request) -> JSONResponse:
        """Delete every subject of the collection with its examples."""
        principal = caller(request)
        coll = collection_of(principal)
        allow(principal, "delete", coll)
        return JSONResponse({"deleted": await run_in_threadpool(_svc(request).delete_subjects, coll, principal.actor)})


def _service_routes(r: APIRouter) -> None:
    """The detection and verification services (no gallery involved)."""

    @r.post("/detection/detect")
    @compat
    async def detect(request: Request) -> JSONResponse:
        """Every face (biggest first, ``limit``) with the plugins asked for."""
        principal = caller(request)
        allow(principal, "read", None)
        upload, fields = await _image(request)
        plugins = plugins_of(fields, principal, None)
        limit = int_field(fields, "limit", 0, 0, 10_000)
        status = bool_field(fields, "status")
        min_score = det_threshold(fields)
        svc = _svc(request)

        def work() -> dict[str, Any]:
            analysis = svc.analyze(upload, heads_for(plugins, False), min_score, limit)
            if not analysis.faces:
                raise NoFaceError(NO_FACE)
            out: dict[str, Any] = {"result": [face_json(f, analysis, plugins, status) for f in analysis.faces]}
            if status:
                out["plugins_versions"] = versions(svc, plugins, "calculator" in plugins)
            return out

        return JSONResponse(await svc.run(float(request.state.deadline), work))

    @r.post("/verification/verify")
    @compat
    async def verify(request: Request) -> JSONResponse:
        """The (biggest) face of ``source_image`` against every face of ``target_image``."""
        principal = caller(request)
        allow(principal, "read", None)
        body = await parse_body(request, {"source_image": False, "target_image": False}, max_images=2)
        source, target = body.image("source_image"), body.image("target_image")
        plugins = plugins_of(body.fields, principal, None)
        limit = int_field(body.fields, "limit", 0, 0, 10_000)
        status = bool_field(body.fields, "status")
        min_score = det_threshold(body.fields)
        svc = _svc(request)

        def work() -> dict[str, Any]:
            heads = heads_for(plugins, True)
            a = svc.analyze(source, heads, min_score, 1)
            b = svc.analyze(target, heads, min_score, limit)
            if not a.faces or not b.faces:
                raise NoFaceError(NO_FACE)
            threshold = svc.operating_point(None).threshold
            src = a.faces[0]
            matches = []
            for face in b.faces:
                item = face_json(face, b, plugins, status)
                item["similarity"] = similarity(cosine(face.template, src.template), threshold)
                matches.append(item)
            matches.sort(key=lambda x: x["similarity"], reverse=True)
            item = {"source_image_face": face_json(src, a, plugins, status), "face_matches": matches}
            if status:
                item["plugins_versions"] = versions(svc, plugins)
            return {"result": [item]}

        return JSONResponse(await svc.run(float(request.state.deadline), work))


def install(app: FastAPI) -> None:
    """Mount the CompreFace-compatible routes under ``/api/v1`` and their error layer (outermost)."""
    app.include_router(build_router(), prefix=PREFIX)
    app.add_middleware(CompatErrors)
