"""REST server over HTTP (in-process TestClient): every endpoint, every auth path, every limit, the error shape."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import lfw  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from faceatlas.server.app import create_app  # noqa: E402
from faceatlas.server.keys import KeyStore  # noqa: E402
from faceatlas.server.service import Service  # noqa: E402
from faceatlas.server.settings import ServerSettings  # noqa: E402

COLL = "people"


# -- fixtures --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key file of its own."""
    return KeyStore(tmp_path_factory.mktemp("keys") / "keys.db")


@pytest.fixture(scope="module")
def tokens(keys: KeyStore) -> dict[str, str]:
    """Keys with various scopes and collections."""
    specs = {
        "admin": ("admin", ["*"]),
        "reader": ("read", [COLL]),
        "enroller": ("read,enrol", [COLL]),
        "deleter": ("read,delete", [COLL]),
        "templates": ("read,templates", [COLL]),
        "other": ("read,enrol,delete,admin", ["other"]),
        "enrol_only": ("enrol", [COLL]),
    }
    return {name: keys.create(scope, colls, name=name)[1] for name, (scope, colls) in specs.items()}


def _auth(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def _settings(**over: Any) -> ServerSettings:
    """Test settings: no rate limit and no warm-up unless asked."""
    base: dict[str, Any] = {"rate_limit": 0.0, "warmup": False}
    base.update(over)
    return ServerSettings(**base)


@pytest.fixture(scope="module")
def service(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Service]:
    """One Service (shared models) on a fresh gallery."""
    from faceatlas.gallery import Gallery

    gallery = Gallery.open(tmp_path_factory.mktemp("gallery") / "gallery.db")
    svc = Service(_settings(), atlas=atlas, gallery=gallery)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service, keys: KeyStore) -> Iterator[TestClient]:
    """A client on an app with default limits (rate limit off)."""
    with TestClient(create_app(_settings(), service=service, keys=keys)) as c:
        yield c


def _client_with(service: Service, keys: KeyStore, **over: Any) -> TestClient:
    """A client on an app with other settings, sharing the service's models and gallery."""
    svc = Service(_settings(**over), atlas=service.atlas, gallery=service.gallery)
    return TestClient(create_app(_settings(**over), service=svc, keys=keys))


def _jpg(name: str, n: int) -> bytes:
    """Bytes of an LFW image."""
    return lfw(name, n).read_bytes()


def _png(width: int, height: int, color: int = 128) -> bytes:
    """A plain grey PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (color, color, color)).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size but holds almost no data (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error response's status, JSON shape, code and request id; return the error object."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] == resp.headers["x-request-id"]
    return dict(err)


def _no_vectors(data: Any) -> None:
    """Fail if any template vector appears anywhere in a response body."""
    assert '"vector"' not in json.dumps(data)


# -- service endpoints --------------------------------------------------------------------------------------------


def test_health_needs_no_key_and_echoes_request_ids(client: TestClient) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["auth"] is True
    assert len(r.headers["x-request-id"]) == 32
    r = client.get("/v1/health", headers={"x-request-id": "client-id.42"})
    assert r.headers["x-request-id"] == "client-id.42"
    r = client.get("/v1/health", headers={"x-request-id": "bad id with spaces and <html>"})
    assert r.headers["x-request-id"] != "bad id with spaces and <html>" and len(r.headers["x-request-id"]) == 32
    assert r.headers["x-content-type-options"] == "nosniff"


def test_models_and_whoami(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/v1/models", headers=_auth(tokens["reader"]))
    assert r.status_code == 200
    body = r.json()
    assert body["detector"] == "yunet" and body["embedder"] == "sface" and body["dim"] == 128
    assert any(m["name"] == "sface" for m in body["models"])
    r = client.get("/v1/whoami", headers={"X-API-Key": tokens["enroller"]})
    assert r.status_code == 200
    assert r.json()["scopes"] == ["enrol", "read"] and r.json()["collections"] == [COLL]


def test_openapi_docs_and_page(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/detect", "/v1/verify", "/v1/collections", "/v1/collections/{collection}",
                 "/v1/collections/{collection}/persons", "/v1/collections/{collection}/persons/{person}",
                 "/v1/collections/{collection}/persons/{person}/faces/{face_id}",
                 "/v1/collections/{collection}/enroll", "/v1/collections/{collection}/identify", "/v1/models",
                 "/v1/health"):
        assert path in spec["paths"], path
    detect_body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(detect_body)
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "faceatlas" in page.text and "app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    _error(client.get("/static/nope.js"), 404, "not_found")


# -- detect / verify ----------------------------------------------------------------------------------------------


def test_detect_multipart_json_dataurl_and_raw(client: TestClient, tokens: dict[str, str]) -> None:
    data = _jpg("George_W_Bush", 1)
    h = _auth(tokens["reader"])
    r1 = client.post("/v1/detect", headers=h, files={"image": ("bush.jpg", data, "image/jpeg")})
    r2 = client.post("/v1/detect", headers=h, json={"image": base64.b64encode(data).decode()})
    r3 = client.post("/v1/detect", headers=h, json={"image": "data:image/jpeg;base64," + base64.b64encode(data).decode()})
    r4 = client.post("/v1/detect", headers={**h, "Content-Type": "image/jpeg"}, content=data)
    for r in (r1, r2, r3, r4):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["image"] == {"width": 250, "height": 250} and body["detector"] == "yunet"
        assert len(body["faces"]) == 1
        face = body["faces"][0]
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.8
        assert "template" not in face
    assert r1.json() == r2.json() == r3.json() == r4.json()


def test_templates_need_the_templates_scope(client: TestClient, tokens: dict[str, str]) -> None:
    data = _jpg("George_W_Bush", 2)
    _error(client.post("/v1/detect?templates=true", headers=_auth(tokens["reader"]), files={"image": data}),
           403, "forbidden")
    _error(client.post("/v1/detect", headers=_auth(tokens["admin"]), json={"image": base64.b64encode(data).decode(),
                                                                         "templates": True}), 403, "forbidden")
    r = client.post("/v1/detect?templates=true", headers=_auth(tokens["templates"]), files={"image": data})
    assert r.status_code == 200
    vec = np.array(r.json()["faces"][0]["template"]["vector"])
    assert vec.shape == (128,) and abs(np.linalg.norm(vec) - 1.0) < 1e-3
    assert r.json()["model_id"] == "sface"


def test_verify(client: TestClient, tokens: dict[str, str]) -> None:
    h = _auth(tokens["reader"])
    same = client.post("/v1/verify", headers=h, files={"image_a": _jpg("Colin_Powell", 1), "image_b": _jpg("Colin_Powell", 2)})
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["same"] is True and body["score"] >= body["threshold"]
    assert body["model_id"] == "sface" and body["threshold_source"] == "model default"
    _no_vectors(body)
    diff = client.post("/v1/verify", headers=h, json={
        "image_a": base64.b64encode(_jpg("Colin_Powell", 1)).decode(),
        "image_b": base64.b64encode(_jpg("George_W_Bush", 1)).decode(), "threshold": 0.3})
    assert diff.status_code == 200 and diff.json()["same"] is False
    assert diff.json()["threshold"] == 0.3 and diff.json()["threshold_source"] == "user"
    strict = client.post("/v1/verify", headers=h, files={"image_a": _jpg("Colin_Powell", 1), "image_b": _jpg("Colin_Powell", 2)},
                         data={"threshold": "0.99"})
    assert strict.json()["same"] is False and strict.json()["threshold"] == 0.99
    _error(client.post("/v1/verify", headers=h, files={"image_a": _jpg("Colin_Powell", 1), "image_b": _jpg("Colin_Powell", 2)},
                       data={"threshold": "banana"}), 400, "invalid_threshold")
    _error(client.post("/v1/verify", headers=h, files={"image_a": _jpg("Colin_Powell", 1)}), 422, "invalid_request")
    _error(client.post("/v1/verify", headers=h, files={"image_a": _png(200, 200), "image_b": _jpg("Colin_Powell", 2)}),
           422, "no_face")


# -- collections, persons, faces, enrol, identify -------------------------------------------------------------------


def test_collection_crud(client: TestClient, tokens: dict[str, str]) -> None:
    admin = _auth(tokens["admin"])
    r = client.post("/v1/collections", headers=admin, json={"name": "scratch"})
    assert r.status_code == 201 and r.json()["name"] == "scratch" and r.json()["contract"]["model_id"] == "sface"
    _error(client.post("/v1/collections", headers=admin, json={"name": "scratch"}), 409, "conflict")
    _error(client.post("/v1/collections", headers=admin, json={}), 422, "invalid_request")
    _error(client.post("/v1/collections", headers=_auth(tokens["enroller"]), json={"name": COLL}), 403, "forbidden")
    names = [c["name"] for c in client.get("/v1/collections", headers=admin).json()["collections"]]
    assert "scratch" in names
    visible = client.get("/v1/collections", headers=_auth(tokens["reader"])).json()["collections"]
    assert "scratch" not in [c["name"] for c in visible]
    got = client.get("/v1/collections/scratch", headers=admin).json()
    assert got["persons"] == 0 and got["samples"] == 0
    _error(client.delete("/v1/collections/scratch", headers=_auth(tokens["other"])), 403, "forbidden")
    r = client.delete("/v1/collections/scratch", headers=admin)
    assert r.status_code == 200 and r.json()["deleted"]["collection"] == "scratch"
    _error(client.get("/v1/collections/scratch", headers=admin), 404, "not_found")


def test_enrol_identify_delete_cycle(client: TestClient, tokens: dict[str, str]) -> None:
    enr, rd, dl = _auth(tokens["enroller"]), _auth(tokens["reader"]), _auth(tokens["deleter"])
    files = [("images", (f"tb{i}.jpg", _jpg("Tony_Blair", i), "image/jpeg")) for i in (2, 3, 4)]
    r = client.post(f"/v1/collections/{COLL}/enroll", headers=enr, files=files, data={"person": "tony", "name": "Tony Blair"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["person"] == "tony" and len(body["sample_ids"]) == 3 and body["accepted"] == ["tb2.jpg", "tb3.jpg", "tb4.jpg"]
    assert body["rejected"] == [] and body["model_id"] == "sface"
    # JSON body with base64 images; one duplicate and one blank image are rejected with reasons
    r = client.post(f"/v1/collections/{COLL}/enroll", headers=enr, json={
        "person": "colin", "name": "Colin Powell", "metadata": {"team": "state"},
        "images": [base64.b64encode(_jpg("Colin_Powell", i)).decode() for i in (1, 2, 2)]
        + [base64.b64encode(_png(120, 120)).decode()]})
    assert r.status_code == 200, r.text
    rejected = {x["code"] for x in r.json()["rejected"]}
    assert len(r.json()["sample_ids"]) == 2 and rejected == {"duplicate_image", "no_face"}
    _no_vectors(r.json())
    # nothing usable at all
    err = _error(client.post(f"/v1/collections/{COLL}/enroll", headers=enr,
                             files=[("images", ("blank.png", _png(100, 100), "image/png"))], data={"person": "nobody"}),
                 422, "enrolment_rejected")
    assert err["details"]["rejected"][0]["code"] == "no_face"
    # identify: a new photo of Tony
    r = client.post(f"/v1/collections/{COLL}/identify", headers=rd, files={"image": _jpg("Tony_Blair", 6)})
    assert r.status_code == 200, r.text
    ident = r.json()
    assert ident["model_id"] == "sface" and ident["collection"] == COLL and ident["threshold"] > 0
    assert len(ident["faces"]) == 1 and ident["faces"][0]["person"] == "tony" and ident["faces"][0]["name"] == "Tony Blair"
    assert ident["faces"][0]["score"] >= ident["faces"][0]["threshold"]
    assert [c["person"] for c in ident["faces"][0]["candidates"]][:2] == ["tony", "colin"]
    _no_vectors(ident)
    # k and threshold are honoured
    r = client.post(f"/v1/collections/{COLL}/identify?k=1&threshold=0.99", headers=rd, files={"image": _jpg("Tony_Blair", 6)})
    assert r.json()["faces"][0]["person"] is None and len(r.json()["faces"][0]["candidates"]) == 1
    _error(client.post(f"/v1/collections/{COLL}/identify?k=0", headers=rd, files={"image": _jpg("Tony_Blair", 6)}),
           422, "invalid_request")
    # persons: list, get (with faces), faces
    persons = client.get(f"/v1/collections/{COLL}/persons", headers=rd).json()["persons"]
    assert {p["external_id"]: p["samples"] for p in persons} == {"tony": 3, "colin": 2}
    tony = client.get(f"/v1/collections/{COLL}/persons/tony", headers=rd).json()
    assert tony["name"] == "Tony Blair" and len(tony["faces"]) == 3
    _no_vectors(tony)
    colin = client.get(f"/v1/collections/{COLL}/persons/colin", headers=rd).json()
    assert colin["metadata"] == {"team": "state"}
    # delete the person: Tony is unknown afterwards
    r = client.delete(f"/v1/collections/{COLL}/persons/tony", headers=dl)
    assert r.status_code == 200 and r.json()["deleted"]["faces"] == 3
    _error(client.get(f"/v1/collections/{COLL}/persons/tony", headers=rd), 404, "not_found")
    r = client.post(f"/v1/collections/{COLL}/identify", headers=rd, files={"image": _jpg("Tony_Blair", 6)})
    assert r.json()["faces"][0]["person"] is None
    _error(client.delete(f"/v1/collections/{COLL}/persons/tony", headers=dl), 404, "not_found")


def test_person_and_face_endpoints(client: TestClient, tokens: dict[str, str]) -> None:
    enr, rd, dl = _auth(tokens["enroller"]), _auth(tokens["reader"]), _auth(tokens["deleter"])
    r = client.post(f"/v1/collections/{COLL}/persons", headers=enr, json={"person": "gerhard", "name": "G. Schroeder"})
    assert r.status_code == 201 and r.json()["external_id"] == "gerhard" and r.json()["samples"] == 0
    _error(client.post(f"/v1/collections/{COLL}/persons", headers=enr, json={"person": "gerhard"}), 409, "conflict")
    r = client.post(f"/v1/collections/{COLL}/persons/gerhard/faces", headers=enr,
                    files=[("images", (f"g{i}.jpg", _jpg("Gerhard_Schroeder", i), "image/jpeg")) for i in (1, 2)])
    assert r.status_code == 200 and len(r.json()["sample_ids"]) == 2
    ids = r.json()["sample_ids"]
    _error(client.post(f"/v1/collections/{COLL}/persons/ghost/faces", headers=enr,
                       files=[("images", ("g.jpg", _jpg("Gerhard_Schroeder", 3), "image/jpeg"))]), 404, "not_found")
    faces = client.get(f"/v1/collections/{COLL}/persons/gerhard/faces", headers=rd).json()["faces"]
    assert [f["id"] for f in faces] == ids and all(f["box"] and f["quality"] > 0 for f in faces)
    _no_vectors(faces)
    one = client.get(f"/v1/collections/{COLL}/persons/gerhard/faces/{ids[0]}", headers=rd)
    assert one.status_code == 200 and one.json()["id"] == ids[0] and "template" not in one.json()
    # templates only with the scope
    _error(client.get(f"/v1/collections/{COLL}/persons/gerhard/faces/{ids[0]}?templates=true", headers=rd), 403, "forbidden")
    _error(client.get(f"/v1/collections/{COLL}/persons/gerhard?templates=true", headers=_auth(tokens["admin"])),
           403, "forbidden")
    t = client.get(f"/v1/collections/{COLL}/persons/gerhard/faces/{ids[0]}?templates=true", headers=_auth(tokens["templates"]))
    assert t.status_code == 200 and len(t.json()["template"]["vector"]) == 128
    t = client.get(f"/v1/collections/{COLL}/persons/gerhard/faces?templates=true", headers=_auth(tokens["templates"]))
    assert all(len(f["template"]["vector"]) == 128 for f in t.json()["faces"])
    # a face id of someone else is not found under this person; bad ids are validation errors
    colin_face = client.get(f"/v1/collections/{COLL}/persons/colin/faces", headers=rd).json()["faces"][0]["id"]
    _error(client.get(f"/v1/collections/{COLL}/persons/gerhard/faces/{colin_face}", headers=rd), 404, "not_found")
    err = _error(client.get(f"/v1/collections/{COLL}/persons/gerhard/faces/abc", headers=rd), 422, "invalid_request")
    assert "abc" not in json.dumps(err.get("details", {}))
    # delete one face
    r = client.delete(f"/v1/collections/{COLL}/persons/gerhard/faces/{ids[0]}", headers=dl)
    assert r.status_code == 200
    assert client.get(f"/v1/collections/{COLL}/persons/gerhard", headers=rd).json()["samples"] == 1
    _error(client.delete(f"/v1/collections/{COLL}/persons/gerhard/faces/{ids[0]}", headers=dl), 404, "not_found")
    _error(client.get("/v1/collections/nope/persons", headers=_auth(tokens["admin"])), 404, "not_found")
    _error(client.post("/v1/collections/nope/identify", headers=_auth(tokens["admin"]), files={"image": _jpg("Tony_Blair", 2)}),
           404, "not_found")


# -- auth -------------------------------------------------------------------------------------------------------------


def test_auth_paths(client: TestClient, tokens: dict[str, str], keys: KeyStore) -> None:
    url = f"/v1/collections/{COLL}/persons"
    err = _error(client.get(url), 401, "unauthorized")
    assert "key" in err["message"]
    assert client.get(url).headers["www-authenticate"].startswith("Bearer")
    _error(client.get(url, headers=_auth("not-a-key")), 401, "unauthorized")
    _error(client.get(url, headers=_auth("fak_000000000000_secret")), 401, "unauthorized")  # unknown id
    real = tokens["reader"]
    _error(client.get(url, headers=_auth(real[:-3] + "xyz")), 401, "unauthorized")  # right id, wrong secret
    _error(client.get(url, headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}), 401, "unauthorized")
    assert client.get(url, headers=_auth(real)).status_code == 200
    assert client.get(url, headers={"X-API-Key": real}).status_code == 200
    # valid key, wrong scope / wrong collection
    _error(client.delete(f"{url}/colin", headers=_auth(real)), 403, "forbidden")
    _error(client.get(url, headers=_auth(tokens["enrol_only"])), 403, "forbidden")
    _error(client.get(url, headers=_auth(tokens["other"])), 403, "forbidden")
    _error(client.post(f"/v1/collections/{COLL}/identify", headers=_auth(tokens["other"]), files={"image": b"x"}),
           403, "forbidden")
    # a revoked key stops working at once (also after it was cached as verified)
    record, token = keys.create("read", [COLL], name="short-lived")
    assert client.get(url, headers=_auth(token)).status_code == 200
    keys.revoke(record.id)
    _error(client.get(url, headers=_auth(token)), 401, "unauthorized")
    # no endpoint but /v1/health (and the page) answers without a key
    for method, path in (("get", "/v1/models"), ("post", "/v1/detect"), ("post", "/v1/verify"), ("get", "/v1/collections"),
                         ("get", f"/v1/collections/{COLL}"), ("post", f"/v1/collections/{COLL}/enroll"),
                         ("get", f"/v1/collections/{COLL}/persons/colin/faces/1"), ("get", "/v1/whoami")):
        _error(getattr(client, method)(path), 401, "unauthorized")


def test_keys_are_stored_only_as_hashes(keys: KeyStore, tokens: dict[str, str]) -> None:
    raw = keys.path.read_bytes() + (Path(str(keys.path) + "-wal").read_bytes() if Path(str(keys.path) + "-wal").exists() else b"")
    for token in tokens.values():
        secret = token.split("_", 2)[2]
        assert secret.encode() not in raw
    listed = keys.list()
    assert all("hash" not in k.to_dict() and "salt" not in k.to_dict() for k in listed)
    assert oct(keys.path.stat().st_mode & 0o777) == "0o600"


def test_no_auth_is_refused_off_loopback_and_first_key_once(tmp_path: Path) -> None:
    from faceatlas.errors import FaceAtlasError
    from faceatlas.server.run import check_bind, first_run_key
    from faceatlas.server.settings import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.9.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
    with pytest.raises(FaceAtlasError):
        check_bind(ServerSettings(host="0.0.0.0", auth=False))
    check_bind(ServerSettings(host="127.0.0.1", auth=False))
    check_bind(ServerSettings(host="0.0.0.0", auth=True))
    settings = ServerSettings(keys_db=str(tmp_path / "keys.db"))
    token = first_run_key(settings)
    assert token is not None and token.startswith("fak_")
    assert first_run_key(settings) is None
    rec = KeyStore(tmp_path / "keys.db").authenticate(token)
    assert rec is not None and rec.allows("admin", "anything") and not rec.allows("templates")


def test_cli_keys_and_serve_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli import app

    monkeypatch.setenv("FACEATLAS_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "create", "--scope", "read,enroll", "--collection", "c1", "--name", "ci", "--json"])
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["scopes"] == ["read", "enrol"] and created["collections"] == ["c1"] and created["key"].startswith("fak_")
    r = runner.invoke(app, ["keys", "list", "--json"])
    listed = [json.loads(line) for line in r.output.splitlines()]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    r = runner.invoke(app, ["keys", "revoke", created["id"]])
    assert r.exit_code == 0 and "revoked" in r.output
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)["active"] is False
    r = runner.invoke(app, ["keys", "create", "--scope", "read,root"])
    assert r.exit_code != 0
    r = runner.invoke(app, ["serve", "--no-auth", "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "loopback" in str(r.exception)


# -- limits -----------------------------------------------------------------------------------------------------------


def test_upload_size_limit(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    with _client_with(service, keys, max_upload_bytes=20_000) as c:
        h = _auth(tokens["reader"])
        big = _png(300, 300, 7) + b"\0" * 30_000
        _error(c.post("/v1/detect", headers=h, files={"image": big}), 413, "request_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"x" * 5_000

        r = c.post("/v1/detect", headers={**h, "Content-Type": "image/jpeg"}, content=chunks())
        _error(r, 413, "request_too_large")
        assert c.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 2)}).status_code == 200


def test_pixel_limit_and_decompression_bomb(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    with _client_with(service, keys, max_pixels=250 * 250) as c:
        h = _auth(tokens["enroller"])
        assert c.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 2)}).status_code == 200
        _error(c.post("/v1/detect", headers=h, files={"image": _png(300, 300)}), 413, "image_too_large")
        _error(c.post("/v1/detect", headers=h, files={"image": _png_header_only(100_000, 100_000)}), 413, "image_too_large")
        r = c.post(f"/v1/collections/{COLL}/enroll", headers=h, data={"person": "big"},
                   files=[("images", ("big.png", _png(300, 300), "image/png"))])
        err = _error(r, 422, "enrolment_rejected")
        assert err["details"]["rejected"][0]["code"] == "image_too_large"


def test_faces_per_image_limit(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    with _client_with(service, keys, max_faces=2) as c:
        h = _auth(tokens["reader"])
        assert c.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 1)}).status_code == 200  # 2 faces
        err = _error(c.post("/v1/detect", headers=h, files={"image": _jpg("Colin_Powell", 10)}), 422, "too_many_faces")
        assert "3 faces" in err["message"]
        _error(c.post(f"/v1/collections/{COLL}/identify", headers=h, files={"image": _jpg("Colin_Powell", 10)}),
               422, "too_many_faces")
        _error(c.post("/v1/verify", headers=h, files={"image_a": _jpg("Colin_Powell", 10), "image_b": _jpg("Colin_Powell", 1)}),
               422, "too_many_faces")


def test_images_per_request_limit(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    with _client_with(service, keys, max_images=2) as c:
        files = [("images", (f"{i}.jpg", _jpg("Tony_Blair", 2), "image/jpeg")) for i in range(3)]
        _error(c.post(f"/v1/collections/{COLL}/enroll", headers=_auth(tokens["enroller"]), data={"person": "x"}, files=files),
               422, "too_many_images")


def test_rate_limit(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    with _client_with(service, keys, rate_limit=0.1, rate_burst=3) as c:
        h = _auth(tokens["reader"])
        codes = [c.get("/v1/models", headers=h).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = c.get("/v1/models", headers=h)
        _error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert c.get("/v1/models", headers=_auth(tokens["admin"])).status_code == 200
        # repeated bad keys from one client are limited too (no free scrypt guessing)
        statuses = [c.get("/v1/models", headers=_auth(tokens["reader"][:-2] + "zz")).status_code for _ in range(5)]
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429


class _SlowService(Service):
    """A service whose detection takes a while (to exercise timeouts and the queue deterministically)."""

    def detect(self, upload: Any, templates: bool) -> dict[str, Any]:
        """Sleep, then detect."""
        time.sleep(0.6)
        return super().detect(upload, templates)


@pytest.mark.slow
def test_timeout_busy_and_event_loop_stays_free(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    settings = _settings(request_timeout=0.25, concurrency=1, max_queue=1)
    slow = _SlowService(settings, atlas=service.atlas, gallery=service.gallery)
    h = _auth(tokens["reader"])
    with TestClient(create_app(settings, service=slow, keys=keys)) as c:
        r = c.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 2)})
        _error(r, 503, "timeout")
        assert r.headers["retry-after"] == "1"
        time.sleep(0.7)  # let the abandoned job finish
        results: list[int] = []

        def call() -> None:
            results.append(c.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 2)}).status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        started = time.perf_counter()
        assert c.get("/v1/health").status_code == 200  # the event loop is not blocked by the work
        assert time.perf_counter() - started < 0.5  # a blocked loop would wait for a 0.6 s job
        for t in threads:
            t.join()
        assert 503 in results
        time.sleep(1.5)


def test_body_timeout_is_408(service: Service, keys: KeyStore, tokens: dict[str, str]) -> None:
    app = create_app(_settings(request_timeout=0.2), service=service, keys=keys)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            if not sent and not getattr(receive, "first", False):
                receive.first = True  # type: ignore[attr-defined]
                return {"type": "http.request", "body": b"abc", "more_body": True}
            await asyncio.sleep(5)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/detect", "raw_path": b"/v1/detect", "query_string": b"",
                 "headers": [(b"content-type", b"image/jpeg"), (b"content-length", b"1000"),
                             (b"authorization", f"Bearer {tokens['reader']}".encode())], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80), "scheme": "http", "http_version": "1.1", "root_path": "", "state": {}}
        await app(scope, receive, send)

    started = time.perf_counter()
    asyncio.run(run())
    assert time.perf_counter() - started < 2
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"


# -- error shape ------------------------------------------------------------------------------------------------------


def test_every_error_is_json_with_a_code(client: TestClient, tokens: dict[str, str]) -> None:
    h = _auth(tokens["reader"])
    _error(client.get("/v1/nothing-here", headers=h), 404, "not_found")
    _error(client.put("/v1/detect", headers=h), 405, "method_not_allowed")
    as_json = {**h, "Content-Type": "application/json"}
    _error(client.post("/v1/detect", headers=as_json, content=b"{not json"), 400, "invalid_json")
    _error(client.post("/v1/detect", headers=h, json=[1, 2]), 400, "invalid_json")
    _error(client.post("/v1/detect", headers=h, json={"image": "%%%not base64%%%"}), 400, "invalid_base64")
    _error(client.post("/v1/detect", headers=h, json={"image": 12}), 422, "invalid_request")
    _error(client.post("/v1/detect", headers=h, json={}), 422, "invalid_request")
    _error(client.post("/v1/detect", headers={**h, "Content-Type": "text/plain"}, content=b"hi"), 415, "unsupported_media_type")
    _error(client.post("/v1/detect", headers=h, files={"image": b"random bytes that are no image"}), 415, "image_unsupported")
    _error(client.post("/v1/detect", headers=h, files={"image": _jpg("Tony_Blair", 2)[:600]}), 400, "image_corrupt")
    _error(client.post("/v1/detect", headers=h, files={"image": b""}), 400, "image_empty")
    multipart = {**h, "Content-Type": "multipart/form-data; boundary=zzz"}
    _error(client.post("/v1/detect", headers=multipart, content=b"--zzz\r\ngarbage"), 422, "invalid_request")
    _error(client.get(f"/v1/collections/{COLL}/persons?limit=0", headers=h), 422, "invalid_request")
    _error(client.post(f"/v1/collections/{COLL}/enroll", headers=_auth(tokens["enroller"]), json={"images": []}),
           422, "invalid_request")
    _error(client.post(f"/v1/collections/{COLL}/enroll", headers=_auth(tokens["enroller"]),
                       json={"person": "x" * 300, "images": [base64.b64encode(_jpg("Tony_Blair", 2)).decode()]}),
           422, "invalid_request")
    _error(client.post("/v1/detect", headers={**h, "Content-Length": "abc"}, content=b""), 400, "invalid_request")


def test_access_log_is_structured_and_has_no_biometrics(client: TestClient, tokens: dict[str, str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    data = _jpg("Tony_Blair", 2)
    with caplog.at_level(logging.INFO, logger="faceatlas.server.access"):
        client.post("/v1/detect", headers={**_auth(tokens["reader"]), "x-request-id": "log-check-1"},
                    json={"image": base64.b64encode(data).decode()})
        client.get("/v1/models")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "faceatlas.server.access"]
    entry = next(e for e in lines if e["request_id"] == "log-check-1")
    assert entry["method"] == "POST" and entry["path"] == "/v1/detect" and entry["status"] == 200
    assert entry["key_id"] == tokens["reader"].split("_")[1] and entry["duration_ms"] > 0
    assert any(e["status"] == 401 and e["key_id"] is None for e in lines)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert base64.b64encode(data).decode()[:40] not in everything
    assert tokens["reader"] not in everything


def test_no_auth_mode_serves_without_keys_but_never_templates(service: Service) -> None:
    settings = _settings(auth=False)
    with TestClient(create_app(settings, service=service)) as c:
        r = c.get("/v1/whoami")
        assert r.status_code == 200 and r.json()["key_id"] == "anonymous" and "templates" not in r.json()["scopes"]
        assert c.get("/v1/health").json()["auth"] is False
        assert c.post("/v1/detect", files={"image": _jpg("Tony_Blair", 2)}).status_code == 200
        _error(c.post("/v1/detect?templates=true", files={"image": _jpg("Tony_Blair", 2)}), 403, "forbidden")
