"""Regression tests for the REST hardening of issue #12 (M1, M3, M4, L1-L5, L8, model_mismatch, CL+TE, access log)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import lfw  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from faceatlas.errors import FaceAtlasError, InvalidInputError  # noqa: E402
from faceatlas.server.app import create_app  # noqa: E402
from faceatlas.server.errors import ApiError, status_for  # noqa: E402
from faceatlas.server.keys import KeyStore  # noqa: E402
from faceatlas.server.service import Service  # noqa: E402
from faceatlas.server.settings import ServerSettings  # noqa: E402

COLL = "hard"


def _settings(**over: Any) -> ServerSettings:
    """Test settings: no rate limit and no warm-up unless asked."""
    base: dict[str, Any] = {"rate_limit": 0.0, "warmup": False}
    base.update(over)
    return ServerSettings(**base)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key file of its own."""
    return KeyStore(tmp_path_factory.mktemp("hkeys") / "keys.db")


@pytest.fixture(scope="module")
def tokens(keys: KeyStore) -> dict[str, str]:
    """An admin key and two readers."""
    return {name: keys.create(scope, ["*"], name=name)[1]
            for name, scope in (("admin", "admin"), ("reader", "read"), ("neighbour", "read"))}


@pytest.fixture(scope="module")
def service(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Service]:
    """One Service (shared models) on a fresh gallery."""
    from faceatlas.gallery import Gallery

    svc = Service(_settings(), atlas=atlas, gallery=Gallery.open(tmp_path_factory.mktemp("hgal") / "gallery.db"))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service, keys: KeyStore) -> Iterator[TestClient]:
    """A client on an app with the rate limit off."""
    with TestClient(create_app(_settings(), service=service, keys=keys)) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error response's status, JSON shape and code; return the error object."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"]
    return dict(err)


def _asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[
        list[dict[str, Any]], int]:
    """Call the ASGI app directly; return the sent messages and how often it asked for the body."""
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1", "root_path": "", "state": {}}
    asyncio.run(app(scope, receive, send))
    return sent, calls


# -- M1: peppered HMAC keys, scrypt migrated on first use ------------------------------------------------------------


def test_m1_keys_are_peppered_hmacs_and_wrong_secrets_are_cheap(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    record, token = store.create("read", None, name="k")
    pepper = tmp_path / "keys.db.pepper"
    assert pepper.stat().st_size == 32 and oct(pepper.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        kdf, salt = conn.execute("SELECT kdf, salt FROM api_keys WHERE id = ?", (record.id,)).fetchone()
    assert kdf == "hmac-sha256:pepper" and salt == b""
    assert token.split("_", 2)[2].encode() not in (tmp_path / "keys.db").read_bytes()
    assert store.authenticate(token) is not None
    assert KeyStore(tmp_path / "keys.db").authenticate(token) is not None  # a second process reads the same pepper
    wrong = token[:-8] + "AAAAAAAA"
    started = time.perf_counter()
    for _ in range(200):
        assert store.verify(wrong) == (None, record.id)
    per_try = (time.perf_counter() - started) / 200
    assert per_try < 0.01, f"a wrong secret costs {per_try * 1000:.1f} ms (scrypt would be ~100+ ms)"


def test_m1_legacy_scrypt_keys_migrate_on_first_use(tmp_path: Path) -> None:
    from faceatlas.server import keys as keys_mod

    store = KeyStore(tmp_path / "keys.db")
    record, token = store.create("read", None, name="old")
    secret = token.split("_", 2)[2]
    salt = b"0123456789abcdef"
    with sqlite3.connect(tmp_path / "keys.db") as conn:  # as an older version stored it
        conn.execute("UPDATE api_keys SET kdf = ?, salt = ?, hash = ? WHERE id = ?",
                     ("scrypt:n=16384,r=8,p=1", salt, keys_mod._hash_secret(secret, salt), record.id))
    assert store.verify(token[:-3] + "zzz", slow_ok=lambda _id: False) == (None, record.id)  # refused without scrypt
    assert store.authenticate(token) is not None
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        kdf, salt_now = conn.execute("SELECT kdf, salt FROM api_keys WHERE id = ?", (record.id,)).fetchone()
    assert kdf == "hmac-sha256:pepper" and salt_now == b""
    assert store.authenticate(token) is not None and store.authenticate(token[:-3] + "zzz") is None


# -- M4: no body is read before the key is checked --------------------------------------------------------------------


def test_m4_unauthenticated_body_is_never_read(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    app = create_app(_settings(), service=service, keys=keys)
    big = [(b"content-type", b"image/jpeg"), (b"content-length", b"14680064")]
    for extra in ([], [(b"authorization", b"Bearer fak_0123456789ab_" + b"x" * 43)],
                  [(b"authorization", tokens["reader"][:-4].encode() + b"zzzz")]):
        sent, calls = _asgi(app, "POST", "/v1/detect", big + extra, b"\xff" * 1000)
        assert sent[0]["status"] == 401 and calls == 0
        assert (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["error"]["code"] == "unauthorized"
    sent, calls = _asgi(app, "POST", "/v1/detect",
                        [(b"content-type", b"image/jpeg"), (b"authorization", f"Bearer {tokens['reader']}".encode())],
                        lfw("Tony_Blair", 2).read_bytes())
    assert sent[0]["status"] == 200 and calls == 1


# -- L1, L2, L5, model_mismatch -------------------------------------------------------------------------------------


def test_l1_deeply_nested_metadata_is_400(client: TestClient, tokens: dict[str, str]) -> None:
    h = _auth(tokens["admin"])
    image = lfw("Tony_Blair", 2).read_bytes()
    deep = '{"a":' + "[" * 990 + "]" * 990 + "}"
    r = client.post(f"/v1/collections/{COLL}/enroll", headers=h, data={"person": "deep", "metadata": deep},
                    files={"images": ("a.jpg", image, "image/jpeg")})
    _error(r, 400, "invalid_json")
    r = client.post(f"/v1/collections/{COLL}/persons", headers=h,
                    json={"person": "deep2", "metadata": {"a": json.loads("[" * 100 + "]" * 100)}})
    _error(r, 400, "invalid_json")
    r = client.post(f"/v1/collections/{COLL}/persons", headers=h, json={"person": "shallow", "metadata": {"a": [[1]]}})
    assert r.status_code == 201, r.text


def test_l2_face_ids_outside_int64_are_404(client: TestClient, tokens: dict[str, str]) -> None:
    h = _auth(tokens["admin"])
    assert client.post(f"/v1/collections/{COLL}/persons", headers=h, json={"person": "ids"}).status_code in (201, 409)
    base = f"/v1/collections/{COLL}/persons/ids/faces/"
    for fid in ("1180591620717411303424", str(2**63), "-" + str(2**63 + 5), "0"):
        _error(client.get(base + fid, headers=h), 404, "not_found")
        _error(client.delete(base + fid, headers=h), 404, "not_found")
    _error(client.get(base + str(2**63 - 1), headers=h), 404, "not_found")  # in range, merely absent


@pytest.mark.parametrize("bad", ["-1.5", "2", "1.0001", "far=0", "far=1.5", "far=-0.1", "score=-3"])
def test_l5_out_of_range_thresholds_are_refused(client: TestClient, tokens: dict[str, str], bad: str) -> None:
    from faceatlas.calibration import parse_threshold

    with pytest.raises(InvalidInputError) as info:
        parse_threshold(bad)
    assert info.value.code == "invalid_threshold"
    image = lfw("Tony_Blair", 2).read_bytes()
    r = client.post("/v1/verify", headers=_auth(tokens["reader"]), data={"threshold": bad},
                    files={"image_a": ("a.jpg", image, "image/jpeg"), "image_b": ("b.jpg", image, "image/jpeg")})
    _error(r, 400, "invalid_threshold")
    number = json.loads(bad) if not bad.startswith(("far", "score")) else None
    if number is not None:
        r = client.post("/v1/verify", headers=_auth(tokens["reader"]), json={
            "threshold": number, "image_a": base64.b64encode(image).decode(), "image_b": base64.b64encode(image).decode()})
        _error(r, 400, "invalid_threshold")


def test_l5_edge_thresholds_are_accepted() -> None:
    from faceatlas.calibration import parse_threshold

    assert parse_threshold(-1).value == -1.0 and parse_threshold("1").value == 1.0
    assert parse_threshold("far=1e-6").value == 1e-6


def test_model_mismatch_is_409_with_the_json_body(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    assert status_for("model_mismatch") == 409
    assert ApiError.from_library(FaceAtlasError("model_mismatch", "other model")).status == 409

    class Mismatched(Service):
        """A service whose gallery was made by another model."""

        def models(self) -> dict[str, Any]:
            """Fail like a gallery pinned to another embedder."""
            raise FaceAtlasError("model_mismatch", "this collection was made with another model")

    svc = Mismatched(_settings(), atlas=service.atlas, gallery=service.gallery)
    with TestClient(create_app(_settings(), service=svc, keys=keys)) as c:
        _error(c.get("/v1/models", headers=_auth(tokens["reader"])), 409, "model_mismatch")


# -- M3: honest deletes ----------------------------------------------------------------------------------------------


def test_m3_pending_erasure_is_202_and_health_counts_it(service: Service, keys: KeyStore,
                                                       tokens: dict[str, str]) -> None:
    class PendingGallery:
        """The real gallery, reporting two erasures still pending."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def pending_erasures(self) -> int:
            """Two deletes wait for their bytes to be wiped."""
            return 2

    class Pending(Service):
        """Deletes whose erasure is still pending."""

        @property
        def gallery(self) -> Any:
            """The wrapped gallery."""
            return PendingGallery(self.recognizer.gallery)

        def delete_person(self, collection: str, person: str, actor: str) -> dict[str, Any]:
            """A delete the gallery could not finish wiping yet."""
            return {"deleted": {"collection": collection, "person": person, "faces": 1}, "erasure": "pending"}

    svc = Pending(_settings(), atlas=service.atlas, gallery=service.gallery)
    with TestClient(create_app(_settings(), service=svc, keys=keys)) as c:
        r = c.delete(f"/v1/collections/{COLL}/persons/anyone", headers=_auth(tokens["admin"]))
        assert r.status_code == 202 and r.json()["erasure"] == "pending"
        assert c.get("/v1/health").json()["pending_erasures"] == 2
    with TestClient(create_app(_settings(), service=service, keys=keys)) as c:
        h = _auth(tokens["admin"])
        assert c.post(f"/v1/collections/{COLL}/persons", headers=h, json={"person": "gone"}).status_code == 201
        r = c.delete(f"/v1/collections/{COLL}/persons/gone", headers=h)
        assert r.status_code == (202 if r.json().get("erasure") == "pending" else 200)
        assert isinstance(c.get("/v1/health").json()["pending_erasures"], int)


# -- L4: lockouts follow the failing credential --------------------------------------------------------------------


def test_l4_failures_lock_the_credential_not_the_address(service: Service, keys: KeyStore,
                                                         tokens: dict[str, str]) -> None:
    svc = Service(_settings(rate_limit=0.1, rate_burst=3), atlas=service.atlas, gallery=service.gallery)
    with TestClient(create_app(_settings(rate_limit=0.1, rate_burst=3), service=svc, keys=keys)) as c:
        wrong = _auth(tokens["reader"][:-2] + "zz")
        statuses = [c.get("/v1/whoami", headers=wrong).status_code for _ in range(6)]
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429
        # the valid key of the attacked id, and a NAT neighbour's valid key, still work from the same address
        assert c.get("/v1/whoami", headers=_auth(tokens["reader"])).status_code == 200
        assert c.get("/v1/whoami", headers=_auth(tokens["neighbour"])).status_code == 200
        # another key id's failures have their own bucket; unknown ids count against the address
        assert c.get("/v1/whoami", headers=_auth(tokens["neighbour"][:-2] + "zz")).status_code == 401
        unknown = [c.get("/v1/whoami", headers=_auth(f"fak_{i:012x}_" + "q" * 43)).status_code for i in range(5)]
        assert unknown[:3] == [401, 401, 401] and unknown[-1] == 429
        assert c.get("/v1/whoami", headers=_auth(tokens["neighbour"])).status_code == 200


# -- access log, CL+TE ---------------------------------------------------------------------------------------------


def test_access_log_names_routes_not_person_ids(client: TestClient, tokens: dict[str, str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="faceatlas.server.access"):
        client.get(f"/v1/collections/{COLL}/persons/jane-secret-id", headers=_auth(tokens["reader"]))
        client.get("/v1/nowhere/jane-secret-id", headers=_auth(tokens["reader"]))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "jane-secret-id" not in text
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "faceatlas.server.access"]
    assert entries[0]["path"] == "/v1/collections/{collection}/persons/{person}" and len(entries[0]["path_hash"]) == 12
    assert entries[1]["path"] == "<unmatched>"


def test_content_length_with_transfer_encoding_is_400(service: Service, keys: KeyStore,
                                                      tokens: dict[str, str]) -> None:
    app = create_app(_settings(), service=service, keys=keys)
    sent, calls = _asgi(app, "POST", "/v1/detect", [
        (b"authorization", f"Bearer {tokens['reader']}".encode()), (b"content-type", b"image/jpeg"),
        (b"content-length", b"5"), (b"transfer-encoding", b"chunked")], b"hello")
    assert sent[0]["status"] == 400 and calls == 0
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_request"


# -- L8: slow headers, connections per client ---------------------------------------------------------------------


@pytest.fixture()
def guarded_server() -> Iterator[int]:
    """A uvicorn server with the guarded protocol (0.6 s head deadline, 3 connections per client) on a free port."""
    import uvicorn

    from faceatlas.server.launcher import free_port
    from faceatlas.server.protocol import GuardedH11Protocol

    class Fast(GuardedH11Protocol):
        header_timeout = 0.6
        max_client_connections = 3
        trusted_proxies = ""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=Fast, log_level="error",
                                           lifespan="off", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(5)


def _closed_after(sock: socket.socket, trickle: bytes, every: float, limit: float) -> float:
    """Send ``trickle`` one byte per ``every`` seconds until the server closes; seconds until it did."""
    started = time.monotonic()
    sock.settimeout(every)
    i = 0
    while time.monotonic() - started < limit:
        try:
            if i < len(trickle):
                sock.send(trickle[i:i + 1])
                i += 1
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return float("inf")


def test_l8_slow_headers_and_idle_connections_are_closed(guarded_server: int) -> None:
    slow = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", guarded_server)) as s:
        took = _closed_after(s, slow, 0.05, 5.0)
    assert 0.5 < took < 2.0, took
    with socket.create_connection(("127.0.0.1", guarded_server)) as s:  # silent connection
        took = _closed_after(s, b"", 0.05, 5.0)
    assert took < 2.0, took
    with socket.create_connection(("127.0.0.1", guarded_server)) as s:  # a normal request is unaffected
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200")


def test_l8_connections_per_client_are_capped(guarded_server: int) -> None:
    held = [socket.create_connection(("127.0.0.1", guarded_server)) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", guarded_server)) as extra:
            extra.settimeout(2.0)
            assert extra.recv(1024) == b""  # closed at once
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", guarded_server)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200")


def test_path_hash_is_keyed() -> None:
    from faceatlas.server.middleware import GuardMiddleware

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        return None

    a = GuardMiddleware(noop, 10, 1.0)._path_hash("/v1/collections/c/persons/jane")
    assert a != hashlib.sha256(b"/v1/collections/c/persons/jane").hexdigest()[:12] and len(a) == 12


def test_l5_cli_refuses_out_of_range_thresholds(lfw_dir: Path) -> None:
    import subprocess
    import sys

    a, b = lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4)
    for bad in ("-1.5", "far=0"):
        proc = subprocess.run([sys.executable, "-m", "faceatlas", "verify", str(a), str(b), "--threshold", bad, "--json"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert json.loads(proc.stdout.splitlines()[0])["error"]["code"] == "invalid_threshold"
