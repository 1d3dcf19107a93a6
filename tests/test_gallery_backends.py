"""One behavioural suite for every gallery backend (SQLite, Milvus Lite), plus location parsing and Milvus-only checks.

Milvus Lite starts once per module: every test gets its own metadata file (hence its own Milvus
namespace) inside one shared Milvus Lite folder, which a keeper gallery holds open until the module ends.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from faceatlas.config import ENV_MILVUS_TOKEN
from faceatlas.errors import FaceAtlasError, NotFoundError
from faceatlas.gallery import Gallery, NewPerson, parse_location
from faceatlas.gallery.crypto import ENV_KEY, ENV_KEY_FILE
from faceatlas.gallery.store import SCHEMA_VERSION
from faceatlas.types import Box, Template

DIM = 64
SHA = "0123456789abcdef" * 4
BACKENDS = ["sqlite", "milvus-lite"]
MILVUS_OK = importlib.util.find_spec("pymilvus") is not None and importlib.util.find_spec("milvus_lite") is not None
needs_milvus = pytest.mark.skipif(not MILVUS_OK, reason="pymilvus / milvus-lite are not installed")

Opener = Callable[..., Gallery]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """Random unit vectors."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def templates(rng: np.random.Generator, n: int, model: str = "m") -> list[Template]:
    """Random templates of one model."""
    return [Template(v, model) for v in unit(rng, n)]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys are given explicitly (Milvus galleries refuse one from the environment too)."""
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)


@pytest.fixture(scope="module")
def lite_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Milvus Lite folder shared by the module, served as long as the keeper gallery is open."""
    if not MILVUS_OK:
        pytest.skip("pymilvus / milvus-lite are not installed")
    base = tmp_path_factory.mktemp("milvus")
    lite = base / "lite.db"
    keeper = Gallery.open(f"milvus-lite:{lite}", meta_path=base / "keeper.meta.sqlite")
    yield lite
    keeper.close()


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """``opener(name="g", **kw)`` opens (or reopens) the test's gallery ``name`` on the backend under test."""
    kind: str = request.param
    opened: list[Gallery] = []

    def open_gallery(name: str = "g", **kw: object) -> Gallery:
        """Open one of this test's galleries and close it at teardown."""
        if kind == "milvus-lite":
            lite = request.getfixturevalue("lite_dir")
            g = Gallery.open(f"milvus-lite:{lite}", meta_path=tmp_path / f"{name}.meta.sqlite", actor="tester", **kw)
        else:
            g = Gallery.open(tmp_path / f"{name}.db", actor="tester", **kw)
        opened.append(g)
        return g

    yield open_gallery
    for g in opened:
        g.close()


@pytest.fixture()
def gallery(opener: Opener) -> Gallery:
    """A fresh gallery with collection ``c`` (model ``m``, dim 64)."""
    g = opener()
    g.create_collection("c", "m", SHA, DIM)
    return g


def enrol(g: Gallery, rng: np.random.Generator, persons: int, per: int, prefix: str = "p") -> dict[int, np.ndarray]:
    """Enrol persons with ``per`` random templates each into ``c``; return person id -> vectors."""
    out = {}
    for i in range(persons):
        p = g.add_person("c", f"{prefix}{i}", name=f"Person {i}")
        vecs = unit(rng, per)
        g.add_samples("c", p.id, [Template(v, "m") for v in vecs])
        out[p.id] = vecs
    return out


def reference_max(people: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[tuple[float, int]]:
    """Brute-force top-k persons by best sample."""
    return sorted(((float(np.max(v @ q)), pid) for pid, v in people.items()), reverse=True)[:k]


def reference_centroid(people: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[tuple[float, int]]:
    """Brute-force top-k persons by cosine with the normalised mean template."""
    scored = []
    for pid, v in people.items():
        m = v.astype(np.float64).mean(axis=0)
        scored.append((float(m @ q / np.linalg.norm(m)), pid))
    return sorted(scored, reverse=True)[:k]


# ---------------------------------------------------------------- shared behaviour


def test_collections_persons_samples_crud(gallery: Gallery) -> None:
    g = gallery
    assert g.backend in BACKENDS and g.uri.startswith(g.backend) and not g.encrypted
    col = g.get_collection("c")
    assert (col.contract.model_id, col.contract.dim, col.contract.model_sha256) == ("m", DIM, SHA)
    g.create_collection("b", "m2", SHA, 32, preprocessing="v2")
    assert [c.name for c in g.list_collections()] == ["b", "c"]
    assert g.get_collection("b").contract.preprocessing == "v2"
    with pytest.raises(FaceAtlasError) as ei:
        g.create_collection("c", "m", SHA, DIM)
    assert ei.value.code == "conflict"

    alice = g.add_person("c", "emp-1", name="Alice", metadata={"team": "x", "n": 1})
    assert (alice.external_id, alice.name, dict(alice.metadata)) == ("emp-1", "Alice", {"team": "x", "n": 1})
    with pytest.raises(FaceAtlasError) as ei:
        g.add_person("c", "emp-1")
    assert ei.value.code == "conflict"
    g.add_person("b", "emp-1")  # external ids are unique per collection only
    bob = g.add_person("c", "emp-2")

    rng = np.random.default_rng(0)
    ts = templates(rng, 3)
    crop = bytes(rng.integers(0, 256, 300, dtype=np.uint8))
    ids = g.add_samples(
        "c", alice.id, ts, qualities=[0.9, None, 0.5], detection_scores=[0.99, 0.98, 0.97],
        boxes=[Box(1, 2, 30, 40), [5, 6, 50, 60], None], image_sha256=["ab" * 32, None, "CD" * 32],
        crops=[crop, None, None],
    )
    assert len(ids) == 3 and ids == sorted(ids)
    # Duplicate detection asks about the incoming hashes only (stored lower-case, per collection).
    assert g.known_image_hashes("c", ["ab" * 32, "cd" * 32, "ef" * 32]) == {"ab" * 32, "cd" * 32}
    assert g.known_image_hashes("b", ["ab" * 32]) == set() and g.known_image_hashes("c", []) == set()
    assert g.add_samples("c", "emp-2", ts[0]) == [ids[-1] + 1]
    assert g.add_samples("c", bob.id, []) == []

    s0 = g.get_sample("c", ids[0], include_template=True)
    assert (s0.person_id, s0.quality, s0.detection_score, s0.box) == (alice.id, 0.9, 0.99, Box(1, 2, 30, 40))
    assert s0.image_sha256 == "ab" * 32 and s0.has_crop
    assert s0.template is not None and s0.template.model_id == "m"
    np.testing.assert_allclose(s0.template.vector, ts[0].vector, atol=1e-6)
    s1 = g.get_sample("c", ids[1])
    assert s1.template is None and s1.quality is None and s1.box == Box(5, 6, 50, 60) and not s1.has_crop
    assert g.get_sample("c", ids[2]).image_sha256 == "cd" * 32
    assert g.get_crop("c", ids[0]) == crop and g.get_crop("c", ids[1]) is None
    assert [s.id for s in g.list_samples("c", "emp-1")] == ids

    assert g.get_person("c", alice.id).samples == 3 and g.get_person("c", "emp-1").id == alice.id
    assert [x.external_id for x in g.list_persons("c")] == ["emp-1", "emp-2"]
    assert [x.external_id for x in g.list_persons("c", limit=1, offset=1)] == ["emp-2"]
    assert (g.get_collection("c").persons, g.get_collection("c").samples) == (2, 4)

    st = g.stats()
    assert st.backend == g.backend and (st.samples, st.persons) == (4, 3)
    assert not st.encrypted and st.schema_version == SCHEMA_VERSION
    by_name = {c.name: c for c in st.collections}
    assert by_name["c"].indexed == 4 and by_name["b"].indexed == 0
    enrols = [e for e in g.audit_log("c") if e.action == "enrol"]  # newest first
    assert [(e.actor, e.person_id, list(e.sample_ids)) for e in enrols] == [
        ("tester", bob.id, [ids[-1] + 1]), ("tester", alice.id, ids)
    ]
    assert {"create_collection", "add_person", "enrol"} <= {e.action for e in g.audit_log()}
    assert "vector" not in json.dumps([e.to_dict() for e in g.audit_log()])
    assert g.check() == []


def test_text_that_is_not_unicode_is_refused_cleanly(gallery: Gallery) -> None:
    """Lone surrogates (what a bad decode leaves) give invalid_input, never a UnicodeEncodeError, and write nothing."""
    g = gallery
    calls = [
        lambda: g.get_collection("\ud800"),
        lambda: g.create_collection("\ud800", "m", SHA, DIM),
        lambda: g.add_person("c", "\udc80"),
        lambda: g.add_person("c", "ok", name="a\ud800"),
        lambda: g.get_person("c", "x\ud800"),
    ]
    for call in calls:
        with pytest.raises(FaceAtlasError) as ei:
            call()
        assert ei.value.code == "invalid_input"
    assert [c.name for c in g.list_collections()] == ["c"] and g.list_persons("c") == []


def test_not_found_paths(gallery: Gallery) -> None:
    g = gallery
    p = g.add_person("c", "x")
    t = templates(np.random.default_rng(1), 1)
    calls = [
        lambda: g.get_collection("nope"),
        lambda: g.delete_collection("nope"),
        lambda: g.add_person("nope", "x"),
        lambda: g.list_persons("nope"),
        lambda: g.get_person("c", 999),
        lambda: g.get_person("c", "missing"),
        lambda: g.delete_person("c", 999),
        lambda: g.add_samples("c", 999, t),
        lambda: g.add_samples("nope", p.id, t),
        lambda: g.get_sample("c", 999),
        lambda: g.delete_sample("c", 999),
        lambda: g.list_samples("c", 999),
        lambda: g.search("nope", t[0], model_id="m"),
        lambda: g.export_collection("nope", "unused.jsonl"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as ei:
            call()
        assert ei.value.code == "not_found"
    g.create_collection("other", "m", SHA, DIM)
    sid = g.add_samples("c", p.id, t)[0]
    with pytest.raises(NotFoundError):
        g.get_sample("other", sid)  # samples are looked up within their collection
    with pytest.raises(NotFoundError):
        g.get_person("other", p.id)


def test_contract_mismatch_and_bad_input(gallery: Gallery) -> None:
    g = gallery
    p = g.add_person("c", "x")
    rng = np.random.default_rng(2)
    for bad in (templates(rng, 1, model="other"), [Template(np.ones(DIM + 1, np.float32), "m")]):
        with pytest.raises(FaceAtlasError) as ei:
            g.add_samples("c", p.id, bad)
        assert ei.value.code == "model_mismatch"
    with pytest.raises(FaceAtlasError) as ei:
        g.add_samples("c", p.id, templates(rng, 2), qualities=[0.1])
    assert ei.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as ei:
        g.add_samples("c", p.id, templates(rng, 1), image_sha256="not-a-hash")
    assert ei.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as ei:
        g.add_samples("c", p.id, [np.ones(DIM, np.float32)])  # type: ignore[list-item]
    assert ei.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as ei:
        g.add_person("c", "y", metadata={"bad": object()})
    assert ei.value.code == "invalid_input"
    with pytest.raises(FaceAtlasError) as ei:
        g.create_collection("z", "m", SHA, 0)
    assert ei.value.code == "invalid_input"
    for bad_query in (Template(unit(rng, 1)[0], "other"), np.ones(DIM + 1, np.float32)):
        with pytest.raises(FaceAtlasError) as ei:
            g.search("c", bad_query, model_id="m")
        assert ei.value.code == "model_mismatch"
    for kwargs in ({"k": 0}, {"aggregate": "mean"}):
        with pytest.raises(FaceAtlasError) as ei:
            g.search("c", unit(rng, 1)[0], **kwargs, model_id="m")  # type: ignore[arg-type]
        assert ei.value.code == "invalid_input"
    assert g.get_person("c", p.id).samples == 0  # nothing half-written ...
    assert g.stats().collections[0].indexed == 0  # ... in the template store either
    assert g.search("c", unit(rng, 1)[0], k=3, model_id="m") == [[]]


def test_search_topk_matches_brute_force(gallery: Gallery) -> None:
    g = gallery
    rng = np.random.default_rng(7)
    people = enrol(g, rng, 60, 4)
    q = unit(rng, 6)
    for k in (1, 10, 100):
        for row, cands in enumerate(g.search("c", q, k=k, model_id="m")):
            ref = reference_max(people, q[row], k)
            assert [c.person_id for c in cands] == [pid for _, pid in ref]
            np.testing.assert_allclose([c.score for c in cands], [s for s, _ in ref], atol=1e-4)
            best = {pid: int(np.argmax(v @ q[row])) for pid, v in people.items()}
            for c in cands:
                assert c.sample_id is not None
                sample = g.get_sample("c", c.sample_id, include_template=True)
                assert sample.person_id == c.person_id and sample.template is not None
                np.testing.assert_allclose(sample.template.vector, people[c.person_id][best[c.person_id]], atol=1e-6)
    for row, cands in enumerate(g.search("c", q, k=7, aggregate="centroid", model_id="m")):
        ref = reference_centroid(people, q[row], 7)
        assert [c.person_id for c in cands] == [pid for _, pid in ref]
        np.testing.assert_allclose([c.score for c in cands], [s for s, _ in ref], atol=1e-4)
        for c in cands:  # the reported sample is the person's best one for this query
            assert c.sample_id is not None and g.get_sample("c", c.sample_id).person_id == c.person_id
            assert c.external_id == f"p{c.person_id - 1}" and c.name == f"Person {c.person_id - 1}"
    # query forms, min_score and k beyond the number of persons
    pid, vecs = next(iter(people.items()))
    one = g.search("c", Template(vecs[1], "m"), k=2, model_id="m")
    assert len(one) == 1 and one[0][0].person_id == pid and one[0][0].score > 0.999
    assert [r[0].person_id for r in g.search("c", [Template(v, "m") for v in vecs[:2]], k=1, model_id="m")] == [pid, pid]
    assert g.search("c", vecs[0] * 3.0, k=1, min_score=0.99, model_id="m")[0][0].person_id == pid
    assert all(len(r) <= 1 for r in g.search("c", unit(rng, 4), k=5, min_score=0.6, model_id="m"))
    assert len(g.search("c", vecs[0], k=500, model_id="m")[0]) == 60


def test_max_and_centroid_aggregation_differ_as_defined(gallery: Gallery) -> None:
    g = gallery
    q = np.zeros(DIM, np.float32)
    q[0] = 1.0
    spiky = np.zeros((2, DIM), np.float32)  # one exact hit, one opposite-ish sample: great max, poor centroid
    spiky[0, 0] = 1.0
    spiky[1, 0], spiky[1, 1] = -0.6, 0.8
    steady = np.zeros((2, DIM), np.float32)  # two good samples: lower max, better centroid
    steady[0, 0], steady[0, 1] = 0.8, 0.6
    steady[1, 0], steady[1, 2] = 0.8, 0.6
    a = g.add_person("c", "spiky")
    b = g.add_person("c", "steady")
    sa = g.add_samples("c", a.id, [Template(v, "m") for v in spiky])
    g.add_samples("c", b.id, [Template(v, "m") for v in steady])
    by_max = g.search("c", q, k=2, model_id="m")[0]
    assert [c.person_id for c in by_max] == [a.id, b.id]
    assert by_max[0].score == pytest.approx(1.0, abs=1e-5) and by_max[0].sample_id == sa[0]
    assert by_max[1].score == pytest.approx(0.8, abs=1e-5)
    by_centroid = g.search("c", q, k=2, aggregate="centroid", model_id="m")[0]
    assert [c.person_id for c in by_centroid] == [b.id, a.id]
    assert by_centroid[0].score == pytest.approx(0.8 / np.sqrt(0.64 + 0.09 + 0.09), abs=1e-4)
    assert by_centroid[1].sample_id == sa[0]
    # deleting the spiky sample moves both aggregations at once
    g.delete_sample("c", sa[0])
    assert [c.person_id for c in g.search("c", q, k=2, model_id="m")[0]] == [b.id, a.id]
    assert g.search("c", q, k=2, aggregate="centroid", model_id="m")[0][1].score == pytest.approx(-0.6, abs=1e-4)


def test_deletes_are_never_returned_by_search(opener: Opener) -> None:
    g = opener()
    g.create_collection("c", "m", SHA, DIM)
    rng = np.random.default_rng(4)
    people = enrol(g, rng, 30, 4)
    g.search("c", unit(rng, 1), aggregate="centroid", model_id="m")  # build any centroid state before deleting
    victims = list(people)[::4]
    for pid in victims:
        assert g.delete_person("c", pid) == 4
    lone_pid = list(people)[1]
    lone_samples = [s.id for s in g.list_samples("c", lone_pid)]
    for sid in lone_samples[:3]:
        g.delete_sample("c", sid)
    gone_samples = set(lone_samples[:3])

    def assert_gone(gal: Gallery) -> None:
        """Neither aggregation returns a deleted person or sample, even for their own templates."""
        for pid in victims:
            for v in people[pid]:
                for agg in ("max", "centroid"):
                    hits = gal.search("c", v, k=100, aggregate=agg, model_id="m")[0]  # type: ignore[arg-type]
                    assert all(c.person_id != pid for c in hits)
                    assert all(c.sample_id not in gone_samples for c in hits)
            with pytest.raises(NotFoundError):
                gal.get_person("c", pid)
        for v in people[lone_pid][:3]:
            hits = gal.search("c", v, k=100, model_id="m")[0]
            assert all(c.sample_id not in gone_samples for c in hits)
            assert max(c.score for c in hits) < 0.9
        for sid in gone_samples:
            with pytest.raises(NotFoundError):
                gal.get_sample("c", sid)
        remaining = {pid: v for pid, v in people.items() if pid not in victims}
        remaining[lone_pid] = people[lone_pid][3:]
        q = unit(np.random.default_rng(99), 3)
        for row, cands in enumerate(gal.search("c", q, k=len(remaining) + 5, model_id="m")):
            assert [c.person_id for c in cands] == [pid for _, pid in reference_max(remaining, q[row], 100)]
        for row, cands in enumerate(gal.search("c", q, k=5, aggregate="centroid", model_id="m")):
            assert [c.person_id for c in cands] == [pid for _, pid in reference_centroid(remaining, q[row], 5)]
        st = gal.stats().collections[0]
        assert st.samples == st.indexed == 4 * (30 - len(victims)) - 3
        assert gal.check() == []

    assert_gone(g)
    g.close()
    again = opener()
    assert_gone(again)
    audit = [e for e in again.audit_log("c") if e.action == "delete_sample"]
    assert sorted(sid for e in audit for sid in e.sample_ids) == sorted(gone_samples)

    kept = [pid for pid in people if pid not in victims]
    assert again.delete_collection("c") == 4 * len(kept) - 3
    with pytest.raises(NotFoundError):
        again.search("c", people[kept[0]][0], model_id="m")
    again.create_collection("c", "m", SHA, DIM)  # same name again: starts empty
    assert again.search("c", people[kept[0]][0], k=5, model_id="m") == [[]]
    assert again.stats().collections[0].indexed == 0
    assert "delete_collection" in [e.action for e in again.audit_log()]


def test_reopen_keeps_everything(opener: Opener) -> None:
    rng = np.random.default_rng(5)
    with opener() as g:
        g.create_collection("c", "m", SHA, DIM)
        people = enrol(g, rng, 5, 3)
    g2 = opener(index="exact")
    pid, vecs = next(iter(people.items()))
    hit = g2.search("c", vecs[1], k=1, model_id="m")[0][0]
    assert (hit.person_id, hit.external_id, hit.name) == (pid, "p0", "Person 0") and hit.score > 0.999
    assert g2.stats().collections[0].indexed == 15 and g2.get_collection("c").samples == 15
    assert g2.refresh() in ([], ["c"])


def test_add_people_is_one_all_or_nothing_batch(gallery: Gallery) -> None:
    """add_people writes many persons at once: ids in order, searchable at once, and a bad batch writes nothing."""
    rng = np.random.default_rng(31)
    vecs = unit(rng, 1_205)
    people = [NewPerson(f"b{i}", [Template(vecs[i], "m")], name=f"B {i}") for i in range(1_200)]
    people.append(NewPerson("two", [Template(vecs[1_200], "m"), Template(vecs[1_201], "m")], metadata={"k": 1},
                            qualities=[0.5, 0.75], image_sha256=["a" * 64, "b" * 64]))
    people.append(NewPerson("none", []))
    added = gallery.add_people("c", people)
    assert [p.external_id for p, _ in added] == [p.external_id for p in people]
    assert [len(ids) for _, ids in added] == [1] * 1_200 + [2, 0]
    all_ids = [i for _, ids in added for i in ids]
    assert all_ids == sorted(all_ids) and len(set(all_ids)) == 1_202
    stats = gallery.stats().collections[0]
    assert (stats.persons, stats.samples, stats.indexed) == (1_202, 1_202, 1_202)
    two = gallery.list_samples("c", "two")
    assert [s.quality for s in two] == [0.5, 0.75] and two[1].image_sha256 == "b" * 64
    assert gallery.get_person("c", "two").metadata == {"k": 1}
    for i in (0, 599, 1_199):  # every new template is found at once, with its owner
        hit = gallery.search("c", vecs[i], k=1, model_id="m")[0][0]
        assert (hit.external_id, hit.sample_id) == (f"b{i}", added[i][1][0])
    both = (vecs[1_200] + vecs[1_201]) / np.linalg.norm(vecs[1_200] + vecs[1_201])
    top = gallery.search("c", both, k=1, model_id="m", aggregate="centroid")[0][0]
    assert top.external_id == "two" and top.score == pytest.approx(1.0, abs=1e-5)
    before = gallery.stats().collections[0]
    bad_batches = {
        "conflict": [NewPerson("new1", [Template(vecs[1_202], "m")]), NewPerson("b7", [Template(vecs[1_203], "m")])],
        "model_mismatch": [NewPerson("new2", [Template(vecs[1_202], "m")]), NewPerson("new3", [Template(vecs[1_203], "x")])],
    }
    for code, batch in bad_batches.items():
        with pytest.raises(FaceAtlasError) as err:
            gallery.add_people("c", batch)
        assert err.value.code == code
    with pytest.raises(FaceAtlasError) as err:
        gallery.add_people("c", [NewPerson("dup", []), NewPerson("dup", [])])
    assert err.value.code == "conflict"
    with pytest.raises(FaceAtlasError) as err:
        gallery.add_people("c", [("raw", [Template(vecs[0], "m")])])  # type: ignore[list-item]
    assert err.value.code == "invalid_input"
    assert gallery.stats().collections[0] == before
    assert all(h.external_id != "new1" for h in gallery.search("c", vecs[1_202], k=3, model_id="m")[0])
    assert gallery.check() == []
    assert gallery.add_people("c", []) == []


def test_add_people_keeps_a_current_index_current(opener: Opener) -> None:
    """A batch on one handle is searched correctly by it and by a second handle opened before the batch."""
    rng = np.random.default_rng(32)
    a = opener()
    a.create_collection("c", "m", SHA, DIM)
    b = opener()
    first = enrol(a, rng, 5, 2)
    assert b.search("c", first[next(iter(first))][0], k=1, model_id="m")[0]
    vecs = unit(rng, 40)
    added = a.add_people("c", [NewPerson(f"n{i}", [Template(vecs[i], "m")]) for i in range(40)])
    for g in (a, b):
        for i in (0, 39):
            hit = g.search("c", vecs[i], k=1, model_id="m")[0][0]
            assert hit.sample_id == added[i][1][0]
    a.delete_person("c", "n0")
    assert all(h.external_id != "n0" for g in (a, b) for h in g.search("c", vecs[0], k=5, model_id="m")[0])


def test_two_open_galleries_see_each_others_writes(opener: Opener) -> None:
    rng = np.random.default_rng(6)
    a = opener()
    a.create_collection("c", "m", SHA, DIM)
    b = opener()
    p = a.add_person("c", "x")
    ts = templates(rng, 2)
    sids = a.add_samples("c", p.id, ts)
    assert b.search("c", ts[0], k=1, model_id="m")[0][0].sample_id == sids[0]
    q = b.add_person("c", "y")
    tb = templates(rng, 1)
    sb = b.add_samples("c", q.id, tb)[0]
    a.delete_sample("c", sids[1])
    assert a.search("c", tb[0], k=1, model_id="m")[0][0].sample_id == sb
    assert all(h.sample_id != sids[1] for h in b.search("c", ts[1], k=5, model_id="m")[0])
    b.delete_collection("c")
    a.refresh()
    assert a.list_collections() == []
    with pytest.raises(NotFoundError):
        a.search("c", ts[0], model_id="m")


def test_export_import_round_trip(opener: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faceatlas.gallery.store.exchange._VAULT_BATCH", 5)  # several batched vault writes per import
    g = opener()
    g.create_collection("c", "m", SHA, DIM)
    rng = np.random.default_rng(7)
    originals = {}
    for i in range(8):
        p = g.add_person("c", f"e{i}", name=f"N{i}", metadata={"i": i, "tags": ["a"]})
        ts = templates(rng, 3)
        g.add_samples("c", p.id, ts, qualities=0.5, boxes=[[0, 0, 10, 10], None, Box(1, 1, 2, 2)],
                      crops=[bytes([i, 1, 2]), None, None])
        originals[f"e{i}"] = ts
    out = tmp_path / "export.jsonl"
    g.export_collection("c", out)
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)
    assert "export_collection" in [e.action for e in g.audit_log("c")]
    with pytest.raises(FaceAtlasError) as ei:
        g.import_collection(out)
    assert ei.value.code == "conflict"
    col = g.import_collection(out, name="copy")
    assert (col.persons, col.samples, col.contract) == (8, 24, g.get_collection("c").contract)
    other = opener("other")
    other.import_collection(out)
    portable = Gallery.open(tmp_path / "portable.db")  # exports move between backends too
    portable.import_collection(out)
    for g2, name in ((g, "copy"), (other, "c"), (portable, "c")):
        persons = {p.external_id: p for p in g2.list_persons(name)}
        assert set(persons) == set(originals)
        assert dict(persons["e3"].metadata) == {"i": 3, "tags": ["a"]} and persons["e3"].name == "N3"
        samples = g2.list_samples(name, "e3")
        assert [s.quality for s in samples] == [0.5] * 3 and samples[0].box == Box(0, 0, 10, 10)
        assert g2.get_crop(name, samples[0].id) == bytes([3, 1, 2])
        for ext, ts in originals.items():
            hit = g2.search(name, ts[2], k=1, model_id="m")[0][0]
            assert hit.external_id == ext and hit.score > 0.9999
            cen = g2.search(name, ts[0], k=1, aggregate="centroid", model_id="m")[0][0]
            assert cen.external_id == ext
        got = [g2.get_sample(name, s.id, include_template=True).template for s in samples]
        np.testing.assert_allclose(
            np.stack([t.vector for t in got if t]), np.stack([t.vector for t in originals["e3"]]), atol=1e-6
        )
        assert g2.stats().collections[0].indexed == 24 and g2.check() == []
    portable.close()
    # a truncated export imports nothing, anywhere
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(out.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(FaceAtlasError) as ei:
        g.import_collection(bad, name="broken")
    assert ei.value.code == "import_invalid"
    assert "broken" not in [c.name for c in g.list_collections()] and g.check() == []
    bad.write_text("garbage\n")
    with pytest.raises(FaceAtlasError) as ei:
        g.import_collection(bad, name="broken")
    assert ei.value.code == "import_invalid"
    g.create_collection("broken", "m", SHA, DIM)  # the name and its template storage are free again
    assert g.stats().collections[0].indexed == 0


# ---------------------------------------------------------------- gallery locations


def test_location_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MILVUS_TOKEN, raising=False)
    plain = parse_location(str(tmp_path / "g.db"))
    assert plain.kind == "sqlite" and plain.meta_path == tmp_path / "g.db"
    assert parse_location(tmp_path / "g.db").kind == "sqlite"
    assert parse_location(f"sqlite:{tmp_path}/g.db").meta_path == tmp_path / "g.db"
    assert parse_location(f"sqlite://{tmp_path}/g.db").meta_path == tmp_path / "g.db"
    assert parse_location("relative/g.db").meta_path == Path("relative/g.db")
    assert parse_location("C:/galleries/g.db").kind == "sqlite"  # a drive letter is no scheme

    lite = parse_location(f"milvus-lite:{tmp_path}/v.db")
    assert lite.kind == "milvus-lite" and lite.lite_path == tmp_path / "v.db"
    assert lite.meta_path == tmp_path / "v.db.meta.sqlite" and lite.uri == f"milvus-lite:{tmp_path}/v.db"
    assert parse_location(f"milvus-lite:{tmp_path}/v.db", meta_path=tmp_path / "m.sqlite").meta_path == tmp_path / "m.sqlite"

    server = parse_location("milvus://db.example:19531/faces?meta=/srv/meta.sqlite")
    assert (server.kind, server.host, server.port, server.database) == ("milvus", "db.example", 19531, "faces")
    assert server.meta_path == Path("/srv/meta.sqlite") and server.token is None
    assert server.uri == "milvus://db.example:19531/faces"
    auth = parse_location("milvus://alice:s%40cret@10.0.0.5", meta_path="m.sqlite")
    assert (auth.port, auth.database, auth.token) == (19530, None, "alice:s@cret")
    assert "s@cret" not in repr(auth) and "s@cret" not in auth.uri
    monkeypatch.setenv(ENV_MILVUS_TOKEN, "root:Milvus")
    assert parse_location("milvus://h:1", meta_path="m.sqlite").token == "root:Milvus"

    bad = [
        ("postgres://h/db", None),
        ("redis:thing", None),
        ("milvus-lite:/tmp/folder", None),  # Milvus Lite folders end in .db
        ("milvus://h:19530", None),  # no metadata file
        ("milvus://:19530?meta=m", None),  # no host
        ("milvus://h:99999999?meta=m", None),
        ("milvus://h/bad-name?meta=m", None),
        ("milvus://h?meta=m&x=1", None),
        ("milvus://h?meta=m", "m2"),
        (str(tmp_path / "g.db"), "meta.sqlite"),
        ("", None),
    ]
    for target, meta in bad:
        with pytest.raises(FaceAtlasError) as ei:
            parse_location(target, meta)
        assert ei.value.code == "invalid_input", target
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open("mongodb://localhost/g")
    assert ei.value.code == "invalid_input"


# ---------------------------------------------------------------- Milvus only


@needs_milvus
def test_milvus_refuses_keys_and_foreign_files(lite_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"milvus-lite:{lite_dir}"
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(target, key=bytes(range(32)), meta_path=tmp_path / "m.sqlite")
    assert ei.value.code == "gallery_key_unsupported"
    monkeypatch.setenv(ENV_KEY, bytes(range(32)).hex())  # a key in the environment is not silently ignored
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(target, meta_path=tmp_path / "m.sqlite")
    assert ei.value.code == "gallery_key_unsupported"
    monkeypatch.delenv(ENV_KEY)
    assert not (tmp_path / "m.sqlite").exists()

    Gallery.open(tmp_path / "plain.db").close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(target, meta_path=tmp_path / "plain.db")
    assert ei.value.code == "gallery_backend_mismatch"
    Gallery.open(target, meta_path=tmp_path / "meta.sqlite").close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(tmp_path / "meta.sqlite")
    assert ei.value.code == "gallery_backend_mismatch"
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(f"milvus-lite:{tmp_path / 'plain.db'}")  # a SQLite file is no Milvus Lite folder
    assert ei.value.code == "invalid_input"
    with pytest.raises(NotFoundError):
        Gallery.open(f"milvus-lite:{tmp_path / 'absent.db'}", create=False)
    with pytest.raises(NotFoundError):
        Gallery.open(f"milvus-lite:{tmp_path / 'no' / 'such.db'}")
    assert not (tmp_path / "absent.db").exists()


@needs_milvus
def test_milvus_galleries_sharing_one_milvus_are_isolated(lite_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    a = Gallery.open(f"milvus-lite:{lite_dir}", meta_path=tmp_path / "a.sqlite")
    b = Gallery.open(f"milvus-lite:{lite_dir}", meta_path=tmp_path / "b.sqlite")
    try:
        for g in (a, b):
            g.create_collection("c", "m", SHA, DIM)
        ta, tb = templates(rng, 1), templates(rng, 1)
        a.add_samples("c", a.add_person("c", "only-in-a").id, ta)
        b.add_samples("c", b.add_person("c", "only-in-b").id, tb)
        assert [c.external_id for c in a.search("c", tb[0], k=5, model_id="m")[0]] == ["only-in-a"]
        assert [c.external_id for c in b.search("c", ta[0], k=5, model_id="m")[0]] == ["only-in-b"]
        b.delete_collection("c")
        assert a.search("c", ta[0], k=1, model_id="m")[0][0].score > 0.999
    finally:
        a.close()
        b.close()


@needs_milvus
def test_milvus_hnsw_index(lite_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    with Gallery.open(f"milvus-lite:{lite_dir}", meta_path=tmp_path / "h.sqlite", index="hnsw") as g:
        g.create_collection("c", "m", SHA, DIM)
        people = enrol(g, rng, 40, 3)
        assert g.stats().collections[0].index_kind == "hnsw"
        for pid, vecs in list(people.items())[:10]:
            assert g.search("c", vecs[2], k=1, model_id="m")[0][0].person_id == pid
            ref = reference_centroid(people, vecs[0], 3)
            hits = g.search("c", vecs[0], k=3, aggregate="centroid", model_id="m")[0]
            assert [c.person_id for c in hits] == [p for _, p in ref]


@needs_milvus
def test_milvus_lite_is_released_on_close(tmp_path: Path) -> None:
    lite = tmp_path / "own.db"
    rng = np.random.default_rng(13)
    g1 = Gallery.open(f"milvus-lite:{lite}")
    g2 = Gallery.open(f"milvus-lite:{lite}")  # same process, same folder: one shared server
    g1.create_collection("c", "m", SHA, DIM)
    t = templates(rng, 1)[0]
    g1.add_samples("c", g1.add_person("c", "x").id, t)
    g1.close()
    assert g2.search("c", t, k=1, model_id="m")[0][0].external_id == "x"  # still served for the other gallery
    g2.close()
    assert oct(lite.stat().st_mode & 0o777) == oct(0o700)
    # once both are closed, another process can open the folder (Milvus Lite allows one process per folder)
    child = (
        "import sys, numpy as np\n"
        "from faceatlas.gallery import Gallery\n"
        "from faceatlas.types import Template\n"
        "with Gallery.open('milvus-lite:' + sys.argv[1], create=False) as g:\n"
        "    print(g.search('c', np.asarray(sys.argv[2].split(','), dtype=np.float32), k=1, model_id='m')[0][0].external_id)\n"
    )
    vec = ",".join(repr(float(v)) for v in t.vector)
    done = subprocess.run([sys.executable, "-c", child, str(lite), vec], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "x"


def _milvus_names(lite: Path, g: Gallery) -> list[str]:
    """Names of the Milvus collections of gallery ``g`` (read with a plain pymilvus client)."""
    from pymilvus import MilvusClient

    namespace = g.store.meta()["template_namespace"]
    client = MilvusClient(str(lite))  # same process and folder: the running Milvus Lite server
    try:
        return sorted(n for n in client.list_collections() if n.startswith(namespace + "_"))
    finally:
        client.close()


@needs_milvus
def test_milvus_failed_writes_are_undone(lite_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceatlas.gallery.backends.milvus import MilvusBackend

    rng = np.random.default_rng(14)
    g = Gallery.open(f"milvus-lite:{lite_dir}", meta_path=tmp_path / "f.sqlite")
    try:
        col = g.create_collection("c", "m", SHA, DIM)
        assert _milvus_names(lite_dir, g) == sorted([f"{g.store.meta()['template_namespace']}_c{col.id}",
                                                     f"{g.store.meta()['template_namespace']}_c{col.id}_centroids"])
        p = g.add_person("c", "x")
        ts = templates(rng, 2)
        sids = g.add_samples("c", p.id, ts)
        original = MilvusBackend.set_centroids
        failures: list[int] = []

        def fail_once(self: MilvusBackend, *args: object, **kwargs: object) -> None:
            """Fail the first centroid update after the templates were written, then behave."""
            if not failures:
                failures.append(1)
                raise FaceAtlasError("gallery_error", "injected failure")
            original(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(MilvusBackend, "set_centroids", fail_once)
        new = templates(rng, 1)
        with pytest.raises(FaceAtlasError, match="injected"):
            g.add_samples("c", p.id, new)
        assert g.get_person("c", p.id).samples == 2 and g.stats().collections[0].indexed == 2
        assert g.search("c", new[0], k=1, model_id="m")[0][0].sample_id in sids and g.check() == []

        failures.clear()
        with pytest.raises(FaceAtlasError, match="injected"):
            g.delete_sample("c", sids[0])
        hit = g.search("c", ts[0], k=1, model_id="m")[0][0]  # the template was put back
        assert hit.sample_id == sids[0] and hit.score > 0.999
        assert g.search("c", ts[0], k=1, aggregate="centroid", model_id="m")[0][0].person_id == p.id and g.check() == []

        failures.clear()
        with pytest.raises(FaceAtlasError, match="injected"):
            g.delete_person("c", p.id)
        assert g.get_person("c", p.id).samples == 2 and g.stats().collections[0].indexed == 2

        monkeypatch.setattr(MilvusBackend, "set_centroids", original)
        out = tmp_path / "c.jsonl"
        g.export_collection("c", out)
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(out.read_text().splitlines()[:-1]) + "\n")  # no end line: fails after the writes
        before = _milvus_names(lite_dir, g)
        with pytest.raises(FaceAtlasError) as ei:
            g.import_collection(bad, name="broken")
        assert ei.value.code == "import_invalid" and _milvus_names(lite_dir, g) == before
        g.delete_collection("c")
        assert _milvus_names(lite_dir, g) == []
    finally:
        g.close()


@needs_milvus
def test_milvus_templates_without_a_sample_row_are_never_returned(lite_dir: Path, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    rng = np.random.default_rng(15)
    with Gallery.open(f"milvus-lite:{lite_dir}", meta_path=tmp_path / "o.sqlite") as g:
        col = g.create_collection("c", "m", SHA, DIM)
        people = enrol(g, rng, 5, 2)
        pid = next(iter(people))
        stray = unit(rng, 1)[0]
        client = MilvusClient(str(lite_dir))  # what a write interrupted between Milvus and the SQLite commit leaves
        try:
            name = f"{g.store.meta()['template_namespace']}_c{col.id}"
            client.upsert(name, [{"sample_id": 10**6, "person_id": pid, "collection_id": col.id, "vector": stray}])
        finally:
            client.close()
        hits = g.search("c", stray, k=5, model_id="m")[0]
        assert len(hits) == 5 and all(h.sample_id != 10**6 for h in hits) and max(h.score for h in hits) < 0.9
        assert g.stats().collections[0].indexed == 11
        assert any("no sample" in problem for problem in g.check())


# ---------------------------------------------------------------------- hardening (issue #12: M2, L2, L7)


@pytest.mark.parametrize("bad", ["a/b", "/", "a\\b", "tab\there", "nl\n", "nul\x00x", "del\x7f", ".", ".."])
def test_person_ids_that_cannot_be_one_url_segment_are_refused(gallery: Gallery, bad: str) -> None:
    """A new external id with '/', '\\', a control character, or '.'/'..' is refused before anything is written."""
    rng = np.random.default_rng(40)
    for add in (
        lambda: gallery.add_person("c", bad),
        lambda: gallery.add_person_with_samples("c", bad, templates(rng, 1)),
    ):
        with pytest.raises(FaceAtlasError) as ei:
            add()
        assert ei.value.code == "invalid_input"
        assert "must not" in str(ei.value)
    assert gallery.list_persons("c") == [] and gallery.get_collection("c").samples == 0
    for fine in ("José Müller", "李小龙", "a.b", "...", "x-y_z@example.org", "emoji 🙂"):
        assert gallery.add_person("c", fine).external_id == fine


def test_nfc_and_nfd_forms_name_the_same_person_and_collection(gallery: Gallery) -> None:
    """Person ids and collection names are NFC-normalised on create and on every lookup."""
    nfd, nfc = "Jose\u0301", "Jos\u00e9"
    p = gallery.add_person("c", nfd, name="José")
    assert p.external_id == nfc
    assert gallery.get_person("c", nfc).id == p.id and gallery.get_person("c", nfd).id == p.id
    with pytest.raises(FaceAtlasError) as ei:
        gallery.add_person("c", nfc)
    assert ei.value.code == "conflict"
    rng = np.random.default_rng(41)
    t = templates(rng, 1)
    assert len(gallery.add_samples("c", nfc, t)) == 1
    col = gallery.create_collection("Cafe\u0301", "m", SHA, DIM)
    assert col.name == "Caf\u00e9" and gallery.get_collection("Caf\u00e9").id == col.id
    with pytest.raises(FaceAtlasError) as ei:
        gallery.create_collection("Caf\u00e9", "m", SHA, DIM)
    assert ei.value.code == "conflict"
    q = gallery.add_person("Caf\u00e9", "x")
    gallery.add_samples("Cafe\u0301", q.id, t)
    assert gallery.search("Caf\u00e9", t[0], k=1, model_id="m")[0][0].person_id == q.id
    assert gallery.search("Cafe\u0301", t[0], k=1, model_id="m")[0][0].person_id == q.id
    assert gallery.delete_person("c", nfd) == 1
    with pytest.raises(NotFoundError):
        gallery.get_person("c", nfc)


def test_existing_person_ids_with_a_slash_stay_readable_and_deletable(opener: Opener) -> None:
    """Rows written before the rule (here: straight into the file) are still reached by the library."""
    g = opener()
    g.create_collection("c", "m", SHA, DIM)
    g.add_samples("c", g.add_person("c", "legacy").id, templates(np.random.default_rng(42), 2))
    with sqlite3.connect(g.path) as conn:
        conn.execute("UPDATE persons SET external_id = 'dept/7' WHERE external_id = 'legacy'")
    conn.close()
    g.refresh()
    p = g.get_person("c", "dept/7")
    assert p.samples == 2 and [x.external_id for x in g.list_persons("c")] == ["dept/7"]
    assert g.delete_person("c", "dept/7") == 2
    assert g.list_persons("c") == []


@pytest.mark.parametrize("bad_id", [2**63, 2**63 + 5, 2**64, 2**200, -1, -(2**63) - 1])
def test_out_of_range_ids_are_not_found(gallery: Gallery, bad_id: int) -> None:
    """Ids SQLite cannot hold give ``not_found``, never an OverflowError."""
    rng = np.random.default_rng(43)
    p = gallery.add_person("c", "p")
    gallery.add_samples("c", p.id, templates(rng, 1))
    for call in (
        lambda: gallery.get_sample("c", bad_id),
        lambda: gallery.get_sample("c", bad_id, include_template=True),
        lambda: gallery.get_crop("c", bad_id),
        lambda: gallery.delete_sample("c", bad_id),
        lambda: gallery.get_person("c", bad_id),
        lambda: gallery.list_samples("c", bad_id),
        lambda: gallery.delete_person("c", bad_id),
    ):
        with pytest.raises(NotFoundError) as ei:
            call()
        assert ei.value.code == "not_found"
    assert gallery.list_persons("c", limit=2**70, offset=2**70) == []
    assert len(gallery.list_persons("c", limit=2**70)) == 1
    assert gallery.get_person("c", p.id).samples == 1


def test_add_person_with_samples_is_one_transaction(gallery: Gallery) -> None:
    """Person and samples are written together; any failure leaves neither (L7)."""
    rng = np.random.default_rng(44)
    ts = templates(rng, 3)
    person, sids = gallery.add_person_with_samples(
        "c", "alice", ts, name="Alice", metadata={"team": "a"}, qualities=[0.9, 0.8, 0.7],
        image_sha256="ab" * 32, crops=[b"c0", None, b"c2"], actor="enroller",
    )
    assert person.external_id == "alice" and person.name == "Alice" and person.samples == 3
    assert dict(person.metadata) == {"team": "a"} and len(sids) == 3
    assert [s.id for s in gallery.list_samples("c", "alice")] == sids
    assert gallery.get_sample("c", sids[0]).quality == pytest.approx(0.9) and gallery.get_crop("c", sids[2]) == b"c2"
    assert gallery.search("c", ts[1], k=1, model_id="m")[0][0].person_id == person.id
    assert {e.action for e in gallery.audit_log("c") if e.person_id == person.id} == {"add_person", "enrol"}
    # conflict: nothing new written
    with pytest.raises(FaceAtlasError) as ei:
        gallery.add_person_with_samples("c", "alice", templates(rng, 1))
    assert ei.value.code == "conflict"
    # a template of the wrong dimension after good ones: no person either
    bad = [*templates(rng, 2), Template(unit(rng, 1, DIM + 1)[0], "m")]
    with pytest.raises(FaceAtlasError) as ei:
        gallery.add_person_with_samples("c", "bob", bad)
    assert ei.value.code == "model_mismatch"
    with pytest.raises(FaceAtlasError) as ei:
        gallery.add_person_with_samples("c", "carol", templates(rng, 1, model="other"))
    assert ei.value.code == "model_mismatch"
    assert [p.external_id for p in gallery.list_persons("c")] == ["alice"]
    assert gallery.get_collection("c").samples == 3 and gallery.stats().collections[0].indexed == 3
    # no templates: just the person
    dave, none = gallery.add_person_with_samples("c", "dave", [])
    assert none == [] and dave.samples == 0 and gallery.get_person("c", "dave").id == dave.id
    gallery.refresh()
    assert gallery.search("c", ts[2], k=1, model_id="m")[0][0].person_id == person.id


def test_names_stored_before_normalisation_are_found_in_any_form(opener: Opener) -> None:
    """A collection name and a person id stored in NFD (written before NFC was enforced) are found by NFC and NFD."""
    g = opener()
    g.create_collection("tmp", "m", SHA, DIM)
    ts = templates(np.random.default_rng(45), 2)
    g.add_samples("tmp", g.add_person("tmp", "tmp-person").id, ts)
    nfd_col, nfd_person = "Cafe\u0301", "Rene\u0301e"
    with sqlite3.connect(g.path) as conn:
        conn.execute("UPDATE collections SET name = ? WHERE name = 'tmp'", (nfd_col,))
        conn.execute("UPDATE persons SET external_id = ? WHERE external_id = 'tmp-person'", (nfd_person,))
    conn.close()
    g.refresh()
    for col in (nfd_col, "Caf\u00e9"):
        assert g.get_collection(col).samples == 2
        for pid in (nfd_person, "Ren\u00e9e"):
            assert g.get_person(col, pid).samples == 2
        hit = g.search(col, ts[0], k=1, model_id="m")[0][0]
        assert hit.external_id == nfd_person
    assert g.delete_person("Caf\u00e9", "Ren\u00e9e") == 2
    assert g.search(nfd_col, ts[0], k=1, model_id="m") == [[]]
    assert g.delete_collection("Caf\u00e9") == 0
    assert g.list_collections() == []
