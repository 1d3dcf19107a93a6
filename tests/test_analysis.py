"""Face-analysis heads on real LFW photos: liveness, age, gender, pose, eyes, expression, landmarks; gates; CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import REPO, lfw

from faceatlas.analysis import (
    ANALYSIS_HEADS,
    DEFAULT_HEADS,
    EXPRESSION_LABELS,
    Age,
    Expression,
    Eyes,
    Gender,
    Landmarks68,
    Liveness,
    Pose,
)
from faceatlas.errors import ERROR_CODES, FaceAtlasError
from faceatlas.images import LoadedImage
from faceatlas.pipeline import FaceRequest
from faceatlas.recognition import QualityGates, Recognizer, enrol_request

BLAIR = ("Tony_Blair", 1)  # smiling man, head turned ~30° towards the image's left
KIDMAN = ("Nicole_Kidman", 1)  # woman, frontal, neutral, eyes open
ALL = ("age", "gender", "expression", "pose", "eyes", "liveness", "landmarks68")


@pytest.fixture(scope="module")
def faces(atlas: Any, lfw_dir: Path) -> dict[str, Any]:
    """The selected face of each test photo with every analysis head."""
    out = {}
    for name, n in (BLAIR, KIDMAN):
        out[name] = atlas.run(lfw(name, n), FaceRequest(faces="one", heads=ALL)).face
    return out


def screen_replay(path: Path, seed: int = 5) -> np.ndarray:
    """An RGB phone-screen replay staged from an LFW photo (benchmarks/spoof_synth.py; this seed's face is found)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from spoof_synth import render
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    import random

    bgr = render(cv2.imread(str(path)), "phone", random.Random(seed))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def paint_eyes_shut(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Cover each eye (68-point landmarks 36–47) with the skin just below it and draw a lid line."""
    out = rgb.copy()
    for idx in (slice(36, 42), slice(42, 48)):
        eye = points[idx]
        (x1, y1), (x2, y2) = eye.min(axis=0), eye.max(axis=0)
        w = x2 - x1
        left, right = int(x1 - 0.25 * w), int(x2 + 0.25 * w)
        top, bottom = int(y1 - 0.35 * w), int(y2 + 0.2 * w)
        h = bottom - top
        out[top:bottom, left:right] = rgb[bottom + 1:bottom + 1 + h, left:right]
        cv2.line(out, (int(x1), int((y1 + y2) / 2)), (int(x2), int((y1 + y2) / 2)), (40, 30, 25), 1)
    return out


def test_every_head_gives_its_result_type(faces: dict[str, Any]) -> None:
    types = {"age": Age, "gender": Gender, "expression": Expression, "pose": Pose, "eyes": Eyes,
             "liveness": Liveness, "landmarks68": Landmarks68}
    for face in faces.values():
        for name, cls in types.items():
            assert isinstance(face.head(name), cls), name
        d = json.loads(json.dumps(face.to_dict()))
        assert set(types) <= set(d)
    assert set(ANALYSIS_HEADS) == set(types)


def test_age_and_gender_on_real_people(faces: dict[str, Any]) -> None:
    blair, kidman = faces["Tony_Blair"], faces["Nicole_Kidman"]
    assert blair.head("gender").label == "male" and kidman.head("gender").label == "female"
    assert 0.5 <= blair.head("gender").probability <= 1.0
    for face in (blair, kidman):
        assert 25 <= face.head("age").years <= 60  # both were in their 30s–40s when photographed


def test_expression_order_happy_and_neutral(faces: dict[str, Any]) -> None:
    blair, kidman = faces["Tony_Blair"].head("expression"), faces["Nicole_Kidman"].head("expression")
    assert blair.label == "happy" and blair.probabilities["happy"] > 0.9  # a broad smile
    assert kidman.label == "neutral"
    assert tuple(blair.probabilities) == EXPRESSION_LABELS
    assert abs(sum(blair.probabilities.values()) - 1) < 1e-3


def test_pose_yaw_sign_roll_and_mirror(atlas: Any, faces: dict[str, Any], lfw_dir: Path) -> None:
    blair, kidman = faces["Tony_Blair"].head("pose"), faces["Nicole_Kidman"].head("pose")
    assert blair.yaw > 15 and abs(kidman.yaw) < 15 and abs(kidman.roll) < 10
    rgb = atlas.load(lfw(*BLAIR)).rgb
    mirrored = atlas.run(LoadedImage(rgb[:, ::-1].copy(), "mirror"), FaceRequest(faces="one", heads=("pose",)))
    assert mirrored.face.head("pose").yaw < -15
    img = atlas.load(lfw(*KIDMAN)).rgb
    m = cv2.getRotationMatrix2D((125, 125), 20, 1.0)  # 20° counter-clockwise in the image
    turned = cv2.warpAffine(img, m, (250, 250), borderMode=cv2.BORDER_REPLICATE)
    roll = atlas.run(LoadedImage(turned, "rot"), FaceRequest(faces="one", heads=("pose",))).face.head("pose").roll
    assert -32 < roll - kidman.roll < -10  # roll grows clockwise


def test_landmarks_sit_on_the_face(faces: dict[str, Any]) -> None:
    for face in faces.values():
        pts = face.head("landmarks68").points
        assert pts.shape == (68, 2)
        x1, y1, x2, y2 = face.box.to_list()
        assert (pts[:, 0] > x1 - 15).all() and (pts[:, 0] < x2 + 15).all()
        eyes68 = np.stack([pts[36:42].mean(0), pts[42:48].mean(0)])
        eyes5 = face.landmarks[:2]
        assert np.abs(eyes68 - eyes5).max() < 0.12 * (x2 - x1), (eyes68, eyes5)


def test_eyes_open_then_painted_shut(atlas: Any, faces: dict[str, Any]) -> None:
    kidman = faces["Nicole_Kidman"]
    assert kidman.head("eyes").open
    rgb = atlas.load(lfw(*KIDMAN)).rgb
    shut = paint_eyes_shut(rgb, kidman.head("landmarks68").points)
    eyes = atlas.run(LoadedImage(shut, "shut"), FaceRequest(faces="one", heads=("eyes",))).face.head("eyes")
    assert not eyes.open and max(eyes.left_open, eyes.right_open) < 0.5


def test_liveness_bona_fide_and_staged_replay(atlas: Any, faces: dict[str, Any], lfw_dir: Path) -> None:
    for face in faces.values():
        lv = face.head("liveness")
        assert lv.live and set(lv.scores) == {"minifasnet-v2", "faceplugin-liveness"}
    attack = screen_replay(lfw(*KIDMAN))
    lv = atlas.run(LoadedImage(attack, "replay"), FaceRequest(faces="one", heads=("liveness",))).face.head("liveness")
    assert not lv.live and lv.score < faces["Nicole_Kidman"].head("liveness").score


def test_analyze_facade_defaults_and_errors(atlas: Any, lfw_dir: Path) -> None:
    got = atlas.analyze(lfw(*KIDMAN))
    assert len(got) == 1 and set(DEFAULT_HEADS) <= set(got[0].heads) and got[0].template is None
    only = atlas.analyze(lfw(*KIDMAN), heads=("age",))
    assert set(only[0].heads) == {"age"}
    with pytest.raises(FaceAtlasError) as err:
        atlas.analyze(lfw(*KIDMAN), heads=("horoscope",))
    assert err.value.code == "invalid_input"


def test_verify_with_liveness_refuses_a_replay(atlas: Any, lfw_dir: Path) -> None:
    ok = atlas.verify(lfw(*KIDMAN), lfw("Nicole_Kidman", 2), liveness=True)
    assert ok.face_a.head("liveness").live
    with pytest.raises(FaceAtlasError) as err:
        atlas.verify(screen_replay(lfw(*KIDMAN)), lfw("Nicole_Kidman", 2), liveness=True, color="rgb")
    assert err.value.code == "spoof_suspected" and "spoof_suspected" in ERROR_CODES


def test_enrolment_gates(atlas: Any, tmp_path: Path, lfw_dir: Path) -> None:
    assert enrol_request().heads == ("embedding", "quality", "crop")  # plain enrolment runs no analysis head
    assert set(enrol_request("reject", QualityGates(max_yaw=20, require_eyes_open=True, liveness=True)).heads) >= {
        "pose", "eyes", "liveness"}
    rec = Recognizer(atlas, gallery_path=str(tmp_path / "g.db"))
    try:
        e = rec.enroll("c", "blair", [lfw(*BLAIR), lfw("Tony_Blair", 2)], multi_face="largest",
                       gates=QualityGates(max_yaw=20))
        assert [r.code for r in e.rejected] == ["pose_out_of_range"]
        kidman = atlas.run(lfw(*KIDMAN), FaceRequest(faces="one", heads=("landmarks68",))).face
        shut = paint_eyes_shut(atlas.load(lfw(*KIDMAN)).rgb, kidman.head("landmarks68").points)
        e = rec.enroll("c", "kidman", [LoadedImage(shut, "shut"), lfw(*KIDMAN)],
                       gates=QualityGates(require_eyes_open=True), labels=["shut", "open"])
        assert [r.code for r in e.rejected] == ["eyes_closed"] and e.accepted == ("open",)
        e = rec.enroll("c", "kidman", [LoadedImage(screen_replay(lfw("Nicole_Kidman", 3)), "replay"),
                                       lfw("Nicole_Kidman", 4)], liveness=True, labels=["replay", "real"])
        assert [r.code for r in e.rejected] == ["spoof_suspected"] and e.accepted == ("real",)
        assert {"pose_out_of_range", "eyes_closed"} <= set(ERROR_CODES)
    finally:
        rec.close()


def test_cli_analyze_json_and_errors(lfw_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "faceatlas", "analyze", str(lfw(*KIDMAN)), "--json",
                           "--heads", "age,gender,liveness"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    face = json.loads(proc.stdout)["faces"][0]
    assert face["gender"]["label"] == "female" and 20 < face["age"]["years"] < 70 and face["liveness"]["live"]
    assert "pose" not in face and "template" not in face
    human = subprocess.run([sys.executable, "-m", "faceatlas", "analyze", str(lfw(*BLAIR))],
                           capture_output=True, text=True, timeout=120)
    assert human.returncode == 0 and "expression=happy" in human.stdout and "yaw=+" in human.stdout
    bad = subprocess.run([sys.executable, "-m", "faceatlas", "analyze", str(lfw(*BLAIR)), "--heads", "zodiac"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid_input" in bad.stderr


def test_heads_resolve_without_importing_the_package(lfw_dir: Path) -> None:
    code = ("import sys; from faceatlas import FaceAtlas; from faceatlas.pipeline import FaceRequest; "
            "assert 'faceatlas.analysis' not in sys.modules; "
            f"f = FaceAtlas().run({str(lfw(*BLAIR))!r}, FaceRequest(faces='one', heads=('pose',))).face; "
            "print(f.head('pose').yaw)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) > 15
