"""SQLite gallery storage: deletes scrubbed from disk, corruption, refresh, threads, processes, kill -9.

Behaviour shared by every backend (CRUD, contracts, not-found paths, search, export/import) is tested
once per backend in ``test_gallery_backends.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceatlas.errors import FaceAtlasError, NotFoundError
from faceatlas.gallery import Gallery
from faceatlas.gallery.store import SCHEMA_VERSION
from faceatlas.types import Template

DIM = 128
SHA = "0123456789abcdef" * 4
SRC = str(Path(__file__).resolve().parents[1] / "src")


def rand_templates(rng: np.random.Generator, n: int, model: str = "m") -> list[Template]:
    """Random unit-vector templates."""
    return [Template(v, model) for v in rng.standard_normal((n, DIM)).astype(np.float32)]


def file_bytes(path: Path) -> bytes:
    """Raw bytes of the database file and its WAL (if any)."""
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def on_disk(path: Path, blob: bytes) -> bool:
    """Whether ``blob`` occurs anywhere in the gallery's files."""
    return blob in file_bytes(path)


@pytest.fixture()
def gallery(tmp_path: Path) -> Iterator[Gallery]:
    """A fresh gallery with collection ``c`` (model ``m``, dim 128)."""
    g = Gallery.open(tmp_path / "g.db", actor="tester")
    g.create_collection("c", "m", SHA, DIM)
    yield g
    g.close()


def test_delete_sample_scrubs_search_and_disk(gallery: Gallery) -> None:
    g = gallery
    rng = np.random.default_rng(3)
    people = [g.add_person("c", f"p{i}") for i in range(30)]
    enrolled: dict[int, tuple[int, Template]] = {}
    for p in people:
        ts = rand_templates(rng, 4)
        for sid, t in zip(g.add_samples("c", p.id, ts), ts, strict=True):
            enrolled[sid] = (p.id, t)
    crop = bytes(rng.integers(0, 256, 3000, dtype=np.uint8))
    crop_sid = g.add_samples("c", people[0].id, rand_templates(rng, 1), crops=crop)[0]
    victim, (owner, t) = next(iter(enrolled.items()))
    assert on_disk(g.path, t.vector.tobytes()) and on_disk(g.path, crop)  # the scan does see live data
    g.delete_sample("c", victim)
    g.delete_sample("c", crop_sid)
    hits = g.search("c", t, k=200, model_id="m")[0]
    assert all(c.sample_id != victim for c in hits)
    assert owner in {c.person_id for c in hits}  # the owner's other samples remain searchable
    assert max(c.score for c in hits) < 0.9
    assert not on_disk(g.path, t.vector.tobytes())
    assert not on_disk(g.path, crop)
    with pytest.raises(NotFoundError):
        g.get_sample("c", victim)
    for sid, (_, other) in list(enrolled.items())[1:]:
        assert on_disk(g.path, other.vector.tobytes()), sid
    g.close()
    assert not on_disk(g.path, t.vector.tobytes())
    audit = [e for e in Gallery.open(g.path).audit_log("c") if e.action == "delete_sample"]
    assert [list(e.sample_ids) for e in audit] == [[crop_sid], [victim]]


def test_delete_person_and_collection_scrub_search_and_disk(gallery: Gallery) -> None:
    g = gallery
    rng = np.random.default_rng(4)
    per: dict[int, list[Template]] = {}
    for i in range(40):
        p = g.add_person("c", f"p{i}")
        per[p.id] = rand_templates(rng, 5)
        g.add_samples("c", p.id, per[p.id])
    victims = list(per)[::3]
    for pid in victims:
        assert g.delete_person("c", pid) == 5
    for pid in victims:
        for t in per[pid]:
            assert all(c.person_id != pid for c in g.search("c", t, k=50, model_id="m")[0])
            assert not on_disk(g.path, t.vector.tobytes())
        with pytest.raises(NotFoundError):
            g.get_person("c", pid)
    assert g.get_collection("c").persons == 40 - len(victims)
    # centroid search must forget deleted persons too
    g.search("c", per[victims[0]][0], aggregate="centroid", model_id="m")
    keep = [pid for pid in per if pid not in victims]
    g.delete_person("c", keep[0])
    assert all(c.person_id != keep[0] for c in g.search("c", per[keep[0]][0], k=50, aggregate="centroid", model_id="m")[0])

    assert g.delete_collection("c") == 5 * (len(keep) - 1)
    with pytest.raises(NotFoundError):
        g.search("c", per[keep[1]][0], model_id="m")
    for pid in keep:
        for t in per[pid]:
            assert not on_disk(g.path, t.vector.tobytes())
    assert g.list_collections() == []
    g.close()
    reopened = Gallery.open(g.path)
    assert reopened.list_collections() == [] and reopened.check() == []
    assert "delete_collection" in [e.action for e in reopened.audit_log()]
    reopened.close()


def test_second_instance_sees_changes_on_search_and_refresh(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / "g.db"
    a = Gallery.open(path)
    a.create_collection("c", "m", SHA, DIM)
    b = Gallery.open(path)
    c_manual = Gallery.open(path, auto_refresh=False)
    p = a.add_person("c", "x")
    ts = rand_templates(rng, 2)
    sids = a.add_samples("c", p.id, ts)
    assert b.search("c", ts[0], k=1, model_id="m")[0][0].sample_id == sids[0]  # lazily reloaded on search
    assert c_manual.search("c", ts[0], k=1, model_id="m")[0] == []  # stale until refreshed ...
    assert c_manual.refresh() == ["c"]
    assert c_manual.search("c", ts[0], k=1, model_id="m")[0][0].sample_id == sids[0]
    # interleaved writers: b writes after a, then a writes again -> a must not lose b's sample
    q = b.add_person("c", "y")
    tb = rand_templates(rng, 1)
    sb = b.add_samples("c", q.id, tb)[0]
    a.delete_sample("c", sids[1])
    assert a.search("c", tb[0], k=1, model_id="m")[0][0].sample_id == sb
    assert all(h.sample_id != sids[1] for h in b.search("c", ts[1], k=5, model_id="m")[0])
    b.delete_collection("c")
    assert a.refresh() == [] and a.list_collections() == []
    for g in (a, b, c_manual):
        g.close()


def test_threads_share_one_gallery(gallery: Gallery) -> None:
    g = gallery
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        rng = np.random.default_rng(100 + n)
        try:
            p = g.add_person("c", f"t{n}")
            for _ in range(15):
                ts = rand_templates(rng, 2)
                got = g.add_samples("c", p.id, ts)
                assert g.search("c", ts[0], k=1, model_id="m")[0][0].sample_id == got[0]
                with lock:
                    ids.extend(got)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 120 and g.get_collection("c").samples == 120


def test_corrupt_and_foreign_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(garbage)
    assert ei.value.code == "gallery_corrupt" and "garbage.db" in ei.value.message

    text = tmp_path / "text.db"
    text.write_text("SQLite format 3\0 but not really" * 50)
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(text)
    assert ei.value.code == "gallery_corrupt"

    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(foreign)
    assert ei.value.code == "gallery_corrupt"

    damaged = tmp_path / "damaged.db"
    Gallery.open(damaged).close()
    con = sqlite3.connect(damaged)
    con.execute("DROP TABLE samples")
    con.commit()
    con.close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(damaged)
    assert ei.value.code == "gallery_corrupt"

    newer = tmp_path / "newer.db"
    Gallery.open(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(newer)
    assert ei.value.code == "gallery_too_new"

    with pytest.raises(NotFoundError):
        Gallery.open(tmp_path / "absent.db", create=False)


def test_truncated_file_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    rng = np.random.default_rng(8)
    with Gallery.open(path) as g:
        g.create_collection("c", "m", SHA, DIM)
        for i in range(20):
            p = g.add_person("c", f"p{i}")
            g.add_samples("c", p.id, rand_templates(rng, 10))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(path)
    assert ei.value.code == "gallery_corrupt"


def test_new_gallery_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    Gallery.open(path).close()
    assert path.stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------- several processes


def _writer(path: str, worker: int, n: int, out: Any) -> None:
    """Child process: add ``n`` samples one transaction at a time and report their ids."""
    rng = np.random.default_rng(1000 + worker)
    g = Gallery.open(path, actor=f"worker-{worker}")
    try:
        g.create_collection("c", "m", SHA, DIM)
    except FaceAtlasError as exc:
        assert exc.code == "conflict"
    p = g.add_person("c", f"w{worker}")
    ids = []
    for _ in range(n):
        ids.extend(g.add_samples("c", p.id, rand_templates(rng, 1)))
    g.close()
    out.put((worker, ids))


@pytest.mark.parametrize("precreate", [True, False])
@pytest.mark.slow
def test_concurrent_writer_processes(tmp_path: Path, precreate: bool) -> None:
    path = tmp_path / "shared.db"
    procs, n = 3, 30
    watcher = None
    if precreate:
        watcher = Gallery.open(path)
        watcher.create_collection("c", "m", SHA, DIM)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(path), w, n, queue)) for w in range(procs)]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    all_ids = [sid for ids in results.values() for sid in ids]
    assert len(all_ids) == len(set(all_ids)) == procs * n
    g = watcher or Gallery.open(path)
    assert g.get_collection("c").samples == procs * n
    for w, ids in results.items():
        assert [s.id for s in g.list_samples("c", f"w{w}")] == sorted(ids)
        t = g.get_sample("c", ids[-1], include_template=True).template
        assert t is not None and g.search("c", t, k=1, model_id="m")[0][0].sample_id == ids[-1]  # visible to the open gallery
    assert g.stats().collections[0].indexed == procs * n
    assert g.check() == []
    g.close()


_KILL_CHILD = r"""
import sys
import numpy as np
from faceatlas.gallery import Gallery
from faceatlas.types import Template
path, seed = sys.argv[1], int(sys.argv[2])
g = Gallery.open(path)
p = g.add_person("c", f"child-{seed}")
print("ready", flush=True)
counter = 0
while True:
    batch = 1 + counter % 3
    ts = [Template(np.random.default_rng([seed, counter + i]).standard_normal(128).astype(np.float32), "m")
          for i in range(batch)]
    ids = g.add_samples("c", p.id, ts)
    for i, sid in enumerate(ids):
        print(sid, seed, counter + i, flush=True)
    counter += batch
"""


@pytest.mark.slow
def test_kill_9_keeps_every_acknowledged_sample(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    with Gallery.open(path) as g:
        g.create_collection("c", "m", SHA, DIM)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rnd = random.Random(1234)
    total_acked = 0
    for trial in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILL_CHILD, str(path), str(trial)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        acked = []
        for line in child.stdout.read().split("\n"):
            parts = line.split()
            if len(parts) == 3:  # only complete lines were acknowledged
                acked.append(tuple(int(x) for x in parts))
        child.stdout.close()
        g = Gallery.open(path)
        assert g.check() == []
        for sid, seed, counter in acked:
            sample = g.get_sample("c", sid, include_template=True)
            expected = Template(np.random.default_rng([seed, counter]).standard_normal(DIM).astype(np.float32), "m")
            assert sample.template is not None
            np.testing.assert_allclose(sample.template.vector, expected.vector, atol=1e-6)
        if acked:
            hit = g.search("c", expected, k=1, model_id="m")[0][0]
            assert hit.sample_id == acked[-1][0]
        total_acked += len(acked)
        g.close()
    assert total_acked > 0
