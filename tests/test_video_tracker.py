"""The legacy face tracker (``TrackerConfig(kind="legacy")``) on synthetic detections: crossings, gaps, re-entries, identities."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from faceatlas.errors import FaceAtlasError
from faceatlas.types import Box
from faceatlas.video.identity import IdentityResolver, sighting_weight
from faceatlas.video.tracker import FaceTracker, TrackerConfig, TrackerInput, TrackEvidence, _greedy, assign

FPS = 10.0
DIM = 128


def unit(rng: np.random.Generator) -> np.ndarray:
    """A random unit vector (two of them are nearly orthogonal in 128-D)."""
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def noisy(base: np.ndarray, rng: np.random.Generator, amount: float = 0.25) -> np.ndarray:
    """A sighting of the same person: the base embedding plus noise (cosine about 0.95)."""
    v = base + amount * rng.normal(size=DIM) / np.sqrt(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def box_at(cx: float, cy: float, size: float = 60.0) -> Box:
    """A square face box centred on (cx, cy)."""
    return Box(cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def det(cx: float, cy: float, emb: np.ndarray | None, score: float = 0.9, size: float = 60.0) -> TrackerInput:
    """A detection at (cx, cy)."""
    return TrackerInput(box_at(cx, cy, size), score, emb, sighting_weight(score, size, size))


@dataclass
class Run:
    """Feeds frames to a tracker and records which track every labelled detection got."""

    tracker: FaceTracker
    seen: dict[str, list[int | None]] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    relinked: list[int] = field(default_factory=list)
    frame: int = 0

    def step(self, labelled: dict[str, TrackerInput]) -> None:
        """One frame: labelled detections in, assignments recorded."""
        t = self.frame / FPS
        upd = self.tracker.update(t, self.frame, list(labelled.values()))
        for name, tid in zip(labelled, upd.assignments, strict=True):
            self.seen.setdefault(name, []).append(tid)
        self.started += [tr.id for tr in upd.started]
        self.ended += [tr.id for tr in upd.ended]
        self.relinked += list(upd.relinked)
        self.frame += 1

    def ids(self, name: str) -> set[int]:
        """Distinct confirmed track ids a labelled face was given."""
        return {t for t in self.seen.get(name, []) if t is not None}


def test_crossing_paths_keep_their_ids() -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng), unit(rng)
    run = Run(FaceTracker())
    for k in range(40):  # A goes right, B goes left on almost the same line; they overlap around k = 20
        xa, xb = 100 + 20 * k, 900 - 20 * k
        run.step({"A": det(xa, 300, noisy(a, rng)), "B": det(xb, 310, noisy(b, rng))})
    assert len(run.ids("A")) == 1 and len(run.ids("B")) == 1
    assert run.ids("A") != run.ids("B")
    assert len(run.started) == 2 and not run.relinked


def test_crossing_with_the_back_face_hidden() -> None:
    rng = np.random.default_rng(2)
    a, b = unit(rng), unit(rng)
    run = Run(FaceTracker())
    for k in range(40):
        xa, xb = 100 + 20 * k, 900 - 20 * k
        frame = {"A": det(xa, 300, noisy(a, rng))}
        if abs(xa - xb) > 70:  # B passes behind A: not detected while they overlap
            frame["B"] = det(xb, 305, noisy(b, rng))
        run.step(frame)
    assert len(run.ids("A")) == 1 and len(run.ids("B")) == 1 and run.ids("A") != run.ids("B")


def test_occlusion_gap_keeps_the_track() -> None:
    rng = np.random.default_rng(3)
    a = unit(rng)
    run = Run(FaceTracker(TrackerConfig(lost_seconds=3.0)))
    for k in range(60):
        if 20 <= k < 35:  # 1.5 s behind a pillar
            run.step({})
        else:
            run.step({"A": det(100 + 10 * k, 300, noisy(a, rng))})
    assert len(run.ids("A")) == 1 and run.started == [1] and run.ended == [] and run.relinked == [1]
    tracks = run.tracker.finish()
    assert [t.id for t in tracks] == [1] and len(tracks[0].faces) == 45


def test_occlusion_gap_without_embeddings_uses_motion() -> None:
    run = Run(FaceTracker(TrackerConfig(lost_seconds=3.0)))
    for k in range(50):
        if 20 <= k < 28:
            run.step({})
        else:
            run.step({"A": det(100 + 12 * k, 300, None), "B": det(600, 100 + 3 * k, None)})
    assert len(run.ids("A")) == 1 and len(run.ids("B")) == 1 and len(run.started) == 2


def test_reentry_is_relinked_by_embedding() -> None:
    rng = np.random.default_rng(4)
    a, c = unit(rng), unit(rng)
    run = Run(FaceTracker(TrackerConfig(lost_seconds=8.0)))
    for k in range(30):  # A walks out on the right
        run.step({"A": det(700 + 20 * k, 300, noisy(a, rng))})
    for _ in range(40):  # 4 s away
        run.step({})
    for k in range(20):  # A comes back from the left, and a new person C arrives at the same time
        run.step({"A": det(40 + 15 * k, 200, noisy(a, rng)), "C": det(900, 500, noisy(c, rng))})
    assert len(run.ids("A")) == 1, run.seen["A"]
    assert run.relinked == list(run.ids("A"))  # resumed once, when A came back
    assert len(run.ids("C")) == 1 and run.ids("C") != run.ids("A")
    assert run.started == [1, 2]


def test_lost_track_ends_after_lost_seconds() -> None:
    rng = np.random.default_rng(5)
    a = unit(rng)
    run = Run(FaceTracker(TrackerConfig(lost_seconds=1.0)))
    for k in range(10):
        run.step({"A": det(100 + 5 * k, 100, noisy(a, rng))})
    for _ in range(15):
        run.step({})
    assert run.ended == [1]
    for _ in range(5):  # too late to re-link: a new track
        run.step({"A": det(150, 100, noisy(a, rng))})
    assert run.started == [1, 2]


def test_low_score_detections_only_extend_tracks() -> None:
    rng = np.random.default_rng(6)
    a = unit(rng)
    run = Run(FaceTracker())
    for k in range(10):
        run.step({"A": det(200 + 4 * k, 200, noisy(a, rng))})
    for k in range(10, 20):  # blurred: low scores, no embedding
        run.step({"A": det(200 + 4 * k, 200, None, score=0.4)})
    for _ in range(10):  # a low-score blob elsewhere never opens a track
        run.step({"X": det(900, 600, None, score=0.45)})
    assert run.seen["A"][10:] == [1] * 10
    assert run.ids("X") == set() and run.started == [1]


def test_single_frame_false_positive_is_never_started() -> None:
    rng = np.random.default_rng(7)
    run = Run(FaceTracker())
    run.step({"F": det(500, 500, unit(rng))})
    for _ in range(5):
        run.step({})
    assert run.started == [] and run.tracker.finish() == []


def test_appearance_veto_blocks_a_swap() -> None:
    rng = np.random.default_rng(8)
    a, b = unit(rng), unit(rng)
    run = Run(FaceTracker(TrackerConfig(lost_seconds=5.0)))
    for _ in range(5):
        run.step({"A": det(300, 300, noisy(a, rng))})
    run.step({})
    for _ in range(5):  # a different person appears exactly where A was
        run.step({"B": det(300, 300, noisy(b, rng))})
    assert run.ids("A") == {1} and run.ids("B") == {2}


def test_time_must_not_go_backwards() -> None:
    tracker = FaceTracker()
    tracker.update(1.0, 10, [])
    with pytest.raises(FaceAtlasError) as err:
        tracker.update(0.5, 5, [])
    assert err.value.code == "invalid_input"


def test_config_validation() -> None:
    with pytest.raises(FaceAtlasError):
        TrackerConfig(low_score=0.8, high_score=0.5)
    with pytest.raises(FaceAtlasError):
        TrackerConfig(min_hits=0)


def test_assignment_hungarian_and_greedy() -> None:
    blocked = 1e6
    cost = np.array([[0.1, 0.2, blocked], [0.15, blocked, blocked], [blocked, blocked, blocked]])
    assert sorted(assign(cost)) == [(0, 1), (1, 0)]  # optimal total 0.35 rather than greedy's 0.1 + nothing
    assert sorted(_greedy(cost)) == [(0, 0)]
    assert assign(np.zeros((0, 3))) == []


def test_sighting_weight_is_score_times_size_factor() -> None:
    assert sighting_weight(0.9, 160, 200) == pytest.approx(0.9)
    assert sighting_weight(0.9, 40, 50) == pytest.approx(0.45)
    assert sighting_weight(0.8, 0, 10) == 0.0


@dataclass
class _Cand:
    external_id: str
    name: str | None
    score: float


class FakeGallery:
    """Search by cosine against fixed person vectors."""

    def __init__(self, people: dict[str, np.ndarray]) -> None:
        self.people = people

    def search(self, collection: str, vectors: np.ndarray, k: int = 1, *, model_id: str | None = None) -> list[list[_Cand]]:
        q = np.atleast_2d(np.asarray(vectors, np.float32))
        out = []
        for row in q:
            scored = sorted(((float(v @ row), p) for p, v in self.people.items()), reverse=True)[:k]
            out.append([_Cand(p, p.title(), s) for s, p in scored])
        return out


def _evidence(track: int, template: np.ndarray | None, votes: dict[str | None, float], n: int) -> TrackEvidence:
    return TrackEvidence(track, template, votes, n, float(n), n)


def test_identity_needs_evidence_and_persistence() -> None:
    rng = np.random.default_rng(9)
    a, b = unit(rng), unit(rng)
    res = IdentityResolver(FakeGallery({"ann": a, "bob": b}), "c", threshold=0.3, min_votes=3, persistence=2)
    votes = res.frame_votes(np.stack([noisy(a, rng), noisy(b, rng), unit(rng)]))
    assert [v.person for v in votes] == ["ann", "bob", None]
    assert res.update(_evidence(1, noisy(a, rng), {"ann": 2.0}, 2)) is None  # not enough votes yet
    first = res.update(_evidence(1, noisy(a, rng), {"ann": 3.0}, 3))
    assert first is not None and first.person == "ann" and first.confidence == 1.0 and first.name == "Ann"
    assert res.update(_evidence(1, noisy(b, rng), {"ann": 3.0, "bob": 1.0}, 4)) is None  # one win is not enough
    changed = res.update(_evidence(1, noisy(b, rng), {"ann": 3.0, "bob": 3.0}, 6))
    assert changed is not None and changed.person == "bob" and changed.confidence == pytest.approx(0.5)
    final = res.update(_evidence(1, unit(rng), {"ann": 3.0, "bob": 3.0, None: 9.0}, 15), final=True)
    assert final is not None and final.person is None  # the final decision needs no persistence


def test_vote_and_template_rules_can_differ() -> None:
    rng = np.random.default_rng(10)
    a, b = unit(rng), unit(rng)
    res = IdentityResolver(FakeGallery({"ann": a, "bob": b}), "c", threshold=0.3)
    ev = _evidence(1, noisy(a, rng), {"bob": 2.0, "ann": 1.5, None: 1.0}, 5)
    assert res.decide(ev, "template").person == "ann"
    vote = res.decide(ev, "vote")
    assert vote.person == "bob" and vote.confidence == pytest.approx(2.0 / 4.5)
    with pytest.raises(FaceAtlasError):
        IdentityResolver(FakeGallery({}), "c", 0.3, method="majority")


def test_track_threshold_is_stricter_than_per_frame() -> None:
    from faceatlas.video.identity import TRACK_THRESHOLDS, track_threshold

    assert track_threshold("sface", 0.33) == TRACK_THRESHOLDS["sface"] > 0.33
    assert track_threshold("sface+flip", 0.6) == 0.6  # never below the per-frame threshold
    assert track_threshold("some-new-model", 0.4) == pytest.approx(0.48)
    rng = np.random.default_rng(11)
    a = unit(rng)
    res = IdentityResolver(FakeGallery({"ann": a}), "c", threshold=0.3, track_threshold=0.7)
    template = (0.5 * a + 0.866 * unit(rng)).astype(np.float32)  # cosine about 0.5: above 0.3, below 0.7
    ev = _evidence(1, template / np.linalg.norm(template), {"ann": 5.0}, 5)
    assert res.decide(ev, "template").person is None
    assert res.decide(ev, "vote").person == "ann"
