"""Thumbnails of enrolled faces (#15 item 7): ``keep_crops`` on REST enrol and the crop endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import lfw

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

COLL = "crops"


@pytest.fixture(scope="module")
def setup(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """An app with keys (read-only, enrol, and one for another collection) on a fresh gallery."""
    from fastapi.testclient import TestClient

    from faceatlas.gallery import Gallery
    from faceatlas.server.app import create_app
    from faceatlas.server.keys import KeyStore
    from faceatlas.server.service import Service
    from faceatlas.server.settings import ServerSettings

    keys = KeyStore(tmp_path_factory.mktemp("ckeys") / "keys.db")
    tokens = {name: keys.create(scope, colls, name=name)[1] for name, (scope, colls) in {
        "enroller": ("read,enrol", [COLL]), "reader": ("read", [COLL]), "enrol_only": ("enrol", [COLL]),
        "elsewhere": ("read", ["other"])}.items()}
    settings = ServerSettings(rate_limit=0.0, warmup=False)
    svc = Service(settings, atlas=atlas, gallery=Gallery.open(tmp_path_factory.mktemp("cgallery") / "g.db"))
    with TestClient(create_app(settings, service=svc, keys=keys)) as c:
        yield c, tokens
    svc.close()


def _auth(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def test_crops_are_kept_only_when_asked_and_served_as_png(setup: tuple[Any, dict[str, str]]) -> None:
    client, tokens = setup
    enrol = _auth(tokens["enroller"])
    files = [("images", (f"{i}.jpg", lfw("Colin_Powell", i).read_bytes())) for i in (1, 2)]
    r = client.post(f"/v1/collections/{COLL}/enroll", files=files, data={"person": "colin", "keep_crops": "true"},
                    headers=enrol)
    assert r.status_code in (200, 201), r.text
    kept_ids = r.json()["sample_ids"]
    assert len(kept_ids) == 2
    r = client.post(f"/v1/collections/{COLL}/enroll", files=[("images", ("t.jpg", lfw("Tony_Blair", 2).read_bytes()))],
                    data={"person": "tony"}, headers=enrol)
    assert r.status_code in (200, 201), r.text
    plain_id = r.json()["sample_ids"][0]

    faces = client.get(f"/v1/collections/{COLL}/persons/colin", headers=enrol).json()["faces"]
    assert [f["has_crop"] for f in faces] == [True, True]
    assert client.get(f"/v1/collections/{COLL}/persons/tony", headers=enrol).json()["faces"][0]["has_crop"] is False

    crop = client.get(f"/v1/collections/{COLL}/persons/colin/faces/{kept_ids[0]}/crop", headers=_auth(tokens["reader"]))
    assert crop.status_code == 200, crop.text
    assert crop.headers["content-type"] == "image/png"
    assert crop.headers["cache-control"] == "no-store"
    assert crop.content.startswith(b"\x89PNG\r\n\x1a\n")
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(crop.content)).size[0] >= 64

    # privacy by default: no crop without keep_crops → 404 with its reason
    none = client.get(f"/v1/collections/{COLL}/persons/tony/faces/{plain_id}/crop", headers=enrol)
    assert none.status_code == 404 and none.json()["error"]["code"] == "not_found"
    assert "keep_crops" in none.json()["error"]["message"]
    # a face of someone else is 404 too (no cross-person reads through another person's path)
    other = client.get(f"/v1/collections/{COLL}/persons/tony/faces/{kept_ids[0]}/crop", headers=enrol)
    assert other.status_code == 404
    # the read scope (on that collection) is required
    assert client.get(f"/v1/collections/{COLL}/persons/colin/faces/{kept_ids[0]}/crop",
                      headers=_auth(tokens["enrol_only"])).status_code == 403
    assert client.get(f"/v1/collections/{COLL}/persons/colin/faces/{kept_ids[0]}/crop",
                      headers=_auth(tokens["elsewhere"])).status_code == 403
    assert client.get(f"/v1/collections/{COLL}/persons/colin/faces/{kept_ids[0]}/crop").status_code == 401


def test_keep_crops_with_face_choice_and_in_openapi(setup: tuple[Any, dict[str, str]]) -> None:
    client, tokens = setup
    r = client.post(f"/v1/collections/{COLL}/enroll", files=[("images", ("g.jpg", lfw("George_W_Bush", 1).read_bytes()))],
                    data={"person": "george", "multi_face": "largest", "keep_crops": "1"},
                    headers=_auth(tokens["enroller"]))
    assert r.status_code in (200, 201), r.text
    sid = r.json()["sample_ids"][0]
    crop = client.get(f"/v1/collections/{COLL}/persons/george/faces/{sid}/crop", headers=_auth(tokens["reader"]))
    assert crop.status_code == 200 and crop.content.startswith(b"\x89PNG")
    spec = client.get("/openapi.json").json()
    assert "/v1/collections/{collection}/persons/{person}/faces/{face_id}/crop" in spec["paths"]
    assert "keep_crops" in str(spec["paths"]["/v1/collections/{collection}/enroll"])
