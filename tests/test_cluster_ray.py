"""``faceatlas cluster --ray``: the photos are embedded on Ray actors, the graph step runs here, and the result equals
the local run (same faces, same templates, same clusters, same problems).

A local Ray (2 CPUs, 2 actors) on 30 LFW photos of 5 people plus one broken file; skipped when Ray is not installed.
The Ray runs are marked slow (``pytest -m slow tests/test_cluster_ray.py``); the worker check runs by default.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw
from typer.testing import CliRunner

from faceatlas.cli import app
from faceatlas.cluster import ClusterState, cluster_folder

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon"]


@pytest.fixture(scope="module")
def photos(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six LFW photos of each of five people, one sub-folder each, and a file that is not an image."""
    dest = tmp_path_factory.mktemp("photos")
    for name in PEOPLE:
        (dest / name).mkdir()
        for n in range(1, 7):
            shutil.copy(lfw(name, n), dest / name)
    (dest / "broken.jpg").write_text("not an image")
    return dest


def without_timing(result: Any) -> dict[str, Any]:
    """A cluster result as JSON, less the timings (the only part that may differ between runs)."""
    out = result if isinstance(result, dict) else result.to_dict()
    return {k: v for k, v in out.items() if k != "seconds"}


def cli(*args: str) -> str:
    """Run the command line in-process; its stdout."""
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture(scope="module")
def runs(photos: Path, tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    """``cluster --json --state`` run locally with one model thread, and on Ray with 2 actors."""
    tmp = tmp_path_factory.mktemp("runs")
    local = cli("--threads", "1", "cluster", str(photos), "--json", "--state", str(tmp / "local.npz"))
    on_ray = cli("cluster", str(photos), "--json", "--ray", "local", "--ray-actors", "2", "--state", str(tmp / "ray.npz"))
    return {"local": json.loads(local), "ray": json.loads(on_ray), "local_state": tmp / "local.npz",
            "ray_state": tmp / "ray.npz"}


@pytest.mark.slow  # starts Ray and runs the command twice: 23-64 s here (2 shared cores, load 9-10)
def test_ray_clusters_equal_local(runs: dict[str, Any], photos: Path, atlas: Any) -> None:
    """Same faces, bit-identical templates, same clusters and problems as the local run; JSON stdout only."""
    local, on_ray = runs["local"], runs["ray"]
    assert len(local["clusters"]) == 5 and all(c["size"] == 6 for c in local["clusters"])
    assert [p["code"] for p in local["problems"]] == ["image_unsupported"] and local["images"] == 30
    assert without_timing(on_ray) == without_timing(local)
    a, b = ClusterState.load(runs["local_state"]), ClusterState.load(runs["ray_state"])
    assert a.faces == b.faces and a.images == b.images
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.labels, b.labels)
    # the shared fixture runs its models on several threads: templates differ in the last bits, clusters do not
    default, default_state = cluster_folder(photos, atlas)
    assert without_timing(default) == without_timing(local)
    assert np.allclose(default_state.vectors, b.vectors, rtol=0, atol=1e-5)


@pytest.mark.slow  # needs the Ray runs above; 6-15 s more
def test_ray_run_adds_to_a_state(runs: dict[str, Any], photos: Path, tmp_path: Path) -> None:
    """Again on Ray with the same state: only the unreadable file is tried again, clusters are kept."""
    state = shutil.copy(runs["ray_state"], tmp_path / "state.npz")
    out = cli("cluster", str(photos), "--ray", "local", "--ray-actors", "2", "--state", str(state))
    assert "5 clusters" in out and "this run: 1 new images, 0 new faces" in out
    assert "ray: 1 images in" in out and "on 2 actors" in out
    a, b = ClusterState.load(runs["ray_state"]), ClusterState.load(state)
    assert np.array_equal(a.labels, b.labels) and a.faces == b.faces


def test_worker_clusters_like_the_local_pipeline(photos: Path) -> None:
    """Without Ray: a worker's per-image faces are exactly what the local embedding yields for those images."""
    from faceatlas.cluster import embed_photos
    from faceatlas.distributed import PhotoWorker

    paths = [*sorted(str(p) for p in photos.rglob("*_000[12].jpg")), str(photos / "broken.jpg")]
    worker = PhotoWorker({})
    items = worker.cluster_faces(paths).items
    faces, vecs, problems = embed_photos(worker.pipeline(), [Path(p) for p in paths])
    assert [f for item in items for f in item.faces] == faces
    assert np.array_equal(np.concatenate([item.vectors for item in items]), vecs)
    assert [item.problem for item in items if item.problem] == problems and len(problems) == 1


def test_nothing_to_embed_does_not_touch_ray() -> None:
    """A run with no new photo never connects (an unreachable address is not even tried)."""
    from faceatlas.distributed.cluster import RayPhotoEmbedder

    on_ray = RayPhotoEmbedder("ray://192.0.2.1:1", {}, 128)
    faces, vecs, problems = on_ray([], None)
    assert faces == [] and vecs.shape == (0, 128) and problems == [] and on_ray.note() == ""
