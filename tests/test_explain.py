""""Why this match" (occlusion maps) in the library and over REST; REST enrolment of one face of a group photo."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw
from PIL import Image

from faceatlas.explain import DEFAULT_GRID, Explanation

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def test_explain_maps_point_at_the_face(atlas: Any, lfw_dir: Path) -> None:
    a, b = lfw("Tony_Blair", 1), lfw("Tony_Blair", 2)
    e = atlas.explain(a, b)
    assert isinstance(e, Explanation)
    assert e.grid == DEFAULT_GRID and e.map_a.shape == e.map_b.shape == (DEFAULT_GRID, DEFAULT_GRID)
    assert e.crop_a.shape == e.crop_b.shape == (112, 112, 3)
    assert e.score == pytest.approx(atlas.verify(a, b).score, abs=1e-4) and e.same
    centre = e.region_drop(slice(2, 5), slice(2, 5))
    corners = float(np.mean([e.map_a[r, c] + e.map_b[r, c] for r in (0, 6) for c in (0, 6)]) / 2)
    assert centre > corners + 0.005, (centre, corners)
    d = e.to_dict()
    assert len(d["map_a"]) == DEFAULT_GRID and d["max_drop"] > 0 and d["ms"] > 0
    assert Image.open(io.BytesIO(base64.b64decode(d["crop_a_png"]))).size == (112, 112)
    with pytest.raises(Exception, match="grid"):
        atlas.explain(a, b, grid=1)
    assert atlas.explain(a, b, grid=4).map_b.shape == (4, 4)


def _group_photo(tmp_path: Path) -> Path:
    """Tony Blair (left) and Colin Powell (right) side by side on one image."""
    left, right = Image.open(lfw("Tony_Blair", 1)), Image.open(lfw("Colin_Powell", 1))
    canvas = Image.new("RGB", (500, 250))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (250, 0))
    path = tmp_path / "group.jpg"
    canvas.save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def client(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Any]:
    """The app on a fresh gallery without auth (shared models)."""
    from fastapi.testclient import TestClient

    from faceatlas.gallery import Gallery
    from faceatlas.server.app import create_app
    from faceatlas.server.service import Service
    from faceatlas.server.settings import ServerSettings

    settings = ServerSettings(rate_limit=0.0, warmup=False, auth=False)
    svc = Service(settings, atlas=atlas, gallery=Gallery.open(tmp_path_factory.mktemp("xgallery") / "g.db"))
    with TestClient(create_app(settings, service=svc)) as c:
        yield c
    svc.close()


def test_rest_explain(client: Any) -> None:
    files = {"image_a": lfw("Colin_Powell", 1).read_bytes(), "image_b": lfw("Colin_Powell", 2).read_bytes()}
    r = client.post("/v1/explain", files=files, data={"grid": "5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"] == 5 and len(body["map_a"]) == 5 and len(body["map_b"][0]) == 5
    assert body["same"] is True and body["crop_b_png"]
    r = client.post("/v1/explain", json={"image_a": base64.b64encode(files["image_a"]).decode(),
                                         "image_b": base64.b64encode(lfw("Tony_Blair", 1).read_bytes()).decode()})
    assert r.status_code == 200 and r.json()["same"] is False and r.json()["grid"] == DEFAULT_GRID
    r = client.post("/v1/explain", files=files, data={"grid": "40"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_rest_enrol_one_face_of_a_group_photo(client: Any, tmp_path: Path) -> None:
    group = _group_photo(tmp_path).read_bytes()
    faces = client.post("/v1/detect", files={"image": group}).json()["faces"]
    assert len(faces) >= 2
    right = next(i for i, f in enumerate(faces) if (f["box"][0] + f["box"][2]) / 2 > 250 and f["score"] > 0.8)
    refused = client.post("/v1/collections/grp/enroll", files={"images": ("group.jpg", group)}, data={"person": "x"})
    assert refused.status_code == 422 or refused.status_code == 400, refused.text
    assert "multiple_faces" in refused.text
    r = client.post("/v1/collections/grp/enroll", files={"images": ("group.jpg", group)},
                    data={"person": "colin", "name": "Colin Powell", "face_index": str(right)})
    assert r.status_code in (200, 201), r.text
    assert r.json()["face_index"] == right and len(r.json()["accepted"]) == 1
    who = client.post("/v1/collections/grp/identify", files={"image": lfw("Colin_Powell", 3).read_bytes()}).json()
    assert who["faces"][0]["person"] == "colin"
    # a face index past the faces found is refused with its reason
    bad = client.post("/v1/collections/grp/enroll", files={"images": ("group.jpg", group)},
                      data={"person": "colin", "face_index": "50"})
    assert bad.status_code >= 400 and "enrolment_rejected" in bad.text
    # or a policy picks the face
    pol = client.post("/v1/collections/grp/enroll", files={"images": ("group.jpg", group)},
                      data={"person": "someone", "multi_face": "largest"})
    assert pol.status_code in (200, 201), pol.text
    # the same face of the same photo again is a duplicate
    again = client.post("/v1/collections/grp/enroll", files={"images": ("group.jpg", group)},
                        data={"person": "colin", "face_index": str(right)})
    assert again.status_code >= 400 and "duplicate_image" in again.text
