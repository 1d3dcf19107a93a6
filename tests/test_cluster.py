"""Face clustering: algorithms on synthetic vectors, metrics, LFW photo folders, incremental updates, promotion, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw

from faceatlas.cluster import (
    ClusterState,
    chinese_whispers,
    cluster_folder,
    cluster_metrics,
    cluster_vectors,
    connected_components,
    promote,
    relabel,
    similarity_edges,
    summarize,
    write_contact_sheet,
)
from faceatlas.errors import FaceAtlasError

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez"]


def blobs(seed: int = 0, groups: int = 4, per: int = 6, outliers: int = 3) -> tuple[np.ndarray, list[str]]:
    """Well-separated groups of unit vectors in 128-D plus a few lone outliers, with their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups + outliers, 128))
    rows, labels = [], []
    for g in range(groups):
        for _ in range(per):
            rows.append(centres[g] + 0.25 * np.linalg.norm(centres[g]) * rng.normal(size=128) / np.sqrt(128))
            labels.append(f"g{g}")
    for o in range(outliers):
        rows.append(centres[groups + o])
        labels.append(f"o{o}")
    x = np.array(rows)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("algorithm", ["chinese_whispers", "components", "agglomerative", "dbscan", "hdbscan"])
def test_algorithms_recover_separated_groups(algorithm: str) -> None:
    x, truth = blobs()
    labels = cluster_vectors(x, algorithm, threshold=0.5, min_size=2)
    m = cluster_metrics(labels, truth)
    if algorithm == "hdbscan":  # density-based without a threshold: lone points may pair up
        assert m.bcubed_f > 0.9 and m.bcubed_recall == pytest.approx(1.0)
        return
    assert m.bcubed_f == pytest.approx(1.0) and m.clusters == 4 and m.singletons == 3
    assert labels[-3:].tolist() == [-1, -1, -1]


def test_chinese_whispers_does_not_chain_like_components() -> None:
    # two dense groups joined by one weak bridge node: components merges them, chinese whispers keeps them apart
    n = 11
    edges = [(a, b) for a in range(5) for b in range(a + 1, 5)] + [(a, b) for a in range(6, 11) for b in range(a + 1, 11)]
    edges += [(4, 5), (5, 6)]
    i = np.array([e[0] for e in edges])
    j = np.array([e[1] for e in edges])
    w = np.array([0.9 if 5 not in e else 0.5 for e in edges], np.float32)
    assert len(set(connected_components(n, i, j).tolist())) == 1
    cw = chinese_whispers(n, i, j, w)
    assert len(set(cw[:5].tolist())) == 1 and len(set(cw[6:].tolist())) == 1 and cw[0] != cw[10]


def test_similarity_edges_match_brute_force() -> None:
    x, _ = blobs(seed=3)
    i, j, s = similarity_edges(x, 0.3, block=7)
    sims = x @ x.T
    want = {(a, b) for a in range(len(x)) for b in range(a + 1, len(x)) if sims[a, b] >= 0.3}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want
    assert np.allclose(s, sims[i, j], atol=1e-6)


def test_relabel_orders_by_size_and_drops_small() -> None:
    assert relabel([5, 5, 9, 9, 9, 7, -1], 2).tolist() == [1, 1, 0, 0, 0, -1, -1]
    assert relabel([3, 3, 4], 1).tolist() == [0, 0, 1]


def test_metrics_by_hand() -> None:
    # truth: a a a b b ; prediction: {0,1} {2,3} {4}
    m = cluster_metrics([0, 0, 1, 1, -1], ["a", "a", "a", "b", "b"])
    assert m.pairwise_precision == pytest.approx(1 / 2) and m.pairwise_recall == pytest.approx(1 / 4)
    assert m.bcubed_precision == pytest.approx((1 + 1 + 0.5 + 0.5 + 1) / 5)
    assert m.bcubed_recall == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 / 2 + 1 / 2) / 5)
    assert (m.clusters, m.singletons, m.classes, m.items) == (2, 1, 2, 5)
    perfect = cluster_metrics([1, 1, 0], ["x", "x", "y"])
    assert perfect.pairwise_f1 == 1.0 and perfect.bcubed_f == 1.0
    with pytest.raises(FaceAtlasError):
        cluster_metrics([0], ["a", "b"])


def test_bad_arguments() -> None:
    x, _ = blobs()
    for kwargs in ({"algorithm": "kmeans"}, {"threshold": 2.0}, {"min_size": 0}):
        with pytest.raises(FaceAtlasError) as err:
            cluster_vectors(x, **kwargs)  # type: ignore[arg-type]
        assert err.value.code == "invalid_input"
    assert cluster_vectors(np.zeros((0, 128), np.float32)).tolist() == []


def _photos(folder: Path, people: list[str], numbers: range) -> Path:
    """Copy LFW photos into a flat folder (no person names in the layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in people:
        for n in numbers:
            shutil.copy(lfw(name, n), folder / f"{name[:3].lower()}{n}.jpg")
    return folder


def _person_of(image: str) -> str:
    """The true person of a copied photo, from its LFW-derived name prefix."""
    prefix = Path(image).name[:3]
    return next(p for p in PEOPLE if p[:3].lower() == prefix)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, atlas: Any, lfw_dir: Path) -> dict[str, Any]:
    """Six people × three photos clustered from scratch (state kept for the incremental tests)."""
    folder = _photos(tmp_path_factory.mktemp("photos"), PEOPLE, range(1, 4))
    result, state = cluster_folder(folder, atlas)
    return {"folder": folder, "result": result, "state": state}


def test_lfw_subset_right_groups(first_run: dict[str, Any]) -> None:
    result = first_run["result"]
    assert len(result.clusters) == 6 and result.images == 18
    assert all(f.face > 0 for f in result.noise)  # only background faces (e.g. a bystander) are left over
    for c in result.clusters:
        assert len({_person_of(f.image) for f in c.faces}) == 1 and len(c.faces) == 3
        assert c.representative in c.faces and 0.3 < c.cohesion <= 1.0
    assert sorted(_person_of(c.faces[0].image) for c in result.clusters) == sorted(PEOPLE)
    out = result.to_dict()
    assert set(out) >= {"clusters", "noise"} and len(out["clusters"][0]["faces"][0]["box"]) == 4


def test_incremental_assignment_keeps_ids(first_run: dict[str, Any], atlas: Any, tmp_path: Path) -> None:
    state = first_run["state"]
    path = state.save(tmp_path / "state.npz")
    assert (path.stat().st_mode & 0o777) == 0o600
    loaded = ClusterState.load(path)
    before = {c.id: {_person_of(f.image) for f in c.faces} for c in summarize(loaded).clusters}
    folder = first_run["folder"]
    _photos(folder, PEOPLE, range(4, 5))  # one more photo of everyone
    result, updated = cluster_folder(folder, atlas, state=loaded)
    assert result.new_images == 6 and result.new_faces >= 6 and result.assigned_to_existing == 6
    after = {c.id: {_person_of(f.image) for f in c.faces} for c in result.clusters}
    assert after == before and all(len(c.faces) == 4 for c in result.clusters)
    again, _ = cluster_folder(folder, atlas, state=updated)
    assert again.new_images == 0 and again.new_faces == 0


def test_new_person_forms_a_new_cluster(first_run: dict[str, Any], atlas: Any, tmp_path: Path) -> None:
    state = ClusterState.load(first_run["state"].save(tmp_path / "s.npz"))
    folder = _photos(tmp_path / "more", ["Jean_Chretien"], range(1, 4))
    shutil.copy(lfw("Tony_Blair", 6), folder / "tony_extra.jpg")
    (folder / "broken.jpg").write_text("not an image")
    old_ids = {c.id for c in summarize(state).clusters}
    result, state = cluster_folder(folder, atlas, state=state)
    new = [c for c in result.clusters if c.id not in old_ids]
    assert result.assigned_to_existing == 1 and len(new) == 1 and len(new[0].faces) == 3
    assert all("jea" in Path(f.image).name for f in new[0].faces)
    assert [p.code for p in result.problems] == ["image_unsupported"]
    assert str((folder / "broken.jpg").resolve()) not in state.images  # tried again next time


def test_state_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a state")
    with pytest.raises(FaceAtlasError) as err:
        ClusterState.load(bad)
    assert err.value.code == "cluster_state_invalid"
    with pytest.raises(FaceAtlasError) as err:
        ClusterState.load(tmp_path / "missing.npz")
    assert err.value.code == "not_found"
    with pytest.raises(FaceAtlasError) as err:
        cluster_folder(tmp_path / "no-such-folder")
    assert err.value.code == "not_found"


def test_promote_to_gallery(first_run: dict[str, Any], atlas: Any, tmp_path: Path) -> None:
    from faceatlas.gallery import Gallery

    state = ClusterState.load(first_run["state"].save(tmp_path / "s.npz"))
    cluster = next(c for c in summarize(state).clusters if _person_of(c.faces[0].image) == "Ariel_Sharon")
    with Gallery.open(tmp_path / "g.db") as g:
        res = promote(state, cluster.id, g, "friends", "ariel", "Ariel Sharon")
        assert res.created_collection and res.created_person and res.samples == 3
        contract = g.get_collection("friends").contract
        assert (contract.model_id, contract.model_sha256, contract.dim) == (
            atlas.model_id, atlas.embedder.model_sha256, atlas.embedder.dim)
        probe = atlas.template(lfw("Ariel_Sharon", 7))[0].template
        assert g.search("friends", probe, k=1)[0][0].external_id == "ariel"
        again = promote(state, cluster.id, g, "friends", "ariel")
        assert not again.created_collection and not again.created_person and len(g.list_samples("friends", "ariel")) == 6
        with pytest.raises(FaceAtlasError) as err:
            promote(state, 999, g, "friends", "nobody")
        assert err.value.code == "not_found"
    assert state.promoted[cluster.id]["person"] == "ariel"
    assert summarize(state).clusters[[c.id for c in summarize(state).clusters].index(cluster.id)].person == "ariel"


def test_promote_refuses_another_model(first_run: dict[str, Any], tmp_path: Path) -> None:
    from faceatlas.gallery import Gallery

    state = first_run["state"]
    cluster = summarize(state).clusters[0]
    with Gallery.open(tmp_path / "g.db") as g:
        g.create_collection("other", "not-" + state.model_id, state.model_sha256, state.dim)
        g.create_collection("rebuilt", state.model_id, "0" * 64, state.dim)
        for collection in ("other", "rebuilt"):
            with pytest.raises(FaceAtlasError) as err:
                promote(state, cluster.id, g, collection, "someone")
            assert err.value.code == "model_mismatch"
            assert g.list_persons(collection) == []  # refused before the person was created
    assert cluster.id not in state.promoted


def test_contact_sheet(first_run: dict[str, Any], tmp_path: Path) -> None:
    result = first_run["result"]
    page = write_contact_sheet(result, tmp_path / "sheet.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 18 + len(result.noise) and page.count("class=\"rep\"") == 6
    assert "<script" not in page


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m faceatlas ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "faceatlas", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def test_cli_cluster_and_promote(tmp_path: Path, lfw_dir: Path) -> None:
    folder = _photos(tmp_path / "photos", PEOPLE[:3], range(1, 3))
    state, sheet, gallery = tmp_path / "state.npz", tmp_path / "sheet.html", tmp_path / "g.db"
    proc = run("cluster", str(folder), "--json", "--html", str(sheet), "--state", str(state))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert len(obj["clusters"]) == 3
    face = obj["clusters"][0]["faces"][0]
    assert Path(face["image"]).is_file() and len(face["box"]) == 4 and "id" in obj["clusters"][0]
    assert sheet.read_text().count("data:image/jpeg;base64,") == 6 + len(obj["noise"]) and state.is_file()
    cid = obj["clusters"][0]["id"]
    proc = run("cluster", "promote", "--state", str(state), "--cluster", str(cid), "--gallery", str(gallery),
               "--collection", "c", "--person", "p1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 2
    human = run("cluster", str(folder), "--state", str(state))
    assert human.returncode == 0 and "3 clusters" in human.stdout and "= p1" in human.stdout
    bad = run("cluster", str(tmp_path / "missing"))
    assert bad.returncode == 2 and bad.stderr.startswith("faceatlas: error [not_found]")
