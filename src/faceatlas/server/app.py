"""The FastAPI application: REST endpoints under ``/v1``, the web page at ``/``, OpenAPI at ``/docs``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import FaceAtlasError, NotFoundError
from .auth import ANONYMOUS, Authenticator, Principal, limit_anonymous, peer, token_from_headers
from .compreface import install as install_compreface
from .docs import install_docs
from .errors import ApiError
from .inputs import (
    bool_field,
    heads_field,
    int_field,
    metadata_field,
    parse_body,
    printable,
    text_field,
    threshold_field,
)
from .keys import KeyStore
from .middleware import GuardMiddleware
from .ratelimit import RateLimiter
from .service import Service
from .settings import ServerSettings

log = logging.getLogger("faceatlas.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"

_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited"}


@dataclass
class AppContext:
    """Per-process state of the app: settings, the service, the key store and the rate limiter."""

    settings: ServerSettings
    service: Service | None
    keys: KeyStore | None
    limiter: RateLimiter
    owns_service: bool = False
    authenticator: Authenticator | None = None

    def svc(self) -> Service:
        """The service (available once the app has started)."""
        if self.service is None:
            raise ApiError("busy", "the server is still starting", headers={"Retry-After": "1"})
        return self.service


class ErrorDetail(BaseModel):
    """The ``error`` object of every error response."""

    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "request_id"}}``."""

    error: ErrorDetail


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((400, "Bad input"), (401, "No or invalid API key"), (403, "Scope or collection not allowed"),
                         (404, "Not found"), (413, "Too large"), (415, "Unsupported media type"),
                         (422, "Invalid request or unusable image"), (429, "Rate limited (see Retry-After)"),
                         (503, "Timed out or busy (see Retry-After)"))
}

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer fak_…")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: fak_…")


def _ctx(request: Request) -> AppContext:
    """The app context of a request."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def authenticate(request: Request) -> Principal:
    """The caller's principal (the key the middleware checked before reading the body); 401/429 otherwise."""
    ctx = _ctx(request)
    if not ctx.settings.auth or ctx.authenticator is None:
        limit_anonymous(ctx.limiter, peer(request.scope))
        return ANONYMOUS
    key = getattr(request.state, "key", None)
    if key is None:  # a route outside the pre-authenticated paths
        key = ctx.authenticator.check(token_from_headers(request.scope.get("headers", [])), peer(request.scope))
        request.state.key_id = key.id
    return Principal.from_key(key)


def require(scope: str) -> Callable[..., Principal]:
    """A dependency: an authenticated caller allowed ``scope`` on the path's collection (403 otherwise)."""

    def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
        api_key: Annotated[str | None, Security(_api_key_header)] = None,
    ) -> Principal:
        # ``bearer`` and ``api_key`` only document the schemes in OpenAPI: the middleware already checked the key
        principal = authenticate(request)
        for param, what in (("collection", "collection"), ("person", "person id")):
            if param in request.path_params:
                _name_ok(str(request.path_params[param]), what)
        collection = request.path_params.get("collection")
        check(principal, scope, collection)
        return principal

    dependency.__doc__ = f"Require the {scope!r} scope."
    return dependency


def check(principal: Principal, scope: str, collection: str | None = None) -> None:
    """403 unless ``principal`` may do ``scope`` (on ``collection``)."""
    if not principal.allows(scope, None):
        raise ApiError("forbidden", f"this API key lacks the {scope!r} scope")
    if collection is not None and not principal.allows(scope, collection):
        raise ApiError("forbidden", "this API key is not allowed to use this collection")


def _json(data: Any, status: int = 200) -> JSONResponse:
    """A JSON response."""
    return JSONResponse(data, status_code=status)


def _request_id(request: Request) -> str:
    """The request id the middleware assigned."""
    return str(getattr(request.state, "request_id", "-"))


def _deadline(request: Request) -> float:
    """When this request's work must be done (monotonic clock)."""
    return float(request.state.deadline)


def _body_doc(images: dict[str, bool], fields: dict[str, dict[str, Any]], required: list[str],
              raw: bool = False) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for endpoints taking multipart uploads, base64 JSON or a raw image."""
    multipart: dict[str, Any] = {}
    as_json: dict[str, Any] = {}
    for name, many in images.items():
        binary = {"type": "string", "format": "binary"}
        b64 = {"type": "string", "description": "base64 image (or data: URL)"}
        multipart[name] = {"type": "array", "items": binary} if many else binary
        as_json[name] = {"type": "array", "items": b64} if many else b64
    multipart.update(fields)
    as_json.update(fields)
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": {"type": "object", "properties": multipart, "required": required}},
        "application/json": {"schema": {"type": "object", "properties": as_json, "required": required}},
    }
    if raw:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


_THRESHOLD_DOC = {"type": "string", "description": "cosine threshold (0.3) or operating point (far=1e-3)"}
_HEADS_DOC = {"type": "string", "description": "analysis heads, comma-separated: age, gender, expression, pose, eyes, "
                                               "liveness, landmarks68 (estimates, never stored)"}
_LIVENESS_DOC = {"type": "boolean", "description": "refuse a suspected print/screen replay (422 spoof_suspected); "
                                                  "a passive single-frame check, not a certified PAD"}


def create_app(settings: ServerSettings | None = None, *, service: Service | None = None,
               keys: KeyStore | None = None) -> FastAPI:
    """Build the app; the service (models, gallery) is created and warmed up at startup unless given."""
    settings = settings or ServerSettings()
    if settings.auth and keys is None:
        keys = KeyStore(settings.keys_db)
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    ctx = AppContext(settings, service, keys if settings.auth else None, limiter, owns_service=service is None,
                     authenticator=Authenticator(keys, limiter) if settings.auth and keys is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx.service is None:
            ctx.service = await run_in_threadpool(Service, settings)
        if settings.warmup:
            await run_in_threadpool(ctx.service.warmup)
        log.info("faceatlas server ready (auth %s)", "on" if settings.auth else "OFF")
        try:
            yield
        finally:
            if ctx.owns_service and ctx.service is not None:
                await run_in_threadpool(ctx.service.close)
                ctx.service = None

    app = FastAPI(
        title="faceatlas",
        version=__version__,
        description="Face detection, verification, enrolment and identification over HTTP. "
                    "Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        docs_url=None,  # /docs is added by install_docs (local Swagger UI assets)
        redoc_url=None,
        lifespan=lifespan,
        responses=_ERROR_RESPONSES,
    )
    app.state.ctx = ctx
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_upload_bytes, timeout=settings.request_timeout,
                       pre_auth=ctx.authenticator.pre_auth if ctx.authenticator is not None else None)
    _install_error_handlers(app)
    _add_routes(app, ctx)
    install_compreface(app)  # CompreFace-compatible /api/v1/ (on by default; same keys, limits and pipeline)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn workers: settings from ``FACEATLAS_SERVER_SETTINGS``."""
    return create_app(ServerSettings.from_env())


# -- errors ----------------------------------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {...}}`` with a stable code."""

    def respond(request: Request, err: ApiError) -> JSONResponse:
        if err.status >= 500:
            log.warning("request %s failed: %s (%s)", _request_id(request), err.code, err.message)
        return JSONResponse(err.body(_request_id(request)), status_code=err.status, headers=err.headers)

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return respond(request, exc)

    async def on_library_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FaceAtlasError)
        return respond(request, ApiError.from_library(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                    for e in exc.errors()[:20]]  # never echo the offending input (it may be an image)
        where = ", ".join(".".join(p["loc"]) for p in problems[:5])
        return respond(request, ApiError("invalid_request", f"invalid request ({where})", details={"problems": problems}))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
        message = {404: "no such path", 405: "method not allowed on this path"}.get(exc.status_code, str(exc.detail))
        return respond(request, ApiError(code, message, exc.status_code, headers=dict(exc.headers or {})))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(FaceAtlasError, on_library_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


# -- routes ----------------------------------------------------------------------------------------------------------

Read = Annotated[Principal, Depends(require("read"))]
Enrol = Annotated[Principal, Depends(require("enrol"))]
Delete = Annotated[Principal, Depends(require("delete"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def _name_ok(value: str, what: str) -> str:
    """Validate a collection or person id taken from the path."""
    if not printable(value):
        raise ApiError("invalid_request", f"the {what} must be 1-256 printable characters")
    return value


def _face_id(face_id: int) -> int:
    """A face id from the path; ids outside SQLite's signed 64-bit range cannot exist (404, not an overflow)."""
    if not 0 < face_id < 2**63:
        raise ApiError("not_found", f"no face with id {str(face_id)[:24]}")
    return face_id


def _pending_erasures(svc: Service) -> int:
    """Deleted templates whose bytes are still waiting to be wiped from disk (0 when the gallery cannot tell)."""
    counter = getattr(svc.gallery, "pending_erasures", None)
    return int(counter()) if callable(counter) else 0


def _deleted(result: dict[str, Any]) -> JSONResponse:
    """A delete's answer: 200 when the erasure is complete, 202 while the bytes still wait to be wiped."""
    return _json(result, 202 if result.get("erasure") == "pending" else 200)


def _templates_allowed(principal: Principal, wanted: bool, collection: str | None = None) -> bool:
    """Whether template vectors are asked for; 403 when the key lacks the ``templates`` scope."""
    if wanted:
        check(principal, "templates", collection)
    return wanted


def _add_routes(app: FastAPI, ctx: AppContext) -> None:
    """Register every endpoint."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The web page."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/v1/health", tags=["service"])
    async def health() -> JSONResponse:
        """Liveness and readiness (no key needed)."""
        ready = ctx.service is not None
        body: dict[str, Any] = {"status": "ok" if ready else "starting", "version": __version__,
                                "auth": ctx.settings.auth}
        if ctx.service is not None:
            body["pending_erasures"] = await run_in_threadpool(_pending_erasures, ctx.service)
        return _json(body, 200 if ready else 503)

    @app.get("/v1/whoami", tags=["service"])
    async def whoami(principal: Read) -> JSONResponse:
        """The calling key: its id, scopes and collections."""
        colls = None if principal.collections is None else sorted(principal.collections)
        return _json({"key_id": principal.key_id, "scopes": sorted(principal.scopes), "collections": colls})

    @app.get("/v1/models", tags=["service"])
    async def models(principal: Read) -> JSONResponse:
        """The detector and embedder this server runs, and every model it knows."""
        return _json(await run_in_threadpool(ctx.svc().models))

    @app.post("/v1/detect", tags=["faces"], openapi_extra=_body_doc(
        {"image": False}, {"templates": {"type": "boolean", "description": "include template vectors (scope 'templates')"}},
        ["image"], raw=True))
    async def detect(request: Request, principal: Read) -> JSONResponse:
        """Every face in an image: box, score and five landmarks (templates only with the 'templates' scope)."""
        body = await parse_body(request, {"image": False}, max_images=1, raw_field="image")
        templates = _templates_allowed(principal, bool_field(body.fields, "templates"))
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), svc.detect, body.image("image"), templates))

    @app.post("/v1/analyze", tags=["faces"], openapi_extra=_body_doc(
        {"image": False}, {"heads": _HEADS_DOC}, ["image"], raw=True))
    async def analyze(request: Request, principal: Read) -> JSONResponse:
        """Every face (biggest first) with face-analysis estimates: age, gender, expression, pose, eyes, liveness."""
        from ..analysis import DEFAULT_HEADS

        body = await parse_body(request, {"image": False}, max_images=1, raw_field="image")
        heads = heads_field(body.fields, DEFAULT_HEADS)
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), svc.analyze_json, body.image("image"), heads))

    @app.post("/v1/verify", tags=["faces"], openapi_extra=_body_doc(
        {"image_a": False, "image_b": False}, {"threshold": _THRESHOLD_DOC, "heads": _HEADS_DOC,
                                               "liveness": _LIVENESS_DOC}, ["image_a", "image_b"]))
    async def verify(request: Request, principal: Read) -> JSONResponse:
        """Are the (largest) faces of two images the same person? Score, threshold used and model id."""
        body = await parse_body(request, {"image_a": False, "image_b": False}, max_images=2)
        threshold = threshold_field(body.fields)
        heads, liveness = heads_field(body.fields), bool_field(body.fields, "liveness")
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), svc.verify, body.image("image_a"), body.image("image_b"),
                                   threshold, heads, liveness))

    @app.post("/v1/explain", tags=["faces"], openapi_extra=_body_doc(
        {"image_a": False, "image_b": False}, {"threshold": _THRESHOLD_DOC,
                                               "grid": {"type": "integer", "minimum": 2, "maximum": 16}},
        ["image_a", "image_b"]))
    async def explain(request: Request, principal: Read) -> JSONResponse:
        """Why this match: score drop per greyed-out patch of each aligned face (occlusion maps) and the crops."""
        body = await parse_body(request, {"image_a": False, "image_b": False}, max_images=2)
        threshold = threshold_field(body.fields)
        grid = int_field(body.fields, "grid", 7, 2, 16)
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), svc.explain, body.image("image_a"), body.image("image_b"),
                                   threshold, grid))

    # -- collections --

    @app.get("/v1/collections", tags=["collections"])
    async def list_collections(principal: Read) -> JSONResponse:
        """Collections this key may read, with their model contract and sizes."""
        colls = await run_in_threadpool(ctx.svc().gallery.list_collections)
        return _json({"collections": [c.to_dict() for c in colls if principal.allows("read", c.name)]})

    @app.post("/v1/collections", tags=["collections"], status_code=201, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}}})
    async def create_collection(request: Request, principal: Read) -> JSONResponse:
        """Create a collection pinned to this server's embedding model (scope 'admin')."""
        body = await parse_body(request, {}, max_images=0)
        name = _name_ok(text_field(body.fields, "name", required=True) or "", "collection name")
        check(principal, "admin", name)
        svc = ctx.svc()

        def create() -> Any:
            try:
                svc.gallery.get_collection(name)
            except NotFoundError:
                return svc.recognizer.ensure_collection(name)
            raise ApiError("conflict", f"collection {name!r} already exists")

        coll = await run_in_threadpool(create)
        return _json(coll.to_dict(), 201)

    @app.get("/v1/collections/{collection}", tags=["collections"])
    async def get_collection(collection: str, principal: Read) -> JSONResponse:
        """One collection with its model contract and sizes."""
        coll = await run_in_threadpool(ctx.svc().gallery.get_collection, _name_ok(collection, "collection"))
        return _json(coll.to_dict())

    @app.delete("/v1/collections/{collection}", tags=["collections"])
    async def delete_collection(collection: str, principal: Admin) -> JSONResponse:
        """Delete a collection with every person and template in it (scope 'admin')."""
        svc = ctx.svc()
        n = await run_in_threadpool(svc.gallery.delete_collection, _name_ok(collection, "collection"),
                                    actor=principal.actor)
        pending = await run_in_threadpool(_pending_erasures, svc)
        return _deleted({"deleted": {"collection": collection, "faces": n},
                         "erasure": "pending" if pending else "complete"})

    # -- persons --

    @app.get("/v1/collections/{collection}/persons", tags=["persons"])
    async def list_persons(collection: str, principal: Read,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                           offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> JSONResponse:
        """People of a collection (paged by internal id)."""
        svc = ctx.svc()
        persons = await run_in_threadpool(svc.gallery.list_persons, _name_ok(collection, "collection"), limit, offset)
        return _json({"collection": collection, "limit": limit, "offset": offset,
                      "persons": [p.to_dict() for p in persons]})

    @app.post("/v1/collections/{collection}/persons", tags=["persons"], status_code=201, openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
            "person": {"type": "string"}, "name": {"type": "string"}, "metadata": {"type": "object"}},
            "required": ["person"]}}}}})
    async def create_person(collection: str, request: Request, principal: Enrol) -> JSONResponse:
        """Add a person without faces yet (faces come with POST …/faces or …/enroll)."""
        body = await parse_body(request, {}, max_images=0)
        person = _name_ok(text_field(body.fields, "person", required=True) or "", "person id")
        name = text_field(body.fields, "name")
        metadata = metadata_field(body.fields)
        svc = ctx.svc()

        def create() -> Any:
            svc.ensure_collection(collection)
            return svc.gallery.add_person(collection, person, name=name, metadata=metadata, actor=principal.actor)

        p = await run_in_threadpool(create)
        return _json(p.to_dict(), 201)

    @app.get("/v1/collections/{collection}/persons/{person}", tags=["persons"])
    async def get_person(collection: str, person: str, principal: Read,
                         templates: Annotated[bool, Query(description="include template vectors (scope 'templates')")]
                         = False) -> JSONResponse:
        """A person and its enrolled faces."""
        wanted = _templates_allowed(principal, templates, collection)
        return _json(await run_in_threadpool(ctx.svc().person_with_faces, collection, _name_ok(person, "person id"),
                                             wanted))

    @app.delete("/v1/collections/{collection}/persons/{person}", tags=["persons"])
    async def delete_person(collection: str, person: str, principal: Delete) -> JSONResponse:
        """Delete a person and every face (template) of it."""
        return _deleted(await run_in_threadpool(ctx.svc().delete_person, collection, _name_ok(person, "person id"),
                                                principal.actor))

    # -- faces --

    @app.get("/v1/collections/{collection}/persons/{person}/faces", tags=["faces of a person"])
    async def list_faces(collection: str, person: str, principal: Read,
                         templates: Annotated[bool, Query(description="include template vectors (scope 'templates')")]
                         = False) -> JSONResponse:
        """A person's enrolled faces."""
        wanted = _templates_allowed(principal, templates, collection)
        data = await run_in_threadpool(ctx.svc().person_with_faces, collection, _name_ok(person, "person id"), wanted)
        return _json({"collection": collection, "person": person, "faces": data["faces"]})

    @app.post("/v1/collections/{collection}/persons/{person}/faces", tags=["faces of a person"],
              openapi_extra=_body_doc({"images": True}, {}, ["images"]))
    async def add_faces(collection: str, person: str, request: Request, principal: Enrol) -> JSONResponse:
        """Add faces to an existing person from photos (one face per photo)."""
        body = await parse_body(request, {"images": True}, max_images=ctx.settings.max_images)
        if not body.images.get("images"):
            raise ApiError("invalid_request", "the field 'images' is required")
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), lambda: svc.enroll(
            collection, _name_ok(person, "person id"), body.images["images"], name=None, metadata=None,
            actor=principal.actor, must_exist=True)))

    @app.get("/v1/collections/{collection}/persons/{person}/faces/{face_id}", tags=["faces of a person"])
    async def get_face(collection: str, person: str, face_id: int, principal: Read,
                       templates: Annotated[bool, Query(description="include the template vector (scope 'templates')")]
                       = False) -> JSONResponse:
        """One enrolled face of a person."""
        wanted = _templates_allowed(principal, templates, collection)
        return _json(await run_in_threadpool(ctx.svc().face, collection, _name_ok(person, "person id"),
                                             _face_id(face_id), wanted))

    @app.get("/v1/collections/{collection}/persons/{person}/faces/{face_id}/crop", tags=["faces of a person"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def get_face_crop(collection: str, person: str, face_id: int, principal: Read) -> Response:
        """The aligned face crop (PNG) kept at enrolment with keep_crops=true; 404 when none was kept."""
        png = await run_in_threadpool(ctx.svc().face_crop, collection, _name_ok(person, "person id"), _face_id(face_id))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.delete("/v1/collections/{collection}/persons/{person}/faces/{face_id}", tags=["faces of a person"])
    async def delete_face(collection: str, person: str, face_id: int, principal: Delete) -> JSONResponse:
        """Delete one enrolled face of a person."""
        return _deleted(await run_in_threadpool(ctx.svc().delete_face, collection, _name_ok(person, "person id"),
                                                _face_id(face_id), principal.actor))

    # -- recognition --

    @app.post("/v1/collections/{collection}/enroll", tags=["recognition"], openapi_extra=_body_doc(
        {"images": True}, {"person": {"type": "string"}, "name": {"type": "string"},
                           "metadata": {"type": "object"}, "face_index": {"type": "integer", "minimum": 0},
                           "multi_face": {"type": "string", "enum": ["reject", "largest", "central", "score"]},
                           "heads": _HEADS_DOC, "liveness": _LIVENESS_DOC, "keep_crops": {
                               "type": "boolean", "default": False,
                               "description": "keep each face's aligned crop (PNG) for thumbnails and re-embedding"}},
        ["person", "images"]))
    async def enroll(collection: str, request: Request, principal: Enrol) -> JSONResponse:
        """Enrol a person (created when new) from photos; each unusable photo is rejected with its reason."""
        _name_ok(collection, "collection")
        body = await parse_body(request, {"images": True}, max_images=ctx.settings.max_images)
        person = _name_ok(text_field(body.fields, "person", required=True) or "", "person id")
        name = text_field(body.fields, "name")
        metadata = metadata_field(body.fields)
        uploads = body.images.get("images") or []
        if not uploads:
            raise ApiError("invalid_request", "the field 'images' needs at least one image")
        svc = ctx.svc()
        face_index = int_field(body.fields, "face_index", -1, -1, 10_000)
        multi_face = text_field(body.fields, "multi_face") or "reject"
        heads, liveness = heads_field(body.fields), bool_field(body.fields, "liveness")
        keep_crops = bool_field(body.fields, "keep_crops")
        if face_index >= 0 or multi_face != "reject":  # one face of a group photo, chosen by index or policy
            if len(uploads) != 1 or multi_face not in ("reject", "largest", "central", "score"):
                raise ApiError("invalid_request", "face_index / multi_face (largest|central|score) take exactly one image")
            return _json(await svc.run(_deadline(request), lambda: svc.enroll_choice(
                collection, person, uploads[0], face_index=face_index if face_index >= 0 else None,
                multi_face=multi_face, name=name, metadata=metadata, actor=principal.actor, heads=heads,
                liveness=liveness, keep_crops=keep_crops)))
        return _json(await svc.run(_deadline(request), lambda: svc.enroll(
            collection, person, uploads, name=name, metadata=metadata, actor=principal.actor, heads=heads,
            liveness=liveness, keep_crops=keep_crops)))

    @app.post("/v1/collections/{collection}/identify", tags=["recognition"], openapi_extra=_body_doc(
        {"image": False}, {"k": {"type": "integer", "minimum": 1, "maximum": 100}, "threshold": _THRESHOLD_DOC,
                           "heads": _HEADS_DOC, "liveness": _LIVENESS_DOC},
        ["image"], raw=True))
    async def identify(collection: str, request: Request, principal: Read) -> JSONResponse:
        """Who is in the photo? Every face with its top-k people, the decision, the threshold used and model id."""
        _name_ok(collection, "collection")
        body = await parse_body(request, {"image": False}, max_images=1, raw_field="image")
        k = int_field(body.fields, "k", 5, 1, 100)
        threshold = threshold_field(body.fields)
        heads, liveness = heads_field(body.fields), bool_field(body.fields, "liveness")
        svc = ctx.svc()
        return _json(await svc.run(_deadline(request), svc.identify, collection, body.image("image"), k, threshold,
                                   heads, liveness))
