"""Video analysis end to end on a short clip generated from LFW stills: library API, CLI, outputs and bad sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw
from support.video_synth import Appearance, Scene, make_sprite, render_frame, write_video

from faceatlas.errors import FaceAtlasError
from faceatlas.video import VideoSource, analyze, analyze_frames

PEOPLE = {"Colin_Powell": 1, "Tony_Blair": 1}
ENROL = (2, 3, 4, 5)
FPS = 8.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m faceatlas ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "faceatlas", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def one_line_error(proc: subprocess.CompletedProcess[str], code: str) -> None:
    """Exit 2 with exactly one ``faceatlas: error [code]`` line on stderr."""
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"faceatlas: error [{code}]")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, atlas: Any, lfw_dir: Path) -> dict[str, Any]:
    """A 3 s, 8 fps, 480x270 clip: Powell walks right while Blair drifts left; a gallery enrolling both."""
    from faceatlas.gallery import Gallery

    folder = tmp_path_factory.mktemp("video")
    sprites = {}
    for name, number in PEOPLE.items():
        img = atlas.load(lfw(name, number))
        face, _ = atlas.template(img, select="central")
        sprites[name] = [make_sprite(img.rgb, face.box)]
    scene = Scene(480, 270, FPS, 3.0, (
        Appearance("Colin_Powell", 0, ((0.0, 90.0, 110.0, 80.0), (3.0, 260.0, 120.0, 90.0))),
        Appearance("Tony_Blair", 0, ((0.0, 400.0, 150.0, 90.0), (3.0, 360.0, 140.0, 80.0))),
    ), ())
    video = folder / "clip.mp4"
    truth = write_video(scene, sprites, video)
    gallery_path = folder / "gallery.db"
    with Gallery.open(gallery_path) as g:
        g.create_collection("people", atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        for name in PEOPLE:
            g.add_person("people", name, name.replace("_", " "))
            g.add_samples("people", name, [atlas.template(lfw(name, n))[0].template for n in ENROL])
    return {"video": video, "truth": truth, "gallery": gallery_path, "scene": scene, "sprites": sprites}


def _check_events(events: list[dict[str, Any]], frames: int) -> None:
    """Two tracks, each started, identified as the right person and ended with a span and best frame."""
    assert all({"event", "track", "t"} <= set(e) for e in events)
    starts = [e for e in events if e["event"] == "track_start"]
    ends = {e["track"]: e for e in events if e["event"] == "track_end"}
    assert len(starts) == 2 and set(ends) == {s["track"] for s in starts}
    assert sorted(e["person"] for e in ends.values()) == sorted(PEOPLE)
    for e in ends.values():
        assert 0.0 <= e["start"] < e["end"] <= 3.0 and 0 <= e["best_frame"] < frames
        assert e["confidence"] > 0.5 and len(e["best_box"]) == 4
    first_id = {e["track"]: e["person"] for e in events if e["event"] == "identity" and not e["changed"]}
    assert first_id == {t: ends[t]["person"] for t in ends}
    kinds = [e["event"] for e in events if e["track"] == starts[0]["track"]]
    assert kinds[0] == "track_start" and kinds[-1] == "track_end"


def test_synthetic_clip_truth(clip: dict[str, Any]) -> None:
    truth = clip["truth"]
    assert len(truth) == 24 and all(len(faces) == 2 for faces in truth)
    rgb, faces = render_frame(clip["scene"], clip["sprites"], 0)
    assert rgb.shape == (270, 480, 3) and faces[0].visible > 0.9


@pytest.fixture(scope="module")
def results(clip: dict[str, Any], atlas: Any) -> list[Any]:
    """Per-frame results of the library pipeline on the clip, every frame analysed."""
    return list(analyze_frames(clip["video"], atlas, clip["gallery"], "people", fps=None))


def test_library_events(results: list[Any]) -> None:
    events = [e for r in results for e in r.events]
    _check_events([e.to_dict() for e in events], 24)
    end = next(e for e in events if e.kind == "track_end")
    assert end.summary is not None and end.summary.identity == end.person and end.summary.decided
    assert end.summary.best is not None and end.summary.to_dict()["sightings"] == len(end.summary.faces)


def test_frame_results_and_accuracy(clip: dict[str, Any], results: list[Any]) -> None:
    assert results[-1].final and len(results) == 25
    correct = total = 0
    for r in results[:-1]:
        for f in r.faces:
            if f.track is None or f.identity is None:
                continue
            truth = min(clip["truth"][r.frame], key=lambda g: -g.box.iou(f.box))
            total += 1
            correct += f.identity.person == truth.identity
    assert total >= 30 and correct == total


def test_analyze_yields_events(clip: dict[str, Any], atlas: Any) -> None:
    events = list(analyze(clip["video"], atlas, clip["gallery"], "people", max_seconds=1.0))
    assert [e.kind for e in events].count("track_start") == 2 and events[-1].kind == "track_end"


def test_tracking_only_and_sampling(clip: dict[str, Any], atlas: Any) -> None:
    events = [e.to_dict() for e in analyze(clip["video"], atlas, fps=4.0)]
    assert [e["event"] for e in events].count("track_start") == 2
    assert all("person" not in e for e in events)
    with VideoSource(clip["video"]) as src:
        assert src.info.kind == "file" and (src.info.width, src.info.height) == (480, 270)
        assert src.info.frames == 24 and src.info.fps == pytest.approx(FPS)
        times = [f.t for f in src.frames(fps=4.0)]
    assert len(times) == 12 and np.allclose(np.diff(times), 0.25)


def test_live_reader_keeps_the_newest_frame(clip: dict[str, Any]) -> None:
    import time

    with VideoSource(clip["video"]) as src:  # a file read through the live-stream path (reader thread)
        frames = []
        for f in src._live_frames(None, None):
            frames.append(f)
            time.sleep(0.05)  # slower than the reader: frames get dropped, never queued
    assert 1 <= len(frames) <= 24 and frames[0].index == 0
    assert all(b.index > a.index and b.t >= a.t for a, b in zip(frames, frames[1:], strict=False))


def test_cli_json_annotate_and_redact(clip: dict[str, Any], tmp_path: Path, atlas: Any) -> None:
    annotated, redacted = tmp_path / "annotated.mp4", tmp_path / "redacted.avi"
    proc = run("video", str(clip["video"]), "--gallery", str(clip["gallery"]), "--collection", "people", "--json",
               "--fps", "0", "--annotate", str(annotated), "--redact", "all", "--out", str(redacted))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    _check_events(events, 24)
    import cv2

    for path in (annotated, redacted):
        cap = cv2.VideoCapture(str(path))
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
        cap.set(cv2.CAP_PROP_POS_FRAMES, 12)
        ok, frame = cap.read()
        assert ok
        cap.release()
        if path == redacted:
            assert atlas.detect(np.ascontiguousarray(frame[:, :, ::-1]), color="rgb") == []


def test_cli_human_output(clip: dict[str, Any]) -> None:
    proc = run("video", str(clip["video"]), "--gallery", str(clip["gallery"]), "-c", "people", "--max-seconds", "1.5")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "track 1 started" in out and "Colin_Powell" in out and "Tony_Blair" in out and "ended" in out
    assert out.strip().splitlines()[-1].startswith("13 frames analysed")


def _zero_frame_video(path: Path) -> Path:
    """A container with no frames (OpenCV writer opened and closed)."""
    import cv2

    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48)).release()
    return path


def test_bad_sources_library(tmp_path: Path, atlas: Any) -> None:
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = {
        tmp_path / "missing.mp4": "video_not_found",
        tmp_path / "text.mp4": "video_unreadable",
        tmp_path: "video_unreadable",
        tmp_path / "empty.mp4": "video_empty",
        _zero_frame_video(tmp_path / "zero.avi"): "video_empty",
        _zero_frame_video(tmp_path / "zero.mp4"): "video_empty",
        "rtsp://127.0.0.1:9/none": "video_unreadable",
    }
    for source, code in cases.items():
        with pytest.raises(FaceAtlasError) as err:
            list(analyze(source, atlas))
        assert err.value.code == code, (source, err.value)


def test_bad_sources_cli(tmp_path: Path) -> None:
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    one_line_error(run("video", str(tmp_path / "missing.mp4")), "video_not_found")
    one_line_error(run("video", str(tmp_path / "text.mp4"), "--json"), "video_unreadable")
    one_line_error(run("video", str(_zero_frame_video(tmp_path / "zero.avi"))), "video_empty")


def test_bad_options(clip: dict[str, Any], atlas: Any, tmp_path: Path) -> None:
    with pytest.raises(FaceAtlasError) as err:
        list(analyze(clip["video"], atlas, redact_mode="all"))
    assert err.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as err:
        list(analyze(clip["video"], atlas, clip["gallery"], "nobody"))
    assert err.value.code == "not_found"
    with pytest.raises(FaceAtlasError) as err:
        list(analyze(clip["video"], atlas, annotate_to=tmp_path / "out.gif"))
    assert err.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as err:
        list(analyze(clip["video"], atlas, annotate_to=tmp_path / "no" / "such" / "dir.mp4"))
    assert err.value.code == "video_write_failed"
