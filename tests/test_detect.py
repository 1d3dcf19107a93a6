"""Detection on real LFW faces: positions, several faces, small and frame-filling faces, other detectors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import lfw

from faceatlas.detect import nms, select_face
from faceatlas.errors import FaceAtlasError, InvalidInputError, NoFaceError
from faceatlas.images import load_image
from faceatlas.types import Box, Detection


def _inside(point: np.ndarray, box: Box) -> bool:
    return bool(box.x1 <= point[0] <= box.x2 and box.y1 <= point[1] <= box.y2)


def _plausible(det: Detection) -> None:
    """Landmarks sit inside the box in anatomical order (eyes above nose above mouth)."""
    lm = det.landmarks
    assert all(_inside(p, det.box) for p in lm)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])


@pytest.mark.parametrize("name", ["Aaron_Eckhart", "Abel_Pacheco", "George_W_Bush"])
def test_lfw_face_found_centrally(atlas, lfw_dir: Path, name: str) -> None:
    faces = atlas.detect(lfw(name, 1))
    assert faces, "no face found"
    f = faces[select_face([x.detection for x in faces], 250, 250, "central")]
    cx, cy = f.box.center
    assert 95 < cx < 155 and 90 < cy < 160
    assert 60 < f.box.width < 160 and f.score > 0.8
    _plausible(f.detection)


def test_boxes_are_in_original_coordinates(atlas, lfw_dir: Path) -> None:
    img = load_image(lfw("Aaron_Eckhart", 1)).rgb
    canvas = np.full((600, 900, 3), 127, np.uint8)
    canvas[300:550, 500:750] = img
    base = atlas.detect(img, color="rgb")[0]
    moved = atlas.detect(canvas, color="rgb")[0]
    assert moved.box.x1 - base.box.x1 == pytest.approx(500, abs=6)
    assert moved.box.y1 - base.box.y1 == pytest.approx(300, abs=6)
    np.testing.assert_allclose(moved.landmarks - np.array([500, 300]), base.landmarks, atol=6)


def test_several_faces_and_selection(atlas, lfw_dir: Path) -> None:
    a = load_image(lfw("Aaron_Eckhart", 1)).rgb
    b = cv2.resize(load_image(lfw("Abel_Pacheco", 1)).rgb, (150, 150))
    canvas = np.full((300, 700, 3), 90, np.uint8)
    canvas[25:275, 20:270] = a
    canvas[75:225, 500:650] = b
    faces = atlas.detect(canvas, color="rgb")
    assert len(faces) == 2
    dets = [f.detection for f in faces]
    largest = dets[select_face(dets, 700, 300, "largest")]
    assert largest.box.center[0] < 350
    central = dets[select_face(dets, 700, 300, "central")]
    assert central.box.center[0] < 350  # the left face's centre (≈145) is nearer the middle (350) than the right's
    assert [f.index for f in faces] == [0, 1]


def test_small_face_in_a_large_photo(atlas, lfw_dir: Path) -> None:
    """A face about 22 px wide inside a 1920×1080 frame is found (tiling pass)."""
    face = cv2.resize(load_image(lfw("Aaron_Eckhart", 1)).rgb, (60, 60), interpolation=cv2.INTER_AREA)
    frame = np.full((1080, 1920, 3), 110, np.uint8)
    frame[700:760, 1300:1360] = face
    faces = atlas.detect(frame, color="rgb")
    assert any(1300 <= f.box.center[0] <= 1360 and 700 <= f.box.center[1] <= 760 for f in faces)
    hit = next(f for f in faces if 1300 <= f.box.center[0] <= 1360)
    assert 12 <= hit.box.width <= 40


def test_face_filling_the_frame(atlas, lfw_dir: Path) -> None:
    """A close-up where the face covers the whole image is still found (zoom-out pass)."""
    img = load_image(lfw("Aaron_Eckhart", 1)).rgb
    crop = cv2.resize(img[55:200, 70:180], (880, 1160), interpolation=cv2.INTER_CUBIC)
    faces = atlas.detect(crop, color="rgb")
    assert faces, "close-up face missed"
    assert faces[0].box.width > 500


def test_blank_image_has_no_face(atlas) -> None:
    assert atlas.detect(np.full((300, 400, 3), 200, np.uint8), color="rgb") == []
    with pytest.raises(NoFaceError) as err:
        atlas.template(np.full((300, 400, 3), 200, np.uint8), color="rgb")
    assert err.value.code == "no_face"


def test_tiny_and_odd_aspect_images(atlas, lfw_dir: Path) -> None:
    img = load_image(lfw("Aaron_Eckhart", 1)).rgb
    assert atlas.detect(np.zeros((1, 1, 3), np.uint8), color="rgb") == []
    strip = np.full((250, 2500, 3), 100, np.uint8)
    strip[:, 1000:1250] = img
    faces = atlas.detect(strip, color="rgb")
    assert faces and 1000 < faces[0].box.center[0] < 1250


@pytest.mark.parametrize("name", ["scrfd-500m", "scrfd-2.5g", "yunet-fp32"])
def test_other_detectors(models_dir: Path, lfw_dir: Path, name: str) -> None:
    from faceatlas.facade import FaceAtlas

    fa = FaceAtlas(detector=name, models_dir=models_dir)
    faces = fa.detect(lfw("Abel_Pacheco", 1))
    assert faces and faces[0].score > 0.5
    _plausible(faces[0].detection)
    assert faces[0].detection.detector == name


def test_nms_and_selection_units() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.4) == [0, 2]
    assert nms(boxes, scores, 0.9) == [0, 1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4) == []
    dets = [
        Detection(Box(0, 0, 50, 50), 0.99, np.zeros((5, 2))),
        Detection(Box(90, 90, 110, 110), 0.7, np.zeros((5, 2))),
        Detection(Box(120, 0, 200, 100), 0.8, np.zeros((5, 2))),
    ]
    assert select_face(dets, 200, 200, "score") == 0
    assert select_face(dets, 200, 200, "central") == 1
    assert select_face(dets, 200, 200, "largest") == 2
    with pytest.raises(NoFaceError):
        select_face([], 10, 10)
    with pytest.raises(InvalidInputError):
        select_face(dets, 10, 10, "biggest")  # type: ignore[arg-type]
    assert isinstance(NoFaceError(), FaceAtlasError)


# -- the lean pre/post-processing gives exactly what the straightforward one gave (issue #13) ----------------------


def _reference_raw(det: object, rgb: np.ndarray) -> object:
    """Canvas + channel flip + astype + transpose, then every anchor decoded and thresholded afterwards."""
    from faceatlas.detect.base import RawDetections

    d: object = det
    spec = d.spec.input  # type: ignore[attr-defined]
    h, w = rgb.shape[:2]
    cw, ch = d._canvas_for(w, h)  # type: ignore[attr-defined]
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[:h, :w] = rgb
    x = (canvas if spec.color == "rgb" else canvas[:, :, ::-1]).astype(np.float32)
    x = ((x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)).astype(np.float32)
    outputs = d.session.run(list(d.spec.outputs), {d.input_name: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})  # type: ignore[attr-defined]
    full = d._decode(outputs, cw, ch)  # type: ignore[attr-defined]
    keep = full.scores >= d.score_threshold  # type: ignore[attr-defined]
    return RawDetections(full.boxes[keep], full.scores[keep], full.landmarks[keep])


@pytest.mark.parametrize("name", ["yunet", "scrfd-500m"])
def test_lean_preprocessing_gives_identical_detections(lfw_dir: Path, models_dir: Path, name: str) -> None:
    from faceatlas.detect import create_detector
    from faceatlas.models import ModelStore

    store = ModelStore(models_dir=models_dir, offline=True)
    det = create_detector(name, store, threads=1, multiscale=False)
    paths = sorted(lfw_dir.glob("B*/*_0001.jpg"))[:40]
    compared = 0
    for path in paths:
        img = load_image(path)
        got = det.detect(img)
        expect = det._finish(_reference_raw(det, img.rgb), img.width, img.height)
        assert len(got) == len(expect), path
        for a, b in zip(got, expect, strict=True):
            box_a, box_b = [a.box.x1, a.box.y1, a.box.x2, a.box.y2], [b.box.x1, b.box.y1, b.box.x2, b.box.y2]
            np.testing.assert_allclose(box_a, box_b, atol=1e-4)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)
            assert abs(a.score - b.score) < 1e-6
            compared += 1
    assert compared >= len(paths)


def test_no_box_nested_inside_a_larger_face_on_a_large_portrait(lfw_dir: Path) -> None:
    """A 1,200 px close-up made a phantom second box inside the real face (score 0.86): it must be suppressed."""
    from test_first_use import _portrait_on_busy_background

    import faceatlas.detect.base as base
    from faceatlas.facade import FaceAtlas

    image = _portrait_on_busy_background(None)
    faces = FaceAtlas().detect(image, color="rgb")
    boxes = [f.box for f in faces]
    for a in boxes:
        for b in boxes:
            if b.area > a.area:
                ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
                iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
                assert ix * iy < base.NESTED_INSIDE * a.area, (a, b)
    assert max(f.box.width for f in faces) > 600  # the real face is still found
    # the rule itself: a box 90 % inside a larger one goes, a neighbour that only touches it stays
    rows = np.array([[0, 0, 100, 100], [10, 10, 60, 60], [95, 0, 160, 60]], np.float32)
    assert base._drop_nested(rows, [0, 1, 2]) == [0, 2]
