"""The default (ByteTrack-style) face tracker, scene cuts and identity hysteresis, on synthetic detections."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_video_tracker import FPS, FakeGallery, Run, _evidence, det, noisy, unit

from faceatlas.errors import FaceAtlasError
from faceatlas.types import Box
from faceatlas.video.bytetrack import AppearanceGates, ByteFaceTracker
from faceatlas.video.cuts import SceneCutDetector
from faceatlas.video.identity import HoldingResolver
from faceatlas.video.kalman import BoxKalman
from faceatlas.video.tracker import TrackerConfig, TrackerInput

#: sface-like gates (the LFW calibration's FAR 1e-1 / 1e-3 / 1e-4 cosines).
GATES = AppearanceGates(0.20, 0.36, 0.42)


def tracker(**kw: Any) -> ByteFaceTracker:
    """A default-configured tracker with sface-like gates."""
    return ByteFaceTracker(TrackerConfig(**kw), GATES)


def test_kalman_follows_constant_motion() -> None:
    kf = BoxKalman(Box(0, 0, 50, 50), 0.0)
    for k in range(1, 8):
        kf.update(Box(10 * k, 0, 10 * k + 50, 50), k / FPS, 1.0)
    pred = kf.predict_at(0.8, 1.0)
    assert pred.center[0] == pytest.approx(105.0, abs=4.0) and pred.width == pytest.approx(50.0, abs=3.0)
    assert kf.predict_at(5.0, 1.0).center[0] < 220.0  # extrapolation is capped at the horizon


def test_crossing_faces_keep_their_ids() -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng), unit(rng)
    run = Run(tracker())  # type: ignore[arg-type]
    for k in range(30):
        run.step({"a": det(100 + 12 * k, 200, noisy(a, rng)), "b": det(460 - 12 * k, 205, noisy(b, rng))})
    assert len(run.ids("a")) == 1 and len(run.ids("b")) == 1 and run.ids("a") != run.ids("b")


def test_short_occlusion_resumes_the_track() -> None:
    rng = np.random.default_rng(2)
    a = unit(rng)
    run = Run(tracker())  # type: ignore[arg-type]
    for k in range(20):
        run.step({} if 8 <= k < 13 else {"a": det(100 + 5 * k, 200, noisy(a, rng))})
    assert len(run.ids("a")) == 1 and not run.started[1:]


def test_lost_track_is_not_taken_by_a_stranger_in_its_place() -> None:
    rng = np.random.default_rng(3)
    a, s = unit(rng), unit(rng)
    run = Run(tracker())  # type: ignore[arg-type]
    for _ in range(10):
        run.step({"a": det(300, 200, noisy(a, rng))})
    run.step({})
    for _ in range(10):
        run.step({"s": det(305, 200, noisy(s, rng))})
    assert run.ids("a").isdisjoint(run.ids("s")) and len(run.ids("s")) == 1


def test_scene_cut_ends_every_track() -> None:
    rng = np.random.default_rng(4)
    a, s = unit(rng), unit(rng)
    trk = tracker()
    run = Run(trk)  # type: ignore[arg-type]
    for _ in range(10):
        run.step({"a": det(300, 200, noisy(a, rng))})
    ended = trk.scene_cut(run.frame / FPS)
    assert [tr.id for tr in ended] == list(run.ids("a")) and trk.active_ids == trk.lost_ids == []
    for _ in range(5):  # a stranger exactly where a was: a new track
        run.step({"s": det(300, 200, noisy(s, rng))})
    assert run.ids("s").isdisjoint(run.ids("a")) and trk.cuts == 1 and not run.relinked


def _voted(x: float, emb: np.ndarray, vote: str | None) -> TrackerInput:
    """A detection whose face the gallery gave to ``vote`` (None = unknown)."""
    d = det(x, 200, emb)
    return TrackerInput(d.box, d.score, d.embedding, d.quality, vote, True, 0.5)


def test_reidentification_needs_the_same_frame_votes() -> None:
    rng = np.random.default_rng(14)
    a = unit(rng)
    look_alike = noisy(a, rng, 1.0)  # cosine about 0.7 with a: passes every appearance gate
    run = Run(tracker(lost_seconds=10.0))  # type: ignore[arg-type]
    for _ in range(8):
        run.step({"a": _voted(100, noisy(a, rng), "ann")})
    for _ in range(15):
        run.step({})
    for _ in range(4):  # looks like ann's track but the gallery does not think it is ann: not re-linked
        run.step({"x": _voted(400, noisy(look_alike, rng, 0.1), None)})
    for _ in range(15):
        run.step({})
    for _ in range(4):  # ann again: re-linked
        run.step({"a2": _voted(600, noisy(a, rng), "ann")})
    assert run.ids("x").isdisjoint(run.ids("a")) and run.ids("a2") == run.ids("a") and run.relinked == list(run.ids("a"))


def test_lost_named_track_does_not_resume_on_someone_else() -> None:
    rng = np.random.default_rng(15)
    a = unit(rng)
    run = Run(tracker())  # type: ignore[arg-type]
    for _ in range(8):
        run.step({"a": _voted(300, noisy(a, rng), "ann")})
    run.step({})
    for _ in range(3):
        run.step({"b": _voted(302, noisy(a, rng, 1.0), "bob")})
    assert run.ids("b").isdisjoint(run.ids("a"))


def test_reentry_of_another_person_is_a_new_track() -> None:
    rng = np.random.default_rng(5)
    a, b = unit(rng), unit(rng)
    run = Run(tracker(lost_seconds=10.0))  # type: ignore[arg-type]
    for _ in range(10):
        run.step({"a": det(100, 200, noisy(a, rng))})
    for _ in range(30):
        run.step({})
    for _ in range(5):
        run.step({"b": det(100, 200, noisy(b, rng))})
    for _ in range(5):
        run.step({"a": det(500, 200, noisy(a, rng))})
    assert len(run.ids("a")) == 1 and run.ids("a").isdisjoint(run.ids("b"))


def test_dormant_track_ends_after_lost_seconds() -> None:
    rng = np.random.default_rng(6)
    run = Run(tracker(lost_seconds=1.0))  # type: ignore[arg-type]
    a = unit(rng)
    for _ in range(5):
        run.step({"a": det(100, 100, noisy(a, rng))})
    for _ in range(15):
        run.step({})
    assert run.ended == list(run.ids("a"))


def test_low_score_detections_extend_but_never_start() -> None:
    rng = np.random.default_rng(7)
    a = unit(rng)
    run = Run(tracker())  # type: ignore[arg-type]
    run.step({"blur": TrackerInput(Box(0, 0, 60, 60), 0.4)})
    for k in range(5):
        run.step({"a": det(100 + 3 * k, 100, noisy(a, rng))})
    run.step({"a": TrackerInput(Box(85 + 15, 70, 145 + 15, 130), 0.45)})  # blurred: low score, no template
    assert run.seen["blur"] == [None] and len(run.ids("a")) == 1 and run.seen["a"][-1] is not None


def test_embed_plan_skips_only_clear_established_faces() -> None:
    rng = np.random.default_rng(8)
    a, b = unit(rng), unit(rng)
    trk = tracker(embed_every=4)
    for k in range(4):
        trk.update(k / FPS, k, [det(100, 100, noisy(a, rng), size=60), det(400, 100, noisy(b, rng), size=60)])
    t = 4 / FPS
    far = Box(70, 70, 130, 130)
    named = trk.active_ids
    assert trk.embed_plan(t, [far], [0.5], named) == [False]  # clear, established, named, not better
    assert trk.embed_plan(t, [far], [0.5]) == [True]  # not named yet: keeps gathering evidence
    assert trk.embed_plan(t, [far], [0.99], named) == [True]  # clearly better quality
    assert trk.embed_plan(t, [Box(600, 300, 660, 360)], [0.5], named) == [True]  # nobody's: a new face
    for k in range(4, 7):
        trk.update(k / FPS, k, [TrackerInput(far, 0.9, None, 0.5)])
    assert trk.embed_plan(7 / FPS, [far], [0.5], named) == [True]  # every ``embed_every`` frames


def test_gates_come_from_the_calibration() -> None:
    class Pipe:
        model_id = "m"
        asked: list[str] = []

        def operating_point(self, threshold: str | None = None) -> Any:
            self.asked.append(str(threshold))
            far = float(str(threshold).removeprefix("far="))
            return type("P", (), {"threshold": 0.2 + 0.05 * np.log10(1 / far)})()

    gates = AppearanceGates.from_pipeline(Pipe(), TrackerConfig())
    assert Pipe.asked == ["far=0.1", "far=0.001", "far=0.0001"]
    assert (gates.veto, gates.resume, gates.reid) == pytest.approx((0.25, 0.35, 0.4))
    with pytest.raises(FaceAtlasError):
        AppearanceGates(0.5, 0.4, 0.6)
    with pytest.raises(FaceAtlasError):
        TrackerConfig(kind="sort")
    with pytest.raises(FaceAtlasError):
        TrackerConfig(reid_far=0.0)


def test_gates_of_a_real_model(atlas: Any) -> None:
    gates = AppearanceGates.from_pipeline(atlas, TrackerConfig())
    assert gates.reid == pytest.approx(atlas.operating_point("far=1e-4").threshold)
    assert gates.veto < gates.resume < gates.reid


def test_scene_cut_detector() -> None:
    from support.footage import backdrop

    a, b = backdrop(1, 320, 180)[:180, :320], backdrop(2, 320, 180)[:180, :320]
    det_ = SceneCutDetector()
    assert not det_.update(a)
    assert not det_.update(np.clip(a.astype(np.int16) * 6 // 10, 0, 255).astype(np.uint8))  # lights dim
    assert not det_.update(np.roll(a, 12, axis=1))  # a pan
    assert det_.update(b)  # another shot
    assert not det_.update(b)


def test_named_track_holds_its_name() -> None:
    rng = np.random.default_rng(12)
    ann, bob = unit(rng), unit(rng)
    res = HoldingResolver(FakeGallery({"ann": ann, "bob": bob}), "c", threshold=0.3, track_threshold=0.4)
    first = res.update(_evidence(1, noisy(ann, rng), {"ann": 3.0}, 3))
    assert first is not None and first.person == "ann"
    weak = (0.2 * ann + unit(rng)).astype(np.float32)  # poor frames: the template no longer reaches the threshold
    assert res.update(_evidence(1, weak / np.linalg.norm(weak), {"ann": 3.0, None: 8.0}, 11)) is None
    assert res.current(1).person == "ann"  # type: ignore[union-attr]
    assert res.update(_evidence(1, noisy(bob, rng), {"ann": 3.0, "bob": 4.0}, 14)) is None  # not strong enough
    switched = res.update(_evidence(1, noisy(bob, rng), {"ann": 3.0, "bob": 6.5}, 20))
    assert switched is not None and switched.person == "bob"
    assert res.update(_evidence(1, unit(rng), {"ann": 3.0, "bob": 6.5, None: 30.0}, 60), final=True) is None


def test_unknown_tracks_get_stable_anonymous_ids() -> None:
    rng = np.random.default_rng(13)
    ann = unit(rng)
    res = HoldingResolver(FakeGallery({"ann": ann}), "c", threshold=0.3, track_threshold=0.4)
    d1 = res.update(_evidence(1, unit(rng), {None: 3.0}, 3))
    d2 = res.update(_evidence(2, unit(rng), {None: 3.0}, 3))
    assert d1 is not None and d2 is not None and (d1.anonymous, d2.anonymous) == ("unknown-1", "unknown-2")
    assert d1.label == "unknown-1" and d1.to_dict()["anonymous"] == "unknown-1"
    assert res.update(_evidence(1, unit(rng), {None: 6.0}, 6)) is None and res.current(1).anonymous == "unknown-1"  # type: ignore[union-attr]
    named = res.update(_evidence(2, noisy(ann, rng), {None: 3.0, "ann": 5.0}, 8))
    assert named is not None and named.person == "ann" and named.anonymous == "unknown-2" and named.label == "Ann"


def test_reentry_waits_for_its_votes_before_starting_a_new_track() -> None:
    rng = np.random.default_rng(16)
    a = unit(rng)
    run = Run(tracker(lost_seconds=10.0))  # type: ignore[arg-type]
    for _ in range(8):
        run.step({"a": _voted(100, noisy(a, rng), "ann")})
    for _ in range(20):
        run.step({})
    for k in range(6):  # back, entering: the first frames are too poor for a vote, then the gallery names her
        run.step({"a2": _voted(600, noisy(a, rng), None if k < 3 else "ann")})
    assert run.ids("a2") == run.ids("a") and run.seen["a2"][:3] == [None, None, None] and len(run.started) == 1
