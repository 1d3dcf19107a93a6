"""Video on generated footage with scene cuts: a stranger at a named person's place never gets the name (issue #16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import lfw
from support.footage import Footage, Shot, Walk, photo_clip, render, write
from support.video_synth import make_sprite

from faceatlas.video import TrackerConfig, analyze_frames
from faceatlas.video.summary import appearance_table

ENROLLED = "Colin_Powell"
STRANGER = "Ariel_Sharon"
FPS = 8.0


def _sprite(atlas: Any, name: str, number: int) -> Any:
    """A sprite of one LFW photo."""
    img = atlas.load(lfw(name, number))
    face, _ = atlas.template(img, select="central")
    return make_sprite(img.rgb, face.box, f"{name}_{number}")


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory, atlas: Any) -> dict[str, Any]:
    """Three shots of 480x270 at 8 fps: Powell, cut to the stranger at the same place, cut back to Powell elsewhere."""
    from faceatlas.gallery import Gallery

    folder = tmp_path_factory.mktemp("footage")
    sprites = {ENROLLED: [_sprite(atlas, ENROLLED, 1), _sprite(atlas, ENROLLED, 6)], STRANGER: [_sprite(atlas, STRANGER, 1)]}
    cam = ((0.0, 240.0, 135.0, 1.0), (9.0, 240.0, 135.0, 1.0))
    shots = (
        Shot(0.0, 2.0, (Walk(ENROLLED, 1, ((0.0, 200.0, 130.0, 90.0), (2.0, 230.0, 135.0, 95.0)), (0,),
                             ((0.5, 1.5, 0.7),)),), cam, 1),
        Shot(2.0, 4.0, (Walk(STRANGER, 2, ((2.0, 232.0, 135.0, 95.0), (4.0, 236.0, 138.0, 95.0))),), cam, 2,
             tint=(1.1, 0.95, 0.85)),
        Shot(4.0, 5.5, (Walk(ENROLLED, 3, ((4.0, 330.0, 120.0, 85.0), (5.5, 320.0, 125.0, 85.0)), (1,), flip=True),),
             cam, 1, ((4.0, 1.0), (5.5, 0.7))),
    )
    clip = Footage(480, 270, FPS, shots, jpeg_quality=50)
    video = folder / "footage.mp4"
    truth = write(clip, sprites, video)
    gallery = folder / "gallery.db"
    with Gallery.open(gallery) as g:
        g.create_collection("people", atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        g.add_person("people", ENROLLED, "Colin Powell")
        g.add_samples("people", ENROLLED, [atlas.template(lfw(ENROLLED, n))[0].template for n in (2, 3, 4, 5)])
    return {"video": video, "truth": truth, "clip": clip, "sprites": sprites, "gallery": gallery, "folder": folder}


def test_generator_truth(footage: dict[str, Any]) -> None:
    clip, truth = footage["clip"], footage["truth"]
    assert clip.cut_frames() == [16, 32] and len(truth) == 44
    assert {t[0].identity for t in truth[16:32]} == {STRANGER} and all(len(t) == 1 for t in truth)
    assert [t[0].appearance for t in truth[::16]] == [1, 2, 3]
    rgb, faces = render(clip, footage["sprites"], 8)
    assert rgb.shape == (270, 480, 3) and faces[0].visible > 0.9


def _faces(results: list[Any], truth: list[Any]) -> list[tuple[str, Any]]:
    """(true identity, frame face) for every tracked face (one face per frame in this clip)."""
    return [(truth[r.frame][0].identity, f) for r in results if not r.final for f in r.faces if f.track is not None]


def test_cut_to_a_stranger_never_carries_the_name(footage: dict[str, Any], atlas: Any) -> None:
    results = list(analyze_frames(footage["video"], atlas, footage["gallery"], "people", fps=None))
    assert [r.frame for r in results if r.cut] == [16, 32]
    faces = _faces(results, footage["truth"])
    named = [(who, f.identity.person) for who, f in faces if f.identity is not None and f.identity.person is not None]
    assert named and all(who == ENROLLED and person == ENROLLED for who, person in named)
    stranger = [f for who, f in faces if who == STRANGER]
    assert stranger and all(f.identity is None or f.identity.anonymous for f in stranger)
    assert {f.track for f in stranger}.isdisjoint({f.track for who, f in faces if who == ENROLLED})
    events = [e.to_dict() for r in results for e in r.events]
    ends = [e for e in events if e["event"] == "track_end"]
    assert {e["person"] for e in ends} == {ENROLLED, None}
    assert all(e["segments"] and e["segments"][0][0] == e["start"] for e in ends)
    assert any(e.get("anonymous", "").startswith("unknown-") for e in ends)
    json.dumps(events)
    table = appearance_table(e for r in results for e in r.events)
    powell = next(row for row in table if row.person == ENROLLED)
    assert powell.label == "Colin Powell" and powell.seconds > 2.0 and len(powell.ranges) == 2  # before and after the cut


def test_embedding_skips_faces_on_clear_tracks(footage: dict[str, Any], atlas: Any) -> None:
    from faceatlas.gallery import Gallery
    from faceatlas.video import VideoAnalyzer, VideoSource

    with VideoSource(footage["video"]) as src:
        frames = [vf for vf in src.frames() if vf.index < 16]  # the first shot
    runs = {}
    with Gallery.open(footage["gallery"], create=False) as g:
        for every in (1, 4):
            an = VideoAnalyzer(atlas, g, "people", tracker=TrackerConfig(embed_every=every, embed_gain=1.0))
            labels = [f.identity.person if f.identity else None for vf in frames
                      for f in an.process(vf.rgb, vf.t, vf.index).faces]
            runs[every] = (an.embedded, an.detections, labels)
    assert runs[4][0] < 0.6 * runs[1][0] and runs[4][1] == runs[1][1]
    assert runs[4][2][-1] == runs[1][2][-1] == ENROLLED


def test_legacy_tracker_is_still_reachable(footage: dict[str, Any], atlas: Any) -> None:
    results = list(analyze_frames(footage["video"], atlas, footage["gallery"], "people", fps=None, tracker="legacy"))
    assert not any(r.cut for r in results) and any(e.kind == "track_start" for r in results for e in r.events)


def test_photo_sequence_is_one_named_track(atlas: Any, tmp_path: Path) -> None:
    from faceatlas.gallery import Gallery

    sprites = [_sprite(atlas, "Tony_Blair", n) for n in (1, 4, 7)]
    clip = photo_clip("Tony_Blair", 3, seconds_per_photo=0.75, fps=8.0, width=320, height=180, face_px=80.0)
    write(clip, {"Tony_Blair": sprites}, tmp_path / "blair.mp4")
    with Gallery.open(tmp_path / "g.db") as g:
        g.create_collection("people", atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        g.add_person("people", "Tony_Blair", "Tony Blair")
        g.add_samples("people", "Tony_Blair", [atlas.template(lfw("Tony_Blair", n))[0].template for n in (2, 3, 5)])
        ends = [e for r in analyze_frames(tmp_path / "blair.mp4", atlas, g, "people", fps=None)
                for e in r.events if e.kind == "track_end"]
    blair = [e for e in ends if e.person == "Tony_Blair"]
    assert len(blair) == 1 and blair[0].summary is not None and blair[0].summary.duration >= 1.5


def test_unknown_track_can_be_promoted(footage: dict[str, Any], atlas: Any, tmp_path: Path) -> None:
    import shutil

    from faceatlas.errors import NotFoundError
    from faceatlas.gallery import Gallery
    from faceatlas.video import VideoAnalyzer, VideoSource

    shutil.copy(footage["gallery"], tmp_path / "g.db")
    with VideoSource(footage["video"]) as src:
        frames = [vf for vf in src.frames() if 16 <= vf.index < 32]  # the stranger's shot
    with Gallery.open(tmp_path / "g.db", create=False) as g:
        first = VideoAnalyzer(atlas, g, "people")
        events = [e for vf in frames for e in first.process(vf.rgb, vf.t, vf.index).events] + list(first.finish().events)
        anonymous = {e.decision.anonymous for e in events if e.kind == "track_end" and e.decision is not None} - {None}
        assert len(anonymous) == 1
        label = anonymous.pop()
        assert label is not None and label.startswith("unknown-")
        first.promote(label, "ariel", "Ariel Sharon")
        with pytest.raises(NotFoundError):
            first.promote(label, "ariel")  # promoted once
        second = VideoAnalyzer(atlas, g, "people")
        named = [f.identity.person for vf in frames for f in second.process(vf.rgb, vf.t, vf.index).faces if f.identity]
    assert named and named[-1] == "ariel"


@pytest.mark.slow  # three CLI processes, each loading the models
def test_cli_tracker_options_and_summary(footage: dict[str, Any]) -> None:
    import os
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "faceatlas", "video", str(footage["video"]), "--gallery",
                               str(footage["gallery"]), "-c", "people", "--fps", "0", *args],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)

    proc = cli("--json", "--summary", "--embed-every", "3")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1]["event"] == "summary"
    labels = {row["label"] for row in lines[-1]["rows"]}
    assert "Colin Powell" in labels and any(label.startswith("unknown-") for label in labels)
    text = cli("--summary", "--tracker", "legacy")
    assert text.returncode == 0 and "Colin Powell:" in text.stdout and "s on screen" in text.stdout
    bad = cli("--tracker", "sort")
    assert bad.returncode == 2 and "--tracker must be bytetrack or legacy" in bad.stderr
