"""Face analysis on every surface: identify with liveness, pose in the quality score, REST (/v1/analyze, heads= and
liveness= on verify / identify / enrol, error statuses) and the CLI gates (--max-yaw, --liveness, ...)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import lfw  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from test_analysis import BLAIR, KIDMAN, screen_replay  # noqa: E402

from faceatlas.images import LoadedImage  # noqa: E402
from faceatlas.pipeline import FaceRequest  # noqa: E402
from faceatlas.quality import pose_frontal  # noqa: E402
from faceatlas.recognition import Recognizer  # noqa: E402
from faceatlas.server.app import create_app  # noqa: E402
from faceatlas.server.errors import status_for  # noqa: E402
from faceatlas.server.service import Service  # noqa: E402
from faceatlas.server.settings import ServerSettings  # noqa: E402


@pytest.fixture(scope="module")
def replay(lfw_dir: Path) -> np.ndarray:
    """A staged phone-screen replay of Nicole Kidman (RGB); the liveness head judges it a spoof."""
    return screen_replay(lfw(*KIDMAN))


@pytest.fixture(scope="module")
def replay3(lfw_dir: Path) -> np.ndarray:
    """A staged replay of another Kidman photo that passes the enrolment gates except liveness."""
    return screen_replay(lfw("Nicole_Kidman", 3))


def _png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return bytes(buf)


def _jpg(person: tuple[str, int]) -> bytes:
    """The bytes of an LFW photo."""
    return lfw(*person).read_bytes()


# -- library ----------------------------------------------------------------------------------------------------------


def test_identify_with_liveness_marks_and_skips_a_replay(atlas: Any, tmp_path: Path, replay: np.ndarray) -> None:
    rec = Recognizer(atlas, gallery_path=str(tmp_path / "g.db"))
    try:
        rec.enroll("c", "kidman", [lfw("Nicole_Kidman", 2), lfw("Nicole_Kidman", 4)])
        plain = rec.identify("c", LoadedImage(replay, "replay"))
        assert plain[0].live is None and plain[0].matches  # without the check the replay is searched
        assert "live" not in plain[0].to_dict()
        checked = rec.identify("c", LoadedImage(replay, "replay"), liveness=True)
        assert checked[0].live is False and checked[0].decision is None and checked[0].matches == ()
        d = checked[0].to_dict()
        assert d["live"] is False and d["person"] is None and d["liveness"]["live"] is False
        real = rec.identify("c", lfw(*KIDMAN), liveness=True)
        assert real[0].live is True and real[0].decision is not None and real[0].decision.external_id == "kidman"
    finally:
        rec.close()


def test_quality_folds_pose_in_only_when_asked(atlas: Any, lfw_dir: Path) -> None:
    plain = atlas.run(lfw(*BLAIR), FaceRequest(faces="one", heads=("quality",))).face
    with_pose = atlas.run(lfw(*BLAIR), FaceRequest(faces="one", heads=("quality", "pose"))).face
    q0, q1, pose = plain.head("quality"), with_pose.head("quality"), with_pose.head("pose")
    assert q0.frontal_from == "landmarks" and q1.frontal_from == "pose"
    assert q1.frontal == pytest.approx(pose_frontal(pose.yaw, pose.pitch))
    assert q1.frontal < 0.85  # Blair's head is turned ~30°
    assert (q1.size, q1.sharpness, q1.confidence) == (q0.size, q0.sharpness, q0.confidence)
    assert with_pose.quality == pytest.approx(q1.size * q1.sharpness * q1.frontal * q1.confidence)
    # the default (enrolment) score is the landmark proxy, unchanged
    again = atlas.run(lfw(*BLAIR), FaceRequest(faces="one", heads=("embedding", "quality"))).face
    assert again.quality == plain.quality
    assert pose_frontal(0, 0) == 1.0 and pose_frontal(90, 0) == 0.0 and pose_frontal(-45, 0) == pytest.approx(0.5)


# -- REST -------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(atlas: Any, tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[TestClient]:
    """An app without auth (loopback test client) on a fresh gallery, sharing the session's models."""
    from faceatlas.gallery import Gallery

    settings = ServerSettings(auth=False, rate_limit=0.0, warmup=False)
    svc = Service(settings, atlas=atlas, gallery=Gallery.open(tmp_path_factory.mktemp("g") / "g.db"))
    with TestClient(create_app(settings, service=svc)) as c:
        yield c
    svc.close()


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error response and return its error object."""
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


def test_rest_analyze(client: TestClient) -> None:
    r = client.post("/v1/analyze", files={"image": ("kidman.jpg", _jpg(KIDMAN), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["heads"] == ["age", "gender", "expression", "pose", "eyes", "liveness"]
    face = body["faces"][0]
    assert face["gender"]["label"] == "female" and face["liveness"]["live"] and face["eyes"]["open"]
    assert "template" not in face and "landmarks68" not in face and body["timings_ms"]["age"] > 0
    some = client.post("/v1/analyze", files={"image": _jpg(BLAIR)}, data={"heads": "pose, expression"}).json()
    assert set(some["faces"][0]) >= {"pose", "expression"} and "age" not in some["faces"][0]
    assert some["faces"][0]["pose"]["yaw"] > 15 and some["faces"][0]["expression"]["label"] == "happy"
    raw = client.post("/v1/analyze?heads=landmarks68", content=_jpg(KIDMAN), headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200 and len(raw.json()["faces"][0]["landmarks68"]["points"]) == 68
    b64 = base64.b64encode(_jpg(KIDMAN)).decode()
    as_json = client.post("/v1/analyze", json={"image": b64, "heads": ["age"]})
    assert as_json.status_code == 200 and set(as_json.json()["heads"]) == {"age"}
    _error(client.post("/v1/analyze", files={"image": _jpg(KIDMAN)}, data={"heads": "age,horoscope"}), 422,
           "invalid_request")
    _error(client.post("/v1/analyze", json={"image": b64, "heads": [1]}), 422, "invalid_request")


def test_rest_verify_heads_and_liveness(client: TestClient, replay: np.ndarray) -> None:
    ok = client.post("/v1/verify", files={"image_a": _jpg(KIDMAN), "image_b": _jpg(("Nicole_Kidman", 2))},
                     data={"heads": "age,gender", "liveness": "true"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["same"] and body["face_a"]["gender"]["label"] == "female" and body["face_b"]["age"]["years"] > 20
    assert body["face_a"]["liveness"]["live"]
    plain = client.post("/v1/verify", files={"image_a": _png(replay), "image_b": _jpg(("Nicole_Kidman", 2))})
    assert plain.status_code == 200 and "liveness" not in plain.json()["face_a"]
    err = _error(client.post("/v1/verify", files={"image_a": _png(replay), "image_b": _jpg(("Nicole_Kidman", 2))},
                             data={"liveness": "true"}), 422, "spoof_suspected")
    assert "certified" in err["message"]
    _error(client.post("/v1/verify", files={"image_a": _jpg(KIDMAN), "image_b": _jpg(KIDMAN)},
                       data={"liveness": "maybe"}), 422, "invalid_request")


def test_rest_enrol_and_identify_with_heads_and_liveness(client: TestClient, replay: np.ndarray,
                                                         replay3: np.ndarray) -> None:
    files = [("images", ("replay.png", _png(replay3), "image/png")),
             ("images", ("real.jpg", _jpg(("Nicole_Kidman", 4)), "image/jpeg"))]
    r = client.post("/v1/collections/live/enroll", files=files,
                    data={"person": "kidman", "liveness": "true", "heads": "gender"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == ["real.jpg"] and [x["code"] for x in body["rejected"]] == ["spoof_suspected"]
    assert body["analysis"] == [{"image": "real.jpg", "gender": body["analysis"][0]["gender"]}]
    assert body["analysis"][0]["gender"]["label"] == "female"
    err = _error(client.post("/v1/collections/live/enroll", files=[("images", ("replay.png", _png(replay3), "image/png"))],
                             data={"person": "kidman", "liveness": "true"}), 422, "enrolment_rejected")
    assert err["details"]["rejected"][0]["code"] == "spoof_suspected"
    one = client.post("/v1/collections/live/enroll", files=[("images", ("blair.jpg", _jpg(BLAIR), "image/jpeg"))],
                      data={"person": "blair", "multi_face": "largest", "liveness": "true", "heads": "pose"})
    assert one.status_code == 200 and one.json()["analysis"][0]["pose"]["yaw"] > 15
    who = client.post("/v1/collections/live/identify", files={"image": _jpg(KIDMAN)},
                      data={"heads": "age", "liveness": "true"})
    assert who.status_code == 200, who.text
    face = who.json()["faces"][0]
    assert face["person"] == "kidman" and face["live"] is True and face["age"]["years"] > 20
    _error(client.post("/v1/collections/live/identify", files={"image": _png(replay)}, data={"liveness": "true"}),
           422, "spoof_suspected")
    unchecked = client.post("/v1/collections/live/identify", files={"image": _png(replay)})
    assert unchecked.status_code == 200 and unchecked.json()["faces"][0]["candidates"]  # the check is opt-in


def test_analysis_codes_are_422() -> None:
    assert {c: status_for(c) for c in ("pose_out_of_range", "eyes_closed", "spoof_suspected")} == {
        "pose_out_of_range": 422, "eyes_closed": 422, "spoof_suspected": 422}


# -- CLI --------------------------------------------------------------------------------------------------------------


def test_cli_gates_and_liveness(tmp_path: Path, replay: np.ndarray, replay3: np.ndarray) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli import app

    runner = CliRunner()
    gallery = str(tmp_path / "g.db")
    fake = tmp_path / "replay.png"
    fake.write_bytes(_png(replay))
    fake3 = tmp_path / "replay3.png"
    fake3.write_bytes(_png(replay3))
    r = runner.invoke(app, ["enroll", str(lfw(*BLAIR)), str(lfw("Tony_Blair", 2)), "-c", "c", "-p", "blair",
                            "--gallery", gallery, "--multi-face", "largest", "--max-yaw", "20", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["code"] for x in out["rejected"]] == ["pose_out_of_range"]
    r = runner.invoke(app, ["enroll", str(fake3), str(lfw("Nicole_Kidman", 2)), "-c", "c", "-p", "kidman",
                            "--gallery", gallery, "--liveness", "--require-eyes-open", "--max-pitch", "40", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["code"] for x in out["rejected"]] == ["spoof_suspected"] and len(out["sample_ids"]) == 1
    folder = tmp_path / "people"
    (folder / "kidman").mkdir(parents=True)
    (folder / "kidman" / "replay.png").write_bytes(_png(replay3))
    (folder / "kidman" / "real.jpg").write_bytes(_jpg(("Nicole_Kidman", 5)))
    (folder / "powell").mkdir()
    (folder / "powell" / "a.jpg").write_bytes(_jpg(("Colin_Powell", 1)))
    r = runner.invoke(app, ["enroll-dir", str(folder), "-c", "d", "--gallery", gallery, "--workers", "1",
                            "--liveness"])
    assert r.exit_code == 0 and "spoof_suspected 1" in r.stdout, r.output
    r = runner.invoke(app, ["identify", str(fake), str(lfw(*KIDMAN)), "-c", "c", "--gallery", gallery, "--liveness",
                            "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["faces"][0]["live"] is False and rows[0]["faces"][0]["person"] is None
    assert rows[1]["faces"][0]["live"] is True and rows[1]["faces"][0]["person"] == "kidman"
    text = runner.invoke(app, ["identify", str(fake), "-c", "c", "--gallery", gallery, "--liveness"])
    assert "spoof?" in text.stdout
    r = runner.invoke(app, ["verify", str(fake), str(lfw("Nicole_Kidman", 2)), "--liveness"])
    assert r.exit_code == 2 and "spoof_suspected" in r.output
    r = runner.invoke(app, ["verify", str(lfw(*KIDMAN)), str(lfw("Nicole_Kidman", 2)), "--liveness"])
    assert r.exit_code == 0 and "same person" in r.stdout


# -- video ------------------------------------------------------------------------------------------------------------


def test_track_heads_average_per_head() -> None:
    from faceatlas.analysis import Age, Gender, Liveness, Pose
    from faceatlas.analysis.tracks import TrackHeads, describe

    acc = TrackHeads(("age", "gender", "pose", "liveness", "landmarks68"))
    assert acc.heads == ("age", "gender", "pose", "liveness")  # landmarks move with the face: not averaged
    for years, g, yaw, live in ((30, Gender("female", 0.9), 10.0, 0.9), (40, Gender("male", 0.6), -4.0, 0.1)):
        acc.add(7, {"age": Age(years), "gender": g, "pose": Pose(yaw, 0.0, 2.0),
                    "liveness": Liveness(live, live >= 0.24, 0.24, "m")})
    got = acc.pop(7)
    assert got is not None and acc.pop(7) is None and acc.pop(8) is None
    assert got["age"] == {"years": 35.0, "sightings": 2}
    assert got["gender"]["label"] == "female" and got["gender"]["probability"] == pytest.approx(0.65)  # (0.9+0.4)/2
    assert got["pose"]["yaw"] == 3.0 and got["pose"]["roll"] == 2.0
    assert got["liveness"]["score"] == 0.5 and got["liveness"]["live"] and got["liveness"]["live_share"] == 0.5
    assert "age≈35" in describe(got) and "2 sightings" in describe(got)


def test_video_tracks_carry_averaged_heads(atlas: Any, tmp_path: Path, lfw_dir: Path) -> None:
    from typer.testing import CliRunner

    from faceatlas.cli import app
    from faceatlas.video import analyze

    path = tmp_path / "powell.avi"
    frame = cv2.resize(cv2.imread(str(lfw("Colin_Powell", 1))), (320, 320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 320))
    for _ in range(12):
        writer.write(frame)
    writer.release()
    ends = [e for e in analyze(str(path), atlas, heads=("age", "gender", "pose", "liveness")) if e.kind == "track_end"]
    assert len(ends) == 1 and ends[0].analysis is not None
    got = ends[0].to_dict()["analysis"]
    assert got["gender"]["label"] == "male" and 30 < got["age"]["years"] < 80 and got["liveness"]["live"]
    assert got["age"]["sightings"] >= 1 and set(got) == {"age", "gender", "pose", "liveness"}
    plain = [e.to_dict() for e in analyze(str(path), atlas) if e.kind == "track_end"]
    assert "analysis" not in plain[0]
    r = CliRunner().invoke(app, ["video", str(path), "--heads", "age,gender", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    end = next(x for x in rows if x["event"] == "track_end")
    assert set(end["analysis"]) == {"age", "gender"}
    text = CliRunner().invoke(app, ["video", str(path), "--heads", "gender"])
    assert text.exit_code == 0 and "gender=male" in text.stdout
    bad = CliRunner().invoke(app, ["video", str(path), "--heads", "landmarks68"])
    assert bad.exit_code == 2 and "invalid_input" in bad.output
