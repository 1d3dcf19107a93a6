"""The one pipeline: requests, heads sharing crops, face selection, limits — and one model-contract rule everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.pipeline import (
    CANONICAL,
    CROP,
    DETECT,
    EMBEDDING,
    QUALITY,
    CropSpec,
    FaceBatch,
    FaceRequest,
    register_head,
)


def _multi_face_image(lfw_dir: Path) -> np.ndarray:
    """Two LFW faces side by side (RGB)."""
    from faceatlas.images import load_image

    a = load_image(lfw("Colin_Powell", 1)).rgb
    b = load_image(lfw("Tony_Blair", 1)).rgb
    return np.ascontiguousarray(np.concatenate([a, b], axis=1))


def test_request_is_validated() -> None:
    for bad in ({"faces": "some"}, {"select": "left"}, {"max_faces": 0}, {"too_many": "drop"}, {"face_index": "1"}):
        with pytest.raises(InvalidInputError):
            FaceRequest(**bad)  # type: ignore[arg-type]
    assert FaceRequest(heads=(EMBEDDING, EMBEDDING, QUALITY)).heads == (EMBEDDING, QUALITY)
    assert FaceRequest(heads="quality").heads == (QUALITY,)  # type: ignore[arg-type]
    assert DETECT.but(max_faces=2).max_faces == 2 and DETECT.heads == ()


def test_heads_share_one_crop_per_spec(atlas: Any, lfw_dir: Path) -> None:
    calls: list[CropSpec] = []

    class Spy:
        name = "spy"

        def __init__(self, pipeline: Any) -> None:
            del pipeline

        def run(self, batch: FaceBatch) -> list[int]:
            batch.crops(CropSpec())
            return [1] * len(batch)

    original = FaceBatch.crops

    def counting(self: FaceBatch, spec: CropSpec = CANONICAL) -> Any:
        if spec not in self._crops:
            calls.append(spec)
        return original(self, spec)

    register_head("spy", Spy)
    FaceBatch.crops = counting  # type: ignore[method-assign]
    try:
        result = atlas.run(lfw("Colin_Powell", 1), FaceRequest(heads=(EMBEDDING, QUALITY, CROP, "spy")))
    finally:
        FaceBatch.crops = original  # type: ignore[method-assign]
    face = result.faces[0]
    assert calls == [CropSpec("arcface112", 112)]  # four heads, one alignment
    assert face.template is not None and face.template.model_id == "sface"
    assert 0 < face.quality <= 1 and face.head(QUALITY).score == face.quality and face.head("spy") == 1
    assert face.crop is not None and face.crop.shape == (112, 112, 3)
    # the same template as the embedder on its own alignment
    direct = atlas.run(lfw("Colin_Powell", 1)).faces[0].template
    assert float(np.dot(direct.vector, face.template.vector)) > 0.99999
    with pytest.raises(InvalidInputError):
        atlas.run(lfw("Colin_Powell", 1), FaceRequest(heads=("no-such-head",)))


def test_face_selection_and_limits(atlas: Any, lfw_dir: Path) -> None:
    two = _multi_face_image(lfw_dir)
    every = atlas.run(two, DETECT.but(color="rgb"))
    assert every.detected == len(every.faces) >= 2 and all(f.template is None for f in every.faces)
    one = atlas.run(two, FaceRequest(faces="one", select="score", color="rgb"))
    assert len(one.faces) == 1 and one.detected == every.detected and one.faces[0].template is not None
    assert one.faces[0].score == max(f.score for f in every.faces)
    picked = atlas.run(two, FaceRequest(faces="one", face_index=1, color="rgb", heads=()))
    assert picked.faces[0].index == 1
    with pytest.raises(FaceAtlasError) as err:
        atlas.run(two, FaceRequest(faces="one", face_index=7, color="rgb"))
    assert err.value.code == "face_index"
    kept = atlas.run(two, FaceRequest(max_faces=1, color="rgb", heads=()))
    assert len(kept.faces) == 1 and kept.detected == every.detected
    with pytest.raises(FaceAtlasError) as err:
        atlas.run(two, FaceRequest(max_faces=1, too_many="refuse", color="rgb"))
    assert err.value.code == "too_many_faces"
    blank = np.full((200, 200, 3), 127, np.uint8)
    assert atlas.run(blank, FaceRequest(color="rgb")).faces == ()
    with pytest.raises(FaceAtlasError) as err:
        atlas.run(blank, FaceRequest(color="rgb", require_face=True))
    assert err.value.code == "no_face"


def test_run_many_keeps_per_image_errors_in_order(atlas: Any, lfw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    images = [lfw("Colin_Powell", 1), bad, lfw("Tony_Blair", 1)]
    results = atlas.run_many(images, FaceRequest(hash_image=True), chunk=1, errors="keep")
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error.code.startswith("image_") and results[1].faces == ()
    assert results[0].sha256 is not None and len(results[0].sha256) == 64
    with pytest.raises(FaceAtlasError):
        atlas.run_many(images)


def test_derived_detector_shares_the_embedder(atlas: Any, lfw_dir: Path) -> None:
    frames = atlas.with_detector(det_score=0.3, multiscale=False, detect_size=320)
    assert frames.embedder is atlas.embedder and frames.detector is not atlas.detector
    assert frames.det_score == 0.3 and atlas.det_score == 0.6
    from faceatlas.images import load_image

    loaded = load_image(lfw("Colin_Powell", 1))
    found = frames.run(loaded, DETECT).faces
    faces = frames.faces_of(loaded, [f.detection for f in found])
    assert len(faces) == len(found) >= 1 and faces[0].template is not None


def test_one_threshold_resolution(atlas: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    default = atlas.operating_point()
    assert default.source == "model default"
    assert atlas.operating_point(0.5).threshold == 0.5
    monkeypatch.setenv("FACEATLAS_THRESHOLD", "0.42")
    assert atlas.operating_point().threshold == 0.42 and atlas.operating_point(0.3).threshold == 0.3
    far = atlas.operating_point("far=1e-3")
    assert far.far_target == 1e-3 and far.source.startswith("far=0.001")


# -- the model contract: one rule, every surface ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sface_gallery(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Path]:
    """A gallery file with one collection enrolled with plain sface."""
    from faceatlas.gallery import Gallery
    from faceatlas.recognition import Recognizer

    path = tmp_path_factory.mktemp("contract") / "gallery.db"
    rec = Recognizer(atlas, Gallery.open(path))
    rec.enroll("people", "colin", [lfw("Colin_Powell", i) for i in (1, 2)])
    rec.close()
    yield path


def test_library_refuses_another_models_templates(atlas: Any, sface_gallery: Path) -> None:
    from faceatlas.facade import FaceAtlas
    from faceatlas.gallery import Gallery
    from faceatlas.recognition import Recognizer

    flipped = FaceAtlas(embedder="sface+flip", store=atlas.store)
    with Gallery.open(sface_gallery) as g:
        rec = Recognizer(flipped, g)
        for call in (lambda: rec.identify("people", lfw("Colin_Powell", 3)),
                     lambda: rec.identify_faces("people", flipped.embed(lfw("Colin_Powell", 3))),
                     lambda: rec.enroll("people", "colin", [lfw("Colin_Powell", 4)])):
            with pytest.raises(FaceAtlasError) as err:
                call()
            assert err.value.code == "model_mismatch"
        face = flipped.embed(lfw("Colin_Powell", 3))[0]
        assert face.template is not None and face.template.dim == 128  # same dimension: only the model id tells
        with pytest.raises(FaceAtlasError) as err:
            g.search("people", face.template)
        assert err.value.code == "model_mismatch"
        with pytest.raises(FaceAtlasError) as err:
            g.search("people", face.template.vector, model_id="sface+flip")
        assert err.value.code == "model_mismatch"
        with pytest.raises(InvalidInputError):
            g.search("people", face.template.vector)  # a raw vector must say which model made it
        assert g.search("people", atlas.embed(lfw("Colin_Powell", 3))[0].template)[0][0].external_id == "colin"


def test_rest_refuses_another_models_templates(atlas: Any, sface_gallery: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from faceatlas.facade import FaceAtlas
    from faceatlas.gallery import Gallery
    from faceatlas.server.app import create_app
    from faceatlas.server.keys import KeyStore
    from faceatlas.server.service import Service
    from faceatlas.server.settings import ServerSettings

    keys = KeyStore(tmp_path / "keys.db")
    token = keys.create("read,enrol", ["people"], name="t")[1]
    settings = ServerSettings(rate_limit=0.0, warmup=False)
    service = Service(settings, atlas=FaceAtlas(embedder="sface+flip", store=atlas.store), gallery=Gallery.open(sface_gallery))
    try:
        with TestClient(create_app(settings, service=service, keys=keys)) as client:
            auth = {"Authorization": f"Bearer {token}"}
            r = client.post("/v1/collections/people/identify", headers=auth,
                            files={"image": lfw("Colin_Powell", 3).read_bytes()})
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "model_mismatch"
            r = client.post("/v1/collections/people/enroll", headers=auth, data={"person": "colin"},
                            files=[("images", ("c4.jpg", lfw("Colin_Powell", 4).read_bytes(), "image/jpeg"))])
            assert r.status_code == 409 and r.json()["error"]["code"] == "model_mismatch", r.text
    finally:
        service.close()


def _clip(path: Path, frames: int = 4) -> Path:
    """A few frames of one LFW photo as a small video file."""
    import cv2

    bgr = cv2.imread(str(lfw("Colin_Powell", 3)))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (bgr.shape[1], bgr.shape[0]))
    for _ in range(frames):
        out.write(bgr)
    out.release()
    return path


def test_cli_refuses_another_models_templates(sface_gallery: Path, lfw_dir: Path, tmp_path: Path) -> None:
    # identify/enrol on the CLI pick the collection's own model; video takes --embedder, so a wrong one must be refused
    clip = _clip(tmp_path / "clip.avi")
    cmd = [sys.executable, "-m", "faceatlas", "video", str(clip), "--collection", "people",
           "--gallery", str(sface_gallery), "--embedder", "sface+flip", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip().startswith("{")]
    assert any(x.get("error", {}).get("code") == "model_mismatch" for x in lines) or "model_mismatch" in proc.stderr
    ok = subprocess.run(cmd[:-3] + ["--embedder", "sface", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_minor_faces_are_dropped_before_heads_run(atlas: Any, lfw_dir: Path) -> None:
    import cv2

    from faceatlas.images import load_image

    big = cv2.resize(load_image(lfw("Colin_Powell", 1)).rgb, (750, 750), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(load_image(lfw("Tony_Blair", 1)).rgb, (125, 125), interpolation=cv2.INTER_AREA)
    canvas = np.full((900, 1100, 3), 90, np.uint8)
    canvas[75:825, 0:750] = big
    canvas[700:825, 900:1025] = small
    every = atlas.run(canvas, FaceRequest(color="rgb", heads=()))
    assert every.detected >= 2 and len(every.faces) == every.detected
    main = atlas.run(canvas, FaceRequest(color="rgb", minor_faces="drop"))
    assert main.detected == every.detected and len(main.faces) == 1
    assert main.faces[0].box.width > 200 and main.faces[0].template is not None
    two = _multi_face_image(lfw_dir)  # two faces of the same size: neither is minor
    assert len(atlas.run(two, FaceRequest(color="rgb", minor_faces="drop", heads=())).faces) >= 2
    with pytest.raises(InvalidInputError):
        FaceRequest(minor_faces="some")  # type: ignore[arg-type]
