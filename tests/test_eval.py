"""Evaluation end to end on real LFW data: one fold through the CLI, user pairs/folders, groups, calibration."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW, lfw

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "faceatlas", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled folder (symlinks to LFW: 6 people × 4 photos)."""
    if not LFW.is_dir():
        pytest.skip("LFW not available")
    root = tmp_path_factory.mktemp("people")
    for name in PEOPLE:
        (root / name).mkdir()
        for i in range(1, 5):
            (root / name / lfw(name, i).name).symlink_to(lfw(name, i))
    return root


@pytest.mark.slow
def test_one_lfw_fold_end_to_end(tmp_path: Path, lfw_dir: Path) -> None:
    out = tmp_path / "report"
    proc = run("eval", "lfw", "--folds", "1", "--no-identification", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    ver = rep["verification"]
    assert ver["pairs"] == 600 and ver["genuine"] == 300 and ver["failed_to_detect_pairs"] == 0
    assert ver["accuracy_at_threshold"] >= 0.985  # SFace at its a-priori default threshold on fold 1
    assert ver["roc_auc"] > 0.995 and ver["eer"] < 0.02
    assert ver["tar_at_far"]["0.001"]["resolvable"] is False  # 300 impostor pairs cannot resolve 1e-3
    assert ver["tar_at_far"]["0.01"]["tar"] > 0.97
    for name in ("roc.png", "det.png", "scores.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
    summary = (out / "summary.md").read_text()
    assert "## Verification" in summary and "![roc](roc.png)" in summary


def test_eval_folder_with_groups_and_pairs_csv(tmp_path: Path, people_dir: Path) -> None:
    groups = tmp_path / "groups.csv"
    groups.write_text("person,group\n" + "".join(f"{p},{'A' if i % 2 else 'B'}\n" for i, p in enumerate(PEOPLE)))
    out = tmp_path / "folder"
    proc = run("eval", "folder", str(people_dir), "--groups", str(groups), "--out", str(out), "--impostors-per-genuine", "2")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    ver = rep["verification"]
    assert ver["genuine"] == 6 * 6 and ver["impostor"] == 72
    assert ver["accuracy_at_threshold"] > 0.9
    assert set(rep["groups"]["groups"]) >= {"A", "B"} and rep["groups"]["threshold"] == ver["threshold"]
    pairs_csv = tmp_path / "pairs.csv"
    with pairs_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "same"])
        w.writerow([people_dir / "Tony_Blair/Tony_Blair_0001.jpg", people_dir / "Tony_Blair/Tony_Blair_0002.jpg", 1])
        w.writerow([people_dir / "Tony_Blair/Tony_Blair_0001.jpg", people_dir / "Colin_Powell/Colin_Powell_0002.jpg", 0])
    proc = run("eval", "pairs", str(pairs_csv), "--out", str(tmp_path / "p"), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["verification"]["accuracy_at_threshold"] == 1.0


def test_calibrate_then_far_threshold(tmp_path: Path, people_dir: Path) -> None:
    home = tmp_path / "home"
    env = {"FACEATLAS_HOME": str(home)}
    proc = run("calibrate", str(people_dir), "--name", "mine", env=env)
    assert proc.returncode == 0, proc.stderr
    cal_file = home / "calibrations" / "mine.json"
    data = json.loads(cal_file.read_text())
    assert data["n_impostors"] == (24 * 23 // 2) - 6 * 6 and data["model_id"] == "sface"
    a, b = str(people_dir / "Tony_Blair/Tony_Blair_0001.jpg"), str(people_dir / "Tony_Blair/Tony_Blair_0002.jpg")
    proc = run("--calibration", "mine", "verify", a, b,
               "--threshold", "far=0.01", "--json", env=env)
    obj = json.loads(proc.stdout)
    assert obj["threshold_source"].startswith("far=0.01") and obj["far"] is not None
    from faceatlas.calibration import Calibration

    cal = Calibration.load(cal_file)
    assert obj["threshold"] == pytest.approx(cal.threshold_for(0.01), abs=1e-4)
    too_low = run("--calibration", "mine", "verify", a, b,
                  "--threshold", "far=1e-6", env=env)
    assert too_low.returncode == 2 and "[far_unresolvable]" in too_low.stderr
    assert "lowest resolvable FAR" in too_low.stderr


def test_identification_through_gallery_matches_eval_suite(atlas, tmp_path: Path, people_dir: Path) -> None:
    """Rank-1 from the evaluation suite equals the gallery API's answers on the same split."""
    from faceatlas.evaluate.protocols import lfw_identification_split
    from faceatlas.evaluate.runner import embed_images, evaluate_identification
    from faceatlas.recognition import QualityGates, Recognizer

    split = lfw_identification_split(people_dir)
    keys = sorted({p for g in (split.gallery, split.known_probes) for _, p in g})
    ts = embed_images(atlas, [people_dir / k for k in keys], keys=keys, select="largest")
    res = evaluate_identification(ts, split, max_rank=5)
    rec = Recognizer(atlas, gallery_path=str(tmp_path / "g.db"))
    for person, rel in split.gallery:
        rec.enroll("lfw", person, [people_dir / rel], gates=QualityGates(0, 0, 0), multi_face="largest")
    correct = []
    for person, rel in split.known_probes:
        faces = atlas.embed(people_dir / rel, faces="one", select="largest")
        hit = rec.identify_faces("lfw", faces, k=1, threshold=-1.0)
        correct.append(bool(hit) and hit[0].matches[0].external_id == person)
    assert res.summary["rank1"] == pytest.approx(np.mean(correct))
    assert res.summary["rank1"] > 0.9


def test_flip_prefill_fills_both_caches_exactly(tmp_path: Path, lfw_dir: Path, models_dir: Path) -> None:
    """One pass embeds a model and its +flip twin; the cached templates equal the uncached pipeline's, and a copy
    of an image (same bytes, new path and mtime) still hits the cache."""
    from faceatlas.evaluate.runner import embed_images, prefill_flip_caches
    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore

    store = ModelStore(models_dir=models_dir)
    plain, flipped = FaceAtlas(embedder="sface", store=store), FaceAtlas(embedder="sface+flip", store=store)
    paths = [lfw(p, 1) for p in PEOPLE[:3]]
    keys = [p.name for p in paths]
    cache = tmp_path / "cache"
    assert prefill_flip_caches(plain, flipped, paths, keys=keys, cache_dir=cache) == 3
    for atlas in (plain, flipped):
        cached = embed_images(atlas, paths, keys=keys, cache_dir=cache)
        fresh = embed_images(atlas, paths, keys=keys, cache_dir=None)
        assert cached.computed == 0 and cached.found.all()
        np.testing.assert_allclose(cached.vectors, fresh.vectors, atol=1e-6)
    assert not np.allclose(embed_images(plain, paths, keys=keys, cache_dir=cache).vectors,
                           embed_images(flipped, paths, keys=keys, cache_dir=cache).vectors)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(paths[0].read_bytes())
    assert embed_images(plain, [copy], keys=keys[:1], cache_dir=cache).computed == 0


def test_evaluation_head_batches_do_not_change_templates(atlas) -> None:
    """The runner's faces-per-call (``head_batch``, default ``batch_faces()``) changes speed only: same templates as
    one big batch and as the pipeline's own ``embed``."""
    from faceatlas.evaluate.runner import embed_images

    paths = [lfw(p, 1) for p in PEOPLE[:5]]
    runs = {b: embed_images(atlas, paths, select="largest", head_batch=b) for b in (None, 1, 3, 32)}
    for ts in runs.values():
        assert ts.found.all() and ts.computed == len(paths)
        np.testing.assert_allclose(ts.vectors, runs[32].vectors, atol=1e-5)
    direct = np.stack([atlas.embed(p, faces="one", select="largest")[0].template.vector for p in paths])
    np.testing.assert_allclose(runs[None].vectors, direct, atol=1e-5)
