"""Bulk work on Ray: the same samples as the local path, exactly-once writes, resume, crash retry, Parquet output, and
a stdout that carries only the command's output (Ray's notices go to stderr).

A local Ray (2 CPUs, 2 actors) on about 20 LFW images; skipped when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from faceatlas.cli import app
from faceatlas.distributed import PhotoWorker, Skipped, file_sha256
from faceatlas.recognition import PreparedFace
from faceatlas.types import Rejection


@pytest.fixture(scope="module")
def people(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of symlinks to the first LFW people, at least 20 images in all."""
    dest = tmp_path_factory.mktemp("people")
    count = 0
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        (dest / person.name).symlink_to(person)
        count += sum(1 for _ in person.iterdir())
        if count >= 20:
            break
    return dest


def samples(gallery: Path) -> dict[tuple[str, str], np.ndarray]:
    """(person, image hash) → template of every sample in collection ``c``."""
    from faceatlas.gallery import Gallery

    g = Gallery.open(str(gallery))
    try:
        out: dict[tuple[str, str], np.ndarray] = {}
        for person in g.list_persons("c"):
            for s in g.list_samples("c", person.id):
                key = (person.external_id, str(s.image_sha256))
                assert key not in out, f"duplicate sample {key}"
                template = g.get_sample("c", s.id, include_template=True).template
                assert template is not None
                out[key] = np.asarray(template.vector)
        return out
    finally:
        g.close()


def enrol(folder: Path, gallery: Path, *extra: str) -> str:
    """Run enroll-dir; its output."""
    res = CliRunner().invoke(app, ["enroll-dir", str(folder), "--collection", "c", "--gallery", str(gallery), *extra])
    assert res.exit_code == 0, res.output
    return res.output


def test_worker_prepares_rejects_and_skips(people: Path) -> None:
    """Without Ray: a worker enrols faces, gives reasons for refusals, and skips images the collection holds."""
    paths = sorted(str(p) for d in people.iterdir() for p in d.iterdir())[:6]
    worker = PhotoWorker({})
    first = worker.prepare(paths).items
    assert all(isinstance(i, (PreparedFace, Rejection)) for i in first)
    assert any(isinstance(i, PreparedFace) for i in first)
    known = frozenset(i.image_sha256 for i in first if isinstance(i, PreparedFace) and i.image_sha256)
    again = PhotoWorker({}, known=known, pipeline=worker.pipeline()).prepare(paths).items
    skipped = [i for i in again if isinstance(i, Skipped)]
    assert {s.image_sha256 for s in skipped} == known
    assert all(file_sha256(s.source) == s.image_sha256 for s in skipped)


def test_ray_enrolment_equals_local_and_resumes(people: Path, tmp_path: Path, ray_local: Any) -> None:
    """--ray local with 2 actors enrols the same samples with identical templates; a re-run skips them all."""
    enrol(people, tmp_path / "local.db")
    out = enrol(people, tmp_path / "ray.db", "--ray", "local", "--ray-actors", "2")
    assert "on 2 Ray actors" in out
    local, distributed = samples(tmp_path / "local.db"), samples(tmp_path / "ray.db")
    assert len(local) >= 15
    assert local.keys() == distributed.keys()
    assert all(np.array_equal(local[k], distributed[k]) for k in local)
    again = enrol(people, tmp_path / "ray.db", "--ray", "local", "--ray-actors", "2")
    assert f"{len(local)} already enrolled (skipped)" in again
    assert samples(tmp_path / "ray.db").keys() == local.keys()


def test_killed_worker_is_restarted_and_nothing_is_lost(people: Path, ray_local: Any) -> None:
    """A worker process killed by pid comes back; every image still gets exactly one answer, in order."""
    from faceatlas.distributed.ray_runner import NodeTally, RayPhotoPool, enrol_by_person

    paths = sorted(str(p) for d in people.iterdir() for p in d.iterdir())
    labels = [Path(p).parent.name for p in paths]
    pool = RayPhotoPool("local", {}, actors=2)
    try:
        victim = pool.pids()[0]
        tally = NodeTally()
        got: list[tuple[str, Any]] = []
        for _, items in enrol_by_person(pool, paths, labels, tally):
            if not got:  # mid-run: the first person is back, later calls are queued on both actors
                os.kill(victim, signal.SIGKILL)
            got.extend(items)
        assert [p for p, _ in got] == paths
        assert all((item.image if isinstance(item, Rejection) else item.source) == path for path, item in got)
        assert victim not in pool.pids()
        assert sum(tally.pids.values()) == len(paths)
    finally:
        pool.shutdown()


def test_embed_dir_parquet_local_and_ray(people: Path, tmp_path: Path, ray_local: Any) -> None:
    """embed-dir writes one row per face (template, box, scores, hash); Ray and local give the same rows."""
    import pyarrow.parquet as pq

    runner = CliRunner()
    for name, extra in (("local", []), ("ray", ["--ray", "local", "--ray-actors", "2"])):
        res = runner.invoke(app, ["embed-dir", str(people), "--out", str(tmp_path / f"{name}.parquet"), *extra])
        assert res.exit_code == 0, res.output
    local, ray = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert local.num_rows >= 20 and local.num_rows == ray.num_rows
    assert local.schema.metadata[b"faceatlas.model_id"] == b"sface"
    assert local.column("image_sha256").to_pylist() == ray.column("image_sha256").to_pylist()
    first = local.slice(0, 1).to_pylist()[0]
    assert first["image_sha256"] == file_sha256(first["path"])
    assert len(first["template"]) == int(local.schema.metadata[b"faceatlas.dim"])
    a = np.asarray(local.column("template").to_pylist(), dtype=np.float32)
    b = np.asarray(ray.column("template").to_pylist(), dtype=np.float32)
    assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-3)


def test_stdout_guard_sends_ray_and_other_threads_to_stderr() -> None:
    """Without Ray: the owner thread's writes reach stdout; another thread's, or code in a ``ray.*`` module, stderr."""
    import io
    import threading

    from faceatlas.distributed.ray_runner import StdoutForOwnerOnly

    out, err, saved = io.StringIO(), io.StringIO(), sys.stderr
    guard = StdoutForOwnerOnly(out, threading.get_ident())
    ray_code: dict[str, Any] = {"__name__": "ray._private.worker"}
    exec("def notice(f):\n    print('(raylet) held back', file=f)", ray_code)  # what Ray runs at shutdown
    patched: dict[str, Any] = {"__name__": "ray.experimental.tqdm_ray"}
    exec("def safe_print(*a, **k):\n    print(*a, **k)", patched)  # Ray's stand-in for print once it printed
    sys.stderr = err
    try:
        print('{"json": 1}', file=guard)
        patched["safe_print"]('{"json": 2}', file=guard)
        worker = threading.Thread(target=lambda: print("(raylet) a worker died", file=guard))
        worker.start()
        worker.join()
        ray_code["notice"](guard)
        guard.flush()
    finally:
        sys.stderr = saved
    assert out.getvalue() == '{"json": 1}\n{"json": 2}\n'
    assert err.getvalue() == "(raylet) a worker died\n(raylet) held back\n"
    assert guard.getvalue() == out.getvalue()  # everything else comes from the real stream


def test_connect_from_the_library_leaves_stdout_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the CLI redirects Ray's notices: ``connect`` called from a program keeps that program's ``sys.stdout``."""
    import types

    from faceatlas.distributed import ray_runner

    calls: list[dict[str, Any]] = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray_runner, "_ray", lambda: fake)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test, whatever happens
    before = sys.stdout
    assert ray_runner.connect("local", num_cpus=1) is fake
    assert sys.stdout is before and calls and calls[0]["log_to_driver"] is False
    ray_runner.guard_stdout()  # what the CLI's --ray paths call first
    assert isinstance(sys.stdout, ray_runner.StdoutForOwnerOnly)


def descendants(root: int) -> dict[int, str]:
    """Process id → command line of every process below ``root`` (read from /proc)."""
    parent: dict[int, int] = {}
    command: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    out = {}
    for pid in parent:
        up = parent[pid]
        while up not in (root, 0, 1) and up in parent:
            up = parent[up]
        if up == root:
            out[pid] = command[pid]
    return out


@pytest.mark.slow  # a real command in a subprocess with its own Ray, and a kill -9: 25-52 s here (load 9-10)
def test_json_stdout_is_only_json_when_a_worker_dies(lfw_dir: Path, tmp_path: Path) -> None:
    """``enroll-dir --ray local --json`` with a worker killed mid-run: Ray's notices go to stderr, stdout is JSON."""
    pytest.importorskip("ray")
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc to find the worker processes")
    folder = tmp_path / "people"
    folder.mkdir()
    count = 0
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        (folder / person.name).symlink_to(person)
        count += sum(1 for _ in person.iterdir())
        if count >= 48:  # six chunks: work is still queued on both actors when the first person is printed
            break
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceatlas", "enroll-dir", str(folder), "--collection", "c", "--gallery",
         str(tmp_path / "g.db"), "--ray", "local", "--ray-actors", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        workers = [pid for pid, cmd in descendants(proc.pid).items() if "_RayPhotoWorker" in cmd]
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        rest, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    people = [json.loads(line)["person"] for line in [first, *rest.splitlines()]]
    assert people == sorted(p.name for p in folder.iterdir())
    assert "(raylet)" in err  # Ray did report the dead worker, on stderr
