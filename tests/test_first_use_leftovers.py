"""#15 leftovers: extras checked before work (ray, milvus), cached eval timing, DET ticks, promote warnings, lost key."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lfw

MISSING = "faceatlas: error [missing_dependency]: "
REAL_FIND_SPEC = importlib.util.find_spec


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], absent: set[str], *args: str) -> str:
    """Run the CLI in-process with ``absent`` modules hidden from find_spec; return stderr (exit 2 expected)."""
    from faceatlas.cli import main

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] in absent else REAL_FIND_SPEC(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(sys, "argv", ["faceatlas", *args])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    return err.strip()


def test_missing_extras_are_named_before_any_work(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    nowhere = str(tmp_path / "no-such-folder")  # any work would fail on it first with not_found
    lite = "milvus-lite:" + str(tmp_path / "m.db")
    milvus = f"{MISSING}faceatlas %s needs the milvus extra: pip install 'faceatlas[milvus]' (missing: %s)"
    ray = f"{MISSING}faceatlas %s needs the ray extra: pip install 'faceatlas[ray]' (missing: %s)"
    assert _cli(monkeypatch, capsys, {"ray"}, "enroll-dir", nowhere, "-c", "c", "--ray", "local") == \
        ray % ("enroll-dir --ray", "ray")
    assert _cli(monkeypatch, capsys, {"pyarrow"}, "embed-dir", nowhere, "--out", str(tmp_path / "o.parquet")) == \
        ray % ("embed-dir", "pyarrow")
    assert _cli(monkeypatch, capsys, {"ray"}, "embed-dir", nowhere, "--out", str(tmp_path / "o.parquet"),
                "--ray", "local") == ray % ("embed-dir", "ray")
    hidden = {"pymilvus", "milvus_lite"}
    assert _cli(monkeypatch, capsys, hidden, "collection", "list", "--gallery", lite) == \
        milvus % ("--gallery milvus-lite:…", "pymilvus, milvus_lite")
    assert _cli(monkeypatch, capsys, {"milvus_lite"}, "person", "list", "-c", "c", "--gallery", lite) == \
        milvus % ("--gallery milvus-lite:…", "milvus_lite")
    assert _cli(monkeypatch, capsys, {"pymilvus"}, "collection", "list", "--gallery", "milvus://127.0.0.1:1") == \
        milvus % ("--gallery milvus://…", "pymilvus")
    assert _cli(monkeypatch, capsys, hidden, "enroll-dir", nowhere, "-c", "c", "--gallery", lite) == \
        milvus % ("--gallery milvus-lite:…", "pymilvus, milvus_lite")
    assert _cli(monkeypatch, capsys, hidden, "video", str(tmp_path / "missing.mp4"), "-c", "c", "--gallery", lite) == \
        milvus % ("--gallery milvus-lite:…", "pymilvus, milvus_lite")
    # the default gallery from the environment counts too
    monkeypatch.setenv("FACEATLAS_GALLERY", lite)
    assert _cli(monkeypatch, capsys, hidden, "collection", "list") == \
        milvus % ("with the gallery milvus-lite:… (FACEATLAS_GALLERY)", "pymilvus, milvus_lite")


def test_video_needs_no_extra_without_a_milvus_gallery(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # scipy is optional for video (greedy matching without it): a missing file is the only complaint
    err = _cli(monkeypatch, capsys, {"scipy", "pymilvus", "milvus_lite"}, "video", str(tmp_path / "missing.mp4"))
    assert "missing_dependency" not in err and err.startswith("faceatlas: error ["), err


def test_cached_eval_reports_the_cached_runs_seconds_per_image(atlas: Any, tmp_path: Path, lfw_dir: Path) -> None:
    from faceatlas.evaluate.runner import embed_images

    paths = [lfw("Colin_Powell", i) for i in (1, 2)] + [lfw("Tony_Blair", i) for i in (1, 2)]
    first = embed_images(atlas, paths, cache_dir=tmp_path)
    assert first.computed == 4 and first.seconds_per_image()[1] == "this run"
    again = embed_images(atlas, paths, cache_dir=tmp_path)
    per_image, source = again.seconds_per_image()
    assert again.computed == 0 and source == "cache"
    assert per_image == pytest.approx(first.seconds / 4, rel=1e-2) and per_image > 0.001
    more = embed_images(atlas, [*paths, lfw("Colin_Powell", 3)], cache_dir=tmp_path)
    assert more.computed == 1 and more.cached_seconds_per_image == pytest.approx(
        (first.seconds + more.seconds) / 5, rel=1e-2)


def test_cli_eval_lfw_from_the_cache_prints_seconds_per_image(tmp_path: Path, lfw_dir: Path) -> None:
    root = tmp_path / "lfw"
    (root / "images").mkdir(parents=True)
    people = ["Colin_Powell", "Tony_Blair", "George_W_Bush"]
    for p in people:
        (root / "images" / p).symlink_to(lfw(p, 1).parent)
    (root / "pairs.txt").write_text("1\t3\n" + "".join(f"{p}\t1\t2\n" for p in people)
                                    + f"{people[0]}\t1\t{people[1]}\t1\n{people[1]}\t2\t{people[2]}\t1\n"
                                    + f"{people[2]}\t2\t{people[0]}\t2\n")
    env = {**os.environ, "FACEATLAS_HOME": str(tmp_path / "home")}
    runs = []
    for n in range(2):
        proc = subprocess.run([sys.executable, "-m", "faceatlas", "eval", "lfw", "--data", str(root), "--folds", "1",
                               "--no-identification", "--out", str(tmp_path / f"r{n}"), "--json"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    assert runs[0]["embedded_now"] == 6 and runs[0]["seconds_per_image_from"] == "this run"
    assert runs[1]["embedded_now"] == 0 and runs[1]["seconds_per_image_from"] == "cache"
    assert runs[1]["seconds_per_image"] == pytest.approx(runs[0]["seconds_per_image"], rel=0.01)
    summary = (tmp_path / "r1" / "summary.md").read_text()
    assert f"**seconds_per_image**: {runs[1]['seconds_per_image']}" in summary and "**seconds_per_image_from**: cache" in summary


@pytest.mark.parametrize("x_range,y_range", [((3e-3, 2.5e-2), (0.2, 0.9)), ((3.3e-4, 0.12), (3e-4, 7e-2)),
                                              ((1e-7, 1.0), (2e-3, 3e-3))])
def test_det_ticks_are_powers_of_ten_and_never_overlap(x_range: tuple[float, float], y_range: tuple[float, float],
                                                       tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from faceatlas.evaluate.report import _decade_ticks

    fig, ax = plt.subplots(figsize=(5, 4))
    x = np.geomspace(*x_range, 50)
    y = np.geomspace(*y_range, 50)[::-1]
    ax.plot(x, y)
    ax.set(xscale="log", yscale="log")
    _decade_ticks(ax.xaxis, x, ax.set_xlim)
    _decade_ticks(ax.yaxis, y, ax.set_ylim)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for axis in (ax.xaxis, ax.yaxis):
        labels = [t for t in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True)
                  if t.get_visible() and t.get_text()]
        lo, hi = axis.get_view_interval()
        labels = [t for t in labels if lo * 0.999 <= (t.get_position()[0] if axis is ax.xaxis else t.get_position()[1])
                  <= hi * 1.001]
        assert 2 <= len(labels) <= 6, [t.get_text() for t in labels]
        assert all(t.get_text().startswith("$\\mathdefault{10^{") for t in labels), [t.get_text() for t in labels]
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in zip(boxes, boxes[1:], strict=False):
            assert not a.overlaps(b), (a, b)
        assert lo <= min(x_range if axis is ax.xaxis else y_range) and hi >= max(x_range if axis is ax.xaxis else y_range)
    plt.close(fig)


def test_cluster_promote_warns_when_the_person_exists_under_another_id(atlas: Any, tmp_path: Path,
                                                                       lfw_dir: Path) -> None:
    from faceatlas.cluster import ClusterState, cluster_folder, promote
    from faceatlas.gallery import Gallery

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in (1, 2, 3):
        (folder / f"colin{i}.jpg").symlink_to(lfw("Colin_Powell", i))
    _, state = cluster_folder(folder, atlas)
    assert isinstance(state, ClusterState)
    cid = int(state.labels[state.labels >= 0][0])
    with Gallery.open(tmp_path / "g.db") as g:
        from faceatlas.recognition import Recognizer

        Recognizer(atlas, g).enroll("people", "cp-001", [lfw("Colin_Powell", 4), lfw("Colin_Powell", 5)],
                                    name="Colin Powell")
        res = promote(state, cid, g, "people", "colin", "Colin Powell")
        assert res.created_person and len(res.warnings) == 2, res.warnings
        assert "match person 'cp-001'" in res.warnings[0] and "may already be enrolled as 'cp-001'" in res.warnings[0]
        assert res.warnings[1] == "a person named 'Colin Powell' already exists as id 'cp-001'"
        assert res.to_dict()["warnings"] == list(res.warnings)
        # a different person: no warning; promoting into the same id again is not a clash
        Recognizer(atlas, g).enroll("other", "tony", [lfw("Tony_Blair", 2)])
        assert promote(state, cid, g, "other", "colin").warnings == ()


def test_second_start_says_how_to_make_an_admin_key(tmp_path: Path) -> None:
    from faceatlas.server.keys import KeyStore
    from faceatlas.server.run import first_run_key, key_hint
    from faceatlas.server.settings import ServerSettings

    settings = ServerSettings(keys_db=str(tmp_path / "keys.db"))
    assert key_hint(settings) is None  # nothing yet: the first start prints a key instead
    assert first_run_key(settings) is not None
    hint = key_hint(settings)
    assert hint is not None and "1 active (1 admin)" in hint and "faceatlas keys create --scope admin" in hint
    store = KeyStore(settings.keys_db)
    admin = store.list()[0]
    store.create("read", ["*"], name="reader")
    store.revoke(admin.id)
    hint = key_hint(settings)
    assert hint == "No active admin API key (1 other active key(s)). Create one with: faceatlas keys create --scope admin"
    assert key_hint(ServerSettings(keys_db=str(tmp_path / "keys.db"), auth=False)) is None


def test_second_real_start_prints_the_hint(tmp_path: Path, lfw_dir: Path) -> None:
    pytest.importorskip("uvicorn")
    from faceatlas.server.launcher import ServerProcess

    with ServerProcess(tmp_path / "home") as first:
        assert first.admin_key is not None and "First run" in first.logs()
    with ServerProcess(tmp_path / "home") as second:
        logs = second.logs()
        assert second.admin_key is None and "First run" not in logs
        assert "Lost it? Create a new one with: faceatlas keys create --scope admin" in logs, logs
