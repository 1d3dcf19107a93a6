"""The CompreFace-compatible API (``/api/v1/``): every endpoint's request and response, field by field against
CompreFace's published REST API description (docs/Rest-API-description.md of exadel-inc/CompreFace, sections cited per
test), its error bodies, keys and limits; and, against a real ``faceatlas serve``, the unmodified flows of the
``compreface-sdk`` 0.6.0 and ``compreface-sdk-python`` 1.0.6 clients (each in a virtualenv of its own)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import lfw  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from faceatlas.server.app import create_app  # noqa: E402
from faceatlas.server.compreface_format import MATCH_SIMILARITY, image_id, sample_id, similarity  # noqa: E402
from faceatlas.server.keys import KeyStore  # noqa: E402
from faceatlas.server.service import Service  # noqa: E402
from faceatlas.server.settings import ServerSettings  # noqa: E402

COLL = "cf"
A, B = "Colin_Powell", "George_W_Bush"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key file of its own."""
    return KeyStore(tmp_path_factory.mktemp("cfkeys") / "keys.db")


@pytest.fixture(scope="module")
def tokens(keys: KeyStore) -> dict[str, str]:
    """Keys as ``keys create --compreface`` makes them, plus some that must be refused."""
    specs = {
        "rec": ("read,enrol,delete", [COLL]),
        "rec_templates": ("read,enrol,delete,templates", [COLL]),
        "reader": ("read", [COLL]),
        "det": ("read", ["compreface-detection"]),
        "two_colls": ("read,enrol,delete", [COLL, "other"]),
        "admin": ("admin", ["*"]),
    }
    return {name: keys.create(scope, colls, name=name)[1] for name, (scope, colls) in specs.items()}


@pytest.fixture(scope="module")
def client(atlas: Any, keys: KeyStore, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[TestClient]:
    """The app on a fresh gallery (shared models, no rate limit)."""
    from faceatlas.gallery import Gallery

    settings = ServerSettings(rate_limit=0.0, warmup=False)
    svc = Service(settings, atlas=atlas, gallery=Gallery.open(tmp_path_factory.mktemp("cfgallery") / "g.db"))
    with TestClient(create_app(settings, service=svc, keys=keys)) as c:
        yield c
    svc.close()


def _h(token: str) -> dict[str, str]:
    """CompreFace's key header."""
    return {"x-api-key": token}


def _file(name: str, n: int) -> dict[str, Any]:
    """A multipart ``file`` of an LFW image."""
    return {"file": (f"{name}_{n}.jpg", lfw(name, n).read_bytes(), "image/jpeg")}


def _grey_png() -> bytes:
    """A faceless image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (160, 160), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def _cf_error(resp: Any, status: int, cf_code: int, code: str) -> dict[str, Any]:
    """CompreFace's error body (``message``, numeric ``code``) alongside faceatlas's ``error`` object."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == cf_code and isinstance(body["message"], str) and body["message"]
    assert body["error"]["code"] == code and body["error"]["request_id"]
    assert resp.headers["cache-control"] == "no-store"
    return dict(body)


def _box_ok(box: dict[str, Any]) -> None:
    """``box``: probability and integer corners (section "Recognize Faces from a Given Image", response table)."""
    assert set(box) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    assert 0.0 < box["probability"] <= 1.0
    assert all(isinstance(box[k], int) for k in ("x_max", "y_max", "x_min", "y_min"))
    assert box["x_min"] < box["x_max"] and box["y_min"] < box["y_max"]


# -- mapping --------------------------------------------------------------------------------------------------------


def test_similarity_scale_puts_the_threshold_at_one_half() -> None:
    t = 0.36
    assert similarity(t, t) == MATCH_SIMILARITY == 0.5
    assert similarity(1.0, t) == 1.0 and similarity(0.0, t) == 0.0 and similarity(-0.4, t) == 0.0
    scores = [-1.0, -0.2, 0.0, 0.1, 0.3, 0.36, 0.4, 0.7, 0.99, 1.0]
    mapped = [similarity(s, t) for s in scores]
    assert mapped == sorted(mapped) and all(0.0 <= m <= 1.0 for m in mapped)
    assert similarity(0.3599, t) < 0.5 < similarity(0.3601, t)


def test_image_ids_are_uuids_of_sample_ids() -> None:
    # "image_id | UUID" (section "Add an Example of a Subject", response table)
    assert image_id(42) == "00000000-0000-0000-0000-00000000002a"
    assert uuid.UUID(image_id(7)).int == 7 and sample_id(image_id(7)) == 7 and sample_id("7") == 7


# -- recognition service ----------------------------------------------------------------------------------------------


def test_recognition_flow_field_by_field(client: TestClient, tokens: dict[str, str]) -> None:
    h = _h(tokens["rec"])
    # "Add an Example of a Subject": POST /faces?subject=&det_prob_threshold=, multipart `file` → 201 {image_id, subject}
    added = []
    for name, n in ((A, 1), (A, 2), (B, 1)):
        r = client.post(f"/api/v1/recognition/faces?subject={name}&det_prob_threshold=0.8", headers=h,
                        files=_file(name, n))
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) == {"image_id", "subject"} and body["subject"] == name
        uuid.UUID(body["image_id"])
        added.append(body["image_id"])
    # "Base64 Support": the same endpoint takes {"file": "<base64>"} as JSON
    r = client.post(f"/api/v1/recognition/faces?subject={B}", headers=h,
                    json={"file": base64.b64encode(lfw(B, 2).read_bytes()).decode()})
    assert r.status_code == 201, r.text
    added.append(r.json()["image_id"])

    # "List of All Saved Examples of the Subject": GET /faces?page=&size=&subject= → faces[], page_number, page_size,
    # total_pages, total_elements
    r = client.get("/api/v1/recognition/faces", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"faces", "page_number", "page_size", "total_pages", "total_elements"}
    assert (body["page_number"], body["page_size"], body["total_pages"], body["total_elements"]) == (0, 20, 1, 4)
    assert sorted(f["image_id"] for f in body["faces"]) == sorted(added)
    assert all(set(f) == {"image_id", "subject"} for f in body["faces"])
    r = client.get("/api/v1/recognition/faces?page=1&size=3", headers=h).json()
    assert (r["page_number"], r["page_size"], r["total_pages"], r["total_elements"], len(r["faces"])) == (1, 3, 2, 4, 1)
    r = client.get(f"/api/v1/recognition/faces?subject={A}", headers=h).json()
    assert r["total_elements"] == 2 and {f["subject"] for f in r["faces"]} == {A}

    # "Recognize Faces from a Given Image": result[] of {box, subjects[{subject, similarity}]}; plugins on request
    r = client.post("/api/v1/recognition/recognize?limit=0&prediction_count=2&det_prob_threshold=0.8"
                    "&face_plugins=landmarks,calculator&status=true", headers=h, files=_file(A, 3))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result", "plugins_versions"}
    assert {"detector", "calculator"} <= set(body["plugins_versions"])
    face = body["result"][0]
    assert set(face) == {"box", "landmarks", "subjects", "execution_time"}  # no "embedding": key lacks templates
    _box_ok(face["box"])
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 and all(isinstance(v, int) for v in p)
                                               for p in face["landmarks"])
    assert {"detector", "calculator"} <= set(face["execution_time"])
    subjects = face["subjects"]
    assert [s["subject"] for s in subjects] == [A, B]
    assert all(set(s) == {"subject", "similarity"} for s in subjects)
    assert subjects[0]["similarity"] > MATCH_SIMILARITY > subjects[1]["similarity"]
    # without options: prediction_count defaults to 1, status false (no execution_time, no plugins_versions)
    r = client.post("/api/v1/recognition/recognize", headers=h, files=_file(A, 3)).json()
    assert set(r) == {"result"} and set(r["result"][0]) == {"box", "subjects"} and len(r["result"][0]["subjects"]) == 1
    # calculator answers for keys with the templates scope
    r = client.post("/api/v1/recognition/recognize?face_plugins=calculator", headers=_h(tokens["rec_templates"]),
                    files=_file(A, 3)).json()
    assert len(r["result"][0]["embedding"]) == 128

    # "Verify Faces from a Given Image": POST /faces/{image_id}/verify → result[] of {box, similarity}
    r = client.post(f"/api/v1/recognition/faces/{added[0]}/verify", headers=h, files=_file(A, 3))
    assert r.status_code == 200, r.text
    item = r.json()["result"][0]
    assert set(item) == {"box", "similarity"} and item["similarity"] > MATCH_SIMILARITY
    r = client.post(f"/api/v1/recognition/faces/{added[2]}/verify", headers=h, files=_file(A, 3))
    assert r.json()["result"][0]["similarity"] < MATCH_SIMILARITY

    # "Delete an Example of the Subject by ID": DELETE /faces/{image_id} → {image_id, subject}; unknown id → 404
    r = client.delete(f"/api/v1/recognition/faces/{added[1]}", headers=h)
    assert r.status_code == 200 and r.json() == {"image_id": added[1], "subject": A}
    _cf_error(client.delete(f"/api/v1/recognition/faces/{added[1]}", headers=h), 404, 11, "not_found")
    _cf_error(client.delete("/api/v1/recognition/faces/not-a-uuid", headers=h), 400, 26, "invalid_request")

    # "Delete Multiple Examples": POST /faces/delete with a JSON list → [{image_id, subject}], unknown ids ignored
    r = client.post("/api/v1/recognition/faces/delete", headers=h, json=[added[3], image_id(999_999), "junk"])
    assert r.status_code == 200 and r.json() == [{"image_id": added[3], "subject": B}]

    # "Delete All Examples of the Subject by Name": DELETE /faces?subject= → {deleted: count}
    r = client.delete(f"/api/v1/recognition/faces?subject={B}", headers=h)
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    r = client.get("/api/v1/recognition/faces", headers=h).json()
    assert r["total_elements"] == 1 and r["faces"][0]["image_id"] == added[0]


def test_subjects_crud(client: TestClient, tokens: dict[str, str]) -> None:
    h = _h(tokens["rec"])
    # "Add a Subject": POST /subjects {"subject"} → {"subject"}; an existing one is refused (code 43)
    r = client.post("/api/v1/recognition/subjects", headers=h, json={"subject": "Jane"})
    assert r.status_code == 201 and r.json() == {"subject": "Jane"}
    _cf_error(client.post("/api/v1/recognition/subjects", headers=h, json={"subject": "Jane"}), 400, 43, "conflict")
    # "List Subjects": GET /subjects/ → {"subjects": [...]}
    r = client.get("/api/v1/recognition/subjects/", headers=h)
    assert r.status_code == 200 and "Jane" in r.json()["subjects"]
    # "Rename a Subject": PUT /subjects/{subject} {"subject": new} → {"updated": true|false}; into an existing name the
    # examples are merged
    client.post("/api/v1/recognition/faces?subject=Dee", headers=h, files=_file(B, 3))
    r = client.put("/api/v1/recognition/subjects/Dee", headers=h, json={"subject": "Jane"})
    assert r.status_code == 200 and r.json() == {"updated": True}
    subjects = client.get("/api/v1/recognition/subjects", headers=h).json()["subjects"]
    assert "Jane" in subjects and "Dee" not in subjects
    assert client.get("/api/v1/recognition/faces?subject=Jane", headers=h).json()["total_elements"] == 1
    assert client.put("/api/v1/recognition/subjects/Nobody", headers=h, json={"subject": "X"}).json() == {"updated": False}
    # "Delete a Subject": DELETE /subjects/{subject} → {"subject"}; unknown → 404 (code 42)
    r = client.delete("/api/v1/recognition/subjects/Jane", headers=h)
    assert r.status_code == 200 and r.json() == {"subject": "Jane"}
    _cf_error(client.delete("/api/v1/recognition/subjects/Jane", headers=h), 404, 42, "not_found")
    # "Delete All Subjects": DELETE /subjects → {"deleted": count}
    client.post("/api/v1/recognition/subjects", headers=h, json={"subject": "Temp"})
    r = client.delete("/api/v1/recognition/subjects", headers=h)
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    assert client.get("/api/v1/recognition/subjects", headers=h).json() == {"subjects": []}


# -- detection and verification services -----------------------------------------------------------------------------


def test_detection_service(client: TestClient, tokens: dict[str, str]) -> None:
    # "Face Detection Service": POST /detection/detect → result[] of {box, landmarks, age, gender, pose, embedding,
    # execution_time}, plugins_versions with status=true
    r = client.post("/api/v1/detection/detect?limit=1&face_plugins=landmarks,age,gender,pose,mask,calculator"
                    "&status=true", headers=_h(tokens["det"]), files=_file(A, 1))
    assert r.status_code == 200, r.text
    body = r.json()
    face = body["result"][0]
    assert len(body["result"]) == 1
    _box_ok(face["box"])
    assert "embedding" not in face and "mask" not in face  # no templates scope; no mask plugin (ignored)
    assert set(face["age"]) == {"low", "high"} and face["age"]["low"] < face["age"]["high"]
    assert face["gender"]["value"] in ("male", "female") and 0.0 <= face["gender"]["probability"] <= 1.0
    assert set(face["pose"]) == {"pitch", "roll", "yaw"}
    assert {"detector", "age", "gender", "pose"} <= set(face["execution_time"])
    assert set(body["plugins_versions"]) == {"detector", "age", "gender", "pose"}
    # with the templates scope the calculator plugin answers: a unit-length embedding per face
    r = client.post("/api/v1/detection/detect?face_plugins=calculator&status=true",
                    headers=_h(tokens["rec_templates"]), files=_file(A, 1)).json()
    emb = r["result"][0]["embedding"]
    assert len(emb) == 128 and abs(sum(v * v for v in emb) - 1.0) < 1e-3 and "calculator" in r["plugins_versions"]
    r = client.post("/api/v1/detection/detect", headers=_h(tokens["det"]), files=_file(A, 1)).json()
    assert r["result"] and all(set(f) == {"box"} for f in r["result"])
    # a detection key sees only its own empty collection and cannot write
    assert client.get("/api/v1/recognition/faces", headers=_h(tokens["det"])).json()["total_elements"] == 0
    _cf_error(client.post("/api/v1/recognition/subjects", headers=_h(tokens["det"]), json={"subject": "x"}), 403, 10,
              "forbidden")


def test_verification_service(client: TestClient, tokens: dict[str, str]) -> None:
    # "Face Verification Service": multipart source_image + target_image → result[{source_image_face, face_matches[]}]
    h = _h(tokens["reader"])
    r = client.post("/api/v1/verification/verify?face_plugins=landmarks", headers=h, files={
        "source_image": ("s.jpg", lfw(A, 4).read_bytes(), "image/jpeg"),
        "target_image": ("t.jpg", lfw(A, 5).read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    item = r.json()["result"][0]
    assert set(item) == {"source_image_face", "face_matches"}
    assert set(item["source_image_face"]) == {"box", "landmarks"}
    match = item["face_matches"][0]
    assert set(match) == {"box", "landmarks", "similarity"} and match["similarity"] > MATCH_SIMILARITY
    # "Base64 Support": {"source_image", "target_image"} as JSON
    r = client.post("/api/v1/verification/verify", headers=h, json={
        "source_image": base64.b64encode(lfw(A, 4).read_bytes()).decode(),
        "target_image": base64.b64encode(lfw(B, 4).read_bytes()).decode()})
    assert r.status_code == 200 and r.json()["result"][0]["face_matches"][0]["similarity"] < MATCH_SIMILARITY


# -- errors, keys, limits ----------------------------------------------------------------------------------------------


def test_errors_auth_and_limits(client: TestClient, tokens: dict[str, str]) -> None:
    h = _h(tokens["rec"])
    grey = {"file": ("g.png", _grey_png(), "image/png")}
    # no face: 400 with code 28 (what camera integrations treat as "nobody here")
    for path in ("/api/v1/recognition/recognize", "/api/v1/detection/detect"):
        body = _cf_error(client.post(path, headers=h, files=grey), 400, 28, "no_face")
        assert body["message"] == "No face is found in the given image"
    _cf_error(client.post("/api/v1/recognition/faces?subject=x", headers=h, files=grey), 400, 28, "no_face")
    # an example needs one face (code 31) and a subject
    _cf_error(client.post("/api/v1/recognition/faces?subject=x", headers=h, files=_file("Tony_Blair", 1)), 400, 31,
              "multiple_faces")
    _cf_error(client.post("/api/v1/recognition/faces", headers=h, files=_file(A, 1)), 400, 26, "invalid_request")
    # bad parameters
    for q in ("det_prob_threshold=2", "det_prob_threshold=nan", "limit=-1", "prediction_count=0", "status=maybe"):
        _cf_error(client.post(f"/api/v1/recognition/recognize?{q}", headers=h, files=_file(A, 1)), 400, 26,
                  "invalid_request")
    _cf_error(client.post("/api/v1/recognition/recognize", headers=h, files={"img": ("a.jpg", b"x")}), 400, 26,
              "invalid_request")
    _cf_error(client.post("/api/v1/recognition/faces/delete", headers=h, content=b"{"), 400, 26, "invalid_json")
    # keys: missing, unknown, wrong scope, several collections; Authorization: Bearer works too
    _cf_error(client.get("/api/v1/recognition/subjects"), 401, 10, "unauthorized")
    _cf_error(client.get("/api/v1/recognition/subjects", headers=_h("00000000-0000-0000-0000-000000000002")), 401, 10,
              "unauthorized")
    _cf_error(client.delete("/api/v1/recognition/subjects", headers=_h(tokens["reader"])), 403, 10, "forbidden")
    _cf_error(client.post("/api/v1/recognition/faces?subject=x", headers=_h(tokens["reader"]), files=_file(A, 1)),
              403, 10, "forbidden")
    _cf_error(client.get("/api/v1/recognition/subjects", headers=_h(tokens["two_colls"])), 403, 10, "forbidden")
    r = client.get("/api/v1/recognition/subjects", headers={"Authorization": f"Bearer {tokens['rec']}"})
    assert r.status_code == 200
    # an all-collection key works on the collection "default"
    r = client.post("/api/v1/recognition/subjects", headers=_h(tokens["admin"]), json={"subject": "d"})
    assert r.status_code == 201
    assert client.get("/v1/collections/default/persons/d", headers=_h(tokens["admin"])).status_code == 200
    # unknown paths and methods keep their statuses, with both error shapes
    _cf_error(client.get("/api/v1/nothing", headers=h), 404, 0, "not_found")
    _cf_error(client.patch("/api/v1/recognition/recognize", headers=h), 405, 0, "method_not_allowed")


def test_keys_create_compreface(tmp_path: Path) -> None:
    env = {**os.environ, "FACEATLAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "faceatlas", "keys", "create", "--compreface", "recognition",
                          "--collection", "garden", "--json"], capture_output=True, text=True, env=env, check=True)
    record = json.loads(out.stdout)
    assert record["scopes"] == ["read", "enrol", "delete"] and record["collections"] == ["garden"]
    assert record["key"].startswith("fak_")
    out = subprocess.run([sys.executable, "-m", "faceatlas", "keys", "create", "--compreface", "detection", "--json"],
                         capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout)["collections"] == ["compreface-detection"]
    bad = subprocess.run([sys.executable, "-m", "faceatlas", "keys", "create", "--compreface", "nope"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "--compreface" in bad.stderr


# -- the real SDKs against a real server ------------------------------------------------------------------------------

#: The documented flow of compreface-sdk 0.6.0 (its README "Usage" and "Reference" sections), unmodified.
SDK_FLOW = r'''
import json, sys
from compreface import CompreFace
from compreface.service import RecognitionService, DetectionService, VerificationService
from compreface.collections import FaceCollection
from compreface.collections.face_collections import Subjects

domain, port, rec_key, det_key, ver_key, a1, a2, b1, probe, other = sys.argv[1:]
compre_face: CompreFace = CompreFace(domain, port, {
    "limit": 0, "det_prob_threshold": 0.8, "prediction_count": 1,
    "face_plugins": "calculator,age,gender,landmarks", "status": "true"})
recognition: RecognitionService = compre_face.init_face_recognition(rec_key)
face_collection: FaceCollection = recognition.get_face_collection()
subjects: Subjects = recognition.get_subjects()
out = {"add": [face_collection.add(image_path=p, subject=s)
               for s, p in (("Colin Powell", a1), ("Colin Powell", a2), ("George Bush", b1))]}
out["list"] = face_collection.list()
out["subjects"] = subjects.list()
out["recognize"] = recognition.recognize(image_path=probe)
out["verify"] = face_collection.verify(image_path=probe, image_id=out["add"][0]["image_id"])
out["delete_subject"] = subjects.delete("Colin Powell")
out["recognize_after"] = recognition.recognize(image_path=probe)
detection: DetectionService = compre_face.init_face_detection(det_key)
out["detect"] = detection.detect(image_path=probe)
verify: VerificationService = compre_face.init_face_verification(ver_key)
out["verification"] = verify.verify(source_image_path=probe, target_image_path=a2)
out["verification_other"] = verify.verify(source_image_path=probe, target_image_path=other)
print(json.dumps(out))
'''

#: The same flow with compreface-sdk-python 1.0.6 (its README "Initialization" and service methods).
SDK_PYTHON_FLOW = r'''
import json, sys
from compare.core.compare_face import CompareFace

domain, port, rec_key, det_key, ver_key, a1, a2, b1, probe, other = sys.argv[1:]
compare = CompareFace(domain, int(port))
rec = compare.init_recognition_service(rec_key)
out = {"add": [rec.add_a_img("Colin Powell", a1), rec.add_a_img("Colin Powell", a2), rec.add_a_img("George Bush", b1)]}
out["list"] = rec.list_saved_img_subject()
out["subjects"] = rec.list_all_subjects()
out["recognize"] = rec.recognize(probe)
out["verify"] = rec.verify(probe, out["add"][0]["image_id"])
out["delete_subject"] = rec.delete_a_subject("Colin Powell")
out["recognize_after"] = rec.recognize(probe)
out["detect"] = compare.init_detect_service(det_key).detect(probe)
ver = compare.init_verify_service(ver_key)
out["verification"] = ver.verify(probe, a2)
out["verification_other"] = ver.verify(probe, other)
print(json.dumps(out))
'''


def _sdk_venv(name: str, requirements: list[str], module: str) -> Path:
    """A virtualenv of its own for an SDK (under the user's cache; made once); skip when pip cannot install it."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceatlas-tests" / name
    python = root / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0:
        return python
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a virtualenv: {made.stderr[-300:]}")
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], capture_output=True, text=True,
                         timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"pip could not install {requirements} (no index reachable?): {pip.stderr[-300:]}")
    return python


def _run_flow(python: Path, script: str, server: Any, keys: dict[str, str]) -> dict[str, Any]:
    """Run an SDK flow script against the server; its JSON output."""
    images = [str(lfw(A, 1)), str(lfw(A, 2)), str(lfw(B, 1)), str(lfw(A, 3)), str(lfw(B, 4))]
    proc = subprocess.run([str(python), "-c", script, "http://127.0.0.1", str(server.port), keys["recognition"],
                           keys["detection"], keys["verification"], *images], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + server.logs()
    return dict(json.loads(proc.stdout))


def _check_flow(out: dict[str, Any]) -> None:
    """What each step of an SDK flow must have answered."""
    assert [a["subject"] for a in out["add"]] == ["Colin Powell", "Colin Powell", "George Bush"], out["add"]
    assert all(uuid.UUID(a["image_id"]) for a in out["add"])
    assert out["list"]["total_elements"] == 3 and len(out["list"]["faces"]) == 3
    assert sorted(out["subjects"]["subjects"]) == ["Colin Powell", "George Bush"]
    top = out["recognize"]["result"][0]["subjects"][0]
    assert top["subject"] == "Colin Powell" and top["similarity"] > MATCH_SIMILARITY, out["recognize"]
    assert out["verify"]["result"][0]["similarity"] > MATCH_SIMILARITY
    assert out["delete_subject"] == {"subject": "Colin Powell"}
    after = out["recognize_after"]["result"][0]["subjects"]
    assert all(s["subject"] != "Colin Powell" for s in after) and all(s["similarity"] < MATCH_SIMILARITY for s in after)
    assert out["detect"]["result"] and "box" in out["detect"]["result"][0]
    assert out["verification"]["result"][0]["face_matches"][0]["similarity"] > MATCH_SIMILARITY
    assert out["verification_other"]["result"][0]["face_matches"][0]["similarity"] < MATCH_SIMILARITY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Any]:
    """A real ``faceatlas serve`` on loopback."""
    from faceatlas.server.launcher import ServerProcess

    with ServerProcess(tmp_path_factory.mktemp("cflive"), ["--log-level", "warning"]) as srv:
        yield srv


def _service_keys(server: Any, collection: str) -> dict[str, str]:
    """One key per CompreFace service, made with ``faceatlas keys create --compreface``."""
    env = {**os.environ, "FACEATLAS_HOME": str(server.home)}
    out = {}
    for service in ("recognition", "detection", "verification"):
        args = ["--collection", collection] if service == "recognition" else []
        proc = subprocess.run([sys.executable, "-m", "faceatlas", "keys", "create", "--compreface", service, *args,
                               "--json"], capture_output=True, text=True, env=env, check=True)
        out[service] = json.loads(proc.stdout)["key"]
    return out


@pytest.mark.slow
def test_compreface_sdk_060_documented_flow(live: Any) -> None:
    python = _sdk_venv("compreface-sdk-0.6.0", ["compreface-sdk==0.6.0", "urllib3<2"], "compreface")
    _check_flow(_run_flow(python, SDK_FLOW, live, _service_keys(live, "sdk060")))


@pytest.mark.slow
def test_compreface_sdk_python_106_flow(live: Any) -> None:
    python = _sdk_venv("compreface-sdk-python-1.0.6", ["compreface-sdk-python==1.0.6"], "compare")
    _check_flow(_run_flow(python, SDK_PYTHON_FLOW, live, _service_keys(live, "sdkpy106")))


def test_limits_apply_to_compat_routes(client: TestClient, tokens: dict[str, str], keys: KeyStore) -> None:
    svc = client.app.state.ctx.service  # type: ignore[attr-defined]
    settings = ServerSettings(rate_limit=0.5, rate_burst=2, max_upload_bytes=50_000, warmup=False)
    with TestClient(create_app(settings, service=Service(settings, atlas=svc.atlas, gallery=svc.gallery),
                               keys=keys)) as c:
        h = _h(tokens["reader"])
        # the upload limit (413) holds before the key's body is read, as on /v1/
        big = c.post("/api/v1/detection/detect", headers={**h, "Content-Type": "image/jpeg"}, content=b"x" * 60_000)
        _cf_error(big, 413, 0, "request_too_large")
        # the per-key rate limit (429 with Retry-After) counts compat requests too
        statuses = [c.get("/api/v1/recognition/subjects", headers=h).status_code for _ in range(4)]
        assert statuses[:1] == [200] and 429 in statuses
        r = c.get("/api/v1/recognition/subjects", headers=h)
        _cf_error(r, 429, 0, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
