"""The outermost ASGI layer: request ids, key check before the body, upload limit while reading, body timeout,
headers, access log (route templates, never ids from paths), last-resort errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from .errors import ApiError, error_bytes

log = logging.getLogger("faceatlas.server")
access_log = logging.getLogger("faceatlas.server.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``x-request-id`` when it is short and plain, otherwise a new random one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _SANE_REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class _BodyError(Exception):
    """The body could not be accepted (too large, malformed length, too slow)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Disconnected(Exception):
    """The client went away while sending the body."""


PreAuth = Callable[[Scope], Awaitable[None]]


class GuardMiddleware:
    """Checks the key, reads the body under the upload limit and deadline, then runs the app (ids, headers, log)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout: float, pre_auth: PreAuth | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.pre_auth = pre_auth
        self._log_key = secrets.token_bytes(16)  # per process: path hashes link requests, never across restarts

    def _path_hash(self, path: str) -> str:
        """A short keyed hash of a raw path (the access log's way to tell paths apart without naming anyone)."""
        return hmac.new(self._log_key, path.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (other scope types pass straight through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = request_id_from(scope.get("headers", []))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["deadline"] = time.monotonic() + self.timeout
        path = str(scope.get("path", ""))
        sent: dict[str, Any] = {"status": 0, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = int(message["status"])
                sent["started"] = True
                message["headers"] = _with_headers(list(message.get("headers", [])), request_id, path)
            await send(message)

        body_len = 0
        try:
            try:
                _check_framing(scope)
                if self.pre_auth is not None:
                    await self.pre_auth(scope)
                body = await self._read_body(scope, receive, state["deadline"])
            except _BodyError as exc:
                await _send_error(send_with_headers, exc.status, exc.code, exc.message, request_id)
                return
            except ApiError as err:  # refused from the headers alone: the body is never read
                await _send_error(send_with_headers, err.status, err.code, err.message, request_id, err.headers)
                return
            except _Disconnected:
                sent["status"] = 499
                return
            body_len = len(body)
            await self.app(scope, _replay(body, receive), send_with_headers)
        except Exception:  # noqa: BLE001 - last line of defence: JSON 500, traceback only in the server log
            log.exception("unhandled error in request %s", request_id)
            if not sent["started"]:
                await _send_error(send_with_headers, 500, "internal", "unexpected server error; it has been logged",
                                  request_id)
        finally:
            state_now = scope.get("state", {})
            access_log.info(json.dumps({
                "event": "access",
                "ts": round(time.time(), 3),
                "request_id": request_id,
                "method": scope.get("method"),
                "path": _route_template(scope),
                "path_hash": self._path_hash(path),
                "status": sent["status"],
                "duration_ms": round((time.perf_counter() - started_at) * 1000.0, 2),
                "key_id": state_now.get("key_id"),
                "client": (scope.get("client") or (None,))[0],
                "bytes_in": body_len,
            }, separators=(",", ":")))

    async def _read_body(self, scope: Scope, receive: Receive, deadline: float) -> bytes:
        """The whole request body, refusing it as soon as it is too large or too slow."""
        declared = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit() or len(text) > 18:
                    raise _BodyError(400, "invalid_request", "the Content-Length header is not a number")
                declared = int(text)
        if declared is not None and declared > self.max_body_bytes:
            raise _BodyError(413, "request_too_large",
                             f"the body is {declared} bytes; the limit is {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        total = 0
        remaining = max(0.0, deadline - time.monotonic())
        with anyio.move_on_after(remaining) as scope_timer:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected()
                chunk = message.get("body", b"")
                if chunk:
                    total += len(chunk)
                    if total > self.max_body_bytes:
                        raise _BodyError(413, "request_too_large",
                                         f"the body is over the {self.max_body_bytes}-byte limit")
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if scope_timer.cancelled_caught:
            raise _BodyError(408, "request_timeout", "the request body did not arrive within the request timeout")
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the buffered body once, then waits for the client's disconnect."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(headers: list[tuple[bytes, bytes]], request_id: str, path: str) -> list[tuple[bytes, bytes]]:
    """Response headers plus the request id and the security headers every response carries."""
    present = {name.lower() for name, _ in headers}
    extra: list[tuple[bytes, bytes]] = [
        (b"x-request-id", request_id.encode("ascii")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]
    if path.startswith("/v1/"):
        extra.append((b"cache-control", b"no-store"))
    elif not path.startswith(("/docs", "/redoc")):
        extra.append((b"content-security-policy", _PAGE_CSP.encode("ascii")))
    return [h for h in headers if h[0].lower() != b"x-request-id"] + [h for h in extra if h[0] not in present
                                                                        or h[0] == b"x-request-id"]


def _check_framing(scope: Scope) -> None:
    """Refuse a request carrying both Content-Length and Transfer-Encoding (RFC 9112 §6.1: smuggling risk)."""
    names = {name.lower() for name, _ in scope.get("headers", [])}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise _BodyError(400, "invalid_request", "a request must not carry both Content-Length and Transfer-Encoding")


def _route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/collections/{collection}/persons/{person}``), never the ids in the path."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = str(scope.get("path", ""))
    return path if path in ("/", "/v1/health", "/docs", "/openapi.json") else "<unmatched>"


async def _send_error(send: Send, status: int, code: str, message: str, request_id: str,
                      headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON error response from below the framework (and close the connection)."""
    body = error_bytes(code, message, request_id)
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"), *extra],
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})
