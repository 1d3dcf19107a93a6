"""Evidence for issue #12's "Must show": path-like person ids (M2) and the long-reader erasure (M3), end to end.

M2: a person id with ``/`` (or ``..``) is refused at enrolment with a clear 400 over REST and exit 2 from the CLI,
and nothing of it reaches the gallery files; a legacy row with such an id is deleted from the CLI, and a byte scan
then finds none of its template. M3: the reproduction of ``benchmarks/erasure_reader.py`` with a short hold.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import lfw
from test_cli import run

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from faceatlas.gallery import Gallery  # noqa: E402
from faceatlas.server.app import create_app  # noqa: E402
from faceatlas.server.keys import KeyStore  # noqa: E402
from faceatlas.server.service import Service  # noqa: E402
from faceatlas.server.settings import ServerSettings  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
COLL = "m2"
PATH_LIKE = ("jane/doe", "a/b", "../../etc/passwd")


@functools.cache
def _bench() -> ModuleType:
    """benchmarks/erasure_reader.py, imported by path (it holds the reproduction and the byte scan)."""
    spec = importlib.util.spec_from_file_location("erasure_reader", BENCH / "erasure_reader.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector(atlas: Any, photo: Path) -> np.ndarray:
    """The template of the photo's face, computed with the same pipeline the server uses."""
    face, _ = atlas.template(photo)
    assert face.template is not None
    return np.asarray(face.template.vector, dtype=np.float32)


def _settings() -> ServerSettings:
    """Test settings: no rate limit and no warm-up."""
    return ServerSettings(rate_limit=0.0, warmup=False)


def _auth(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error response's status, JSON shape and code; return the error object."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"]
    return dict(err)


@pytest.fixture(scope="module")
def rest(atlas: Any, tmp_path_factory: pytest.TempPathFactory,
         lfw_dir: Path) -> Iterator[tuple[TestClient, Path, dict[str, str]]]:
    """A REST app on a gallery of its own folder: the client, the gallery path and an admin header."""
    keys = KeyStore(tmp_path_factory.mktemp("m2keys") / "keys.db")
    _, token = keys.create("admin", ["*"], name="admin")
    path = tmp_path_factory.mktemp("m2gal") / "gallery.db"
    svc = Service(_settings(), atlas=atlas, gallery=Gallery.open(path))
    with TestClient(create_app(_settings(), service=svc, keys=keys)) as client:
        yield client, path, _auth(token)
    svc.close()


# -- M2: REST ---------------------------------------------------------------------------------------------------------


def test_m2_rest_refuses_path_like_person_ids_and_writes_nothing(
        rest: tuple[TestClient, Path, dict[str, str]], atlas: Any) -> None:
    """Enrolling ``jane/doe``, ``a/b`` or ``../../etc/passwd`` is a 400 invalid_input; no byte of it is on disk."""
    bench = _bench()
    client, path, h = rest
    photo = lfw("Jennifer_Aniston", 1)
    vector = _vector(atlas, photo)
    image = photo.read_bytes()
    assert client.post("/v1/collections", headers=h, json={"name": COLL}).status_code == 201
    before = bench.gallery_bytes(path)
    for bad in PATH_LIKE:
        err = _error(client.post(f"/v1/collections/{COLL}/enroll", headers=h, data={"person": bad},
                                 files={"images": ("a.jpg", image, "image/jpeg")}), 400, "invalid_input")
        assert "'/'" in err["message"] and bad in err["message"]  # says what is wrong, and with what
        _error(client.post(f"/v1/collections/{COLL}/enroll", headers=h,
                           json={"person": bad, "images": [base64.b64encode(image).decode()]}), 400, "invalid_input")
        _error(client.post(f"/v1/collections/{COLL}/persons", headers=h, json={"person": bad}), 400, "invalid_input")
    after = bench.gallery_bytes(path)
    assert after == before  # nothing at all was written to the gallery's files
    assert bench.template_pieces(after, vector)[0] == 0
    assert not any(bad.encode() in after for bad in PATH_LIKE)
    assert client.get(f"/v1/collections/{COLL}/persons", headers=h).json()["persons"] == []

    # the scan is not blind: the same photo under a valid id puts its template on disk, and a delete wipes it
    ok = client.post(f"/v1/collections/{COLL}/enroll", headers=h, data={"person": "jane-doe"},
                     files={"images": ("a.jpg", image, "image/jpeg")})
    assert ok.status_code == 200, ok.text
    found, total = bench.template_pieces(bench.gallery_bytes(path), vector)
    assert found == total > 0
    gone = client.delete(f"/v1/collections/{COLL}/persons/jane-doe", headers=h)
    assert gone.status_code == 200 and gone.json()["erasure"] == "complete", gone.text
    assert bench.template_pieces(bench.gallery_bytes(path), vector)[0] == 0


def test_m2_legacy_slash_row_is_deleted_from_the_cli_and_its_bytes_are_gone(
        rest: tuple[TestClient, Path, dict[str, str]], atlas: Any) -> None:
    """A person stored with ``/`` before the rule (written straight into the file) is deleted by the CLI; 0 bytes left."""
    bench = _bench()
    client, path, h = rest
    photos = [lfw("Gerhard_Schroeder", i) for i in (1, 2)]
    vectors = [_vector(atlas, p) for p in photos]
    for p in photos:  # one photo a request: a batch of two embeds with slightly different float rounding
        r = client.post(f"/v1/collections/{COLL}/enroll", headers=h, data={"person": "legacy"},
                        files={"images": (p.name, p.read_bytes(), "image/jpeg")})
        assert r.status_code == 200 and len(r.json()["sample_ids"]) == 1, r.text
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE persons SET external_id = 'dept/7' WHERE external_id = 'legacy'")
    conn.close()
    listed = client.get(f"/v1/collections/{COLL}/persons", headers=h).json()["persons"]
    assert [p["external_id"] for p in listed] == ["dept/7"]  # the REST service sees the legacy row
    assert all(bench.template_pieces(bench.gallery_bytes(path), v)[0] > 0 for v in vectors)

    proc = run("person", "delete", "dept/7", "--collection", COLL, "--gallery", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"deleted": "dept/7", "samples": 2, "erasure": "complete"}
    data = bench.gallery_bytes(path)
    assert [bench.template_pieces(data, v)[0] for v in vectors] == [0, 0]
    assert client.get(f"/v1/collections/{COLL}/persons", headers=h).json()["persons"] == []
    who = client.post(f"/v1/collections/{COLL}/identify", headers=h,
                      files={"image": ("q.jpg", lfw("Gerhard_Schroeder", 3).read_bytes(), "image/jpeg")})
    assert who.status_code == 200, who.text
    assert all(c["person"] != "dept/7" for f in who.json()["faces"] for c in f["candidates"])


# -- M2: CLI ----------------------------------------------------------------------------------------------------------


def test_m2_cli_refuses_path_like_person_ids_and_writes_nothing(tmp_path: Path, atlas: Any, lfw_dir: Path) -> None:
    """``faceatlas enroll --person jane/doe`` exits 2 with one line naming the problem; no byte of it is on disk."""
    bench = _bench()
    photo = lfw("Jennifer_Aniston", 1)
    vector = _vector(atlas, photo)
    g = tmp_path / "g" / "gallery.db"
    for bad in ("jane/doe", "../../etc/passwd"):
        proc = run("enroll", str(photo), "--collection", "c", "--gallery", str(g), "--person", bad)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("faceatlas: error [invalid_input]"), proc.stderr
        assert "'/'" in lines[0] and bad in lines[0] and "Traceback" not in proc.stderr
        assert proc.stdout == ""
        data = bench.gallery_bytes(g)
        assert bench.template_pieces(data, vector)[0] == 0 and bad.encode() not in data
    assert not (tmp_path / "etc").exists() and not (tmp_path / "g" / "jane").exists()
    listed = run("person", "list", "--collection", "c", "--gallery", str(g), "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed.stdout
    # the scan is not blind: the same photo under a valid id puts exactly these bytes on disk
    ok = run("enroll", str(photo), "--collection", "c", "--gallery", str(g), "--person", "jane-doe")
    assert ok.returncode == 0, ok.stderr
    found, total = bench.template_pieces(bench.gallery_bytes(g), vector)
    assert found == total > 0


# -- M3: a delete under a long reader, over REST on a real server ---------------------------------------------------


def test_m3_long_reader_delete_is_202_pending_then_erased(tmp_path: Path, atlas: Any, lfw_dir: Path) -> None:
    """The reproduction with a 3 s reader: 202 pending while the bytes are held, then 0 bytes and 0 pending."""
    bench = _bench()
    photo = lfw("Jennifer_Aniston", 1)
    out = bench.reproduce(3.0, photo, lfw("Colin_Powell", 1), tmp_path, bound=10.0, poll=0.5,
                          vector=_vector(atlas, photo), log=lambda _msg: None)
    assert out["pieces_on_disk_after_enrol"] == out["template_pieces"] > 0  # the scan sees the live template
    assert out["reader_rows_in_snapshot"] == 1 and out["reader"]["exit"] == 0
    assert out["delete"]["status"] == 202 and out["delete"]["erasure"] == "pending" and out["delete"]["faces"] == 1
    assert out["delete"]["seconds"] < 5.0  # answers soon, not after the 30 s busy timeout
    assert out["pieces_on_disk_right_after_delete"] > 0 and out["pieces_on_disk_while_held"] > 0
    assert out["pending_erasures_after_delete"] == 1
    assert all(x["pending_erasures"] >= 1 for x in out["timeline_while_held"])
    assert out["write_while_held"]["status"] == 200 and out["write_while_held"]["seconds"] < 5.0
    assert out["after_reader"] == {"seconds_to_clean": out["after_reader"]["seconds_to_clean"], "pieces_on_disk": 0,
                                   "pending_erasures": 0}
    assert out["after_reader"]["seconds_to_clean"] is not None and out["after_reader"]["seconds_to_clean"] < 10.0
    assert out["get_deleted_person_status"] == 404 and not out["identify_names_deleted_person"]
    assert out["honest"] and out["ok"]
