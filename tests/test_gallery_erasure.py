"""Deletes report honestly whether the deleted templates left the disk (issue #12, M3).

Another process holding a read transaction keeps SQLite's WAL checkpoint from overwriting deleted rows;
the delete then says ``erased=False`` and the gallery finishes the erasure in the background.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceatlas.gallery import DeleteResult, Gallery
from faceatlas.types import Template

DIM = 128
SHA = "0123456789abcdef" * 4

READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM samples").fetchone()
print("ready", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


def disk_bytes(path: Path) -> bytes:
    """Everything SQLite keeps for the gallery: the database file, its WAL and its shared-memory index."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def on_disk(path: Path, t: Template) -> bool:
    """Whether any 32-byte piece of the template's float32 bytes occurs in the gallery's files."""
    raw = t.vector.astype("<f4").tobytes()
    data = disk_bytes(path)
    return any(raw[i : i + 32] in data for i in range(0, len(raw), 32))


@pytest.fixture()
def reader_for(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by the test, killed at teardown if still running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def start_reader(path: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """Start another process that holds a read transaction on the gallery until told to stop."""
    p = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def stop_reader(p: subprocess.Popen[str]) -> None:
    """Let the reader end its transaction and exit."""
    assert p.stdin is not None
    p.stdin.write("done\n")
    p.stdin.flush()
    assert p.wait(timeout=10) == 0


def test_delete_under_a_long_reader_is_pending_then_erased(
    tmp_path: Path, reader_for: list[subprocess.Popen[str]]
) -> None:
    """While another process reads: erased False and bytes on disk; after it stops: 0 template bytes on disk."""
    rng = np.random.default_rng(50)
    g = Gallery.open(tmp_path / "g.db", actor="tester")
    g.create_collection("c", "m", SHA, DIM)
    victims = [Template(v, "m") for v in rng.standard_normal((3, DIM)).astype(np.float32)]
    keeper = Template(rng.standard_normal(DIM).astype(np.float32), "m")
    pid = g.add_person("c", "victim").id
    sids = g.add_samples("c", pid, victims)
    g.add_samples("c", g.add_person("c", "keeper").id, [keeper])
    assert all(on_disk(g.path, t) for t in victims)  # the scan sees live data

    quick = g.delete_sample("c", sids[0])  # nobody reading: erased at once
    assert isinstance(quick, DeleteResult) and quick == 1 and quick.erased and g.pending_erasures() == 0
    assert not on_disk(g.path, victims[0])

    reader = start_reader(g.path, reader_for)
    started = time.monotonic()
    result = g.delete_person("c", pid)
    assert time.monotonic() - started < 5  # does not wait the whole busy timeout
    assert result == 2 and result.samples == 2 and result.erased is False
    assert g.pending_erasures() == 1
    assert g.search("c", victims[1], k=5, model_id="m")[0][0].person_id != pid  # gone from search all the same
    assert on_disk(g.path, victims[1]) and on_disk(g.path, victims[2])
    assert g.finish_erasure(0.5) is False and g.pending_erasures() == 1
    assert on_disk(g.path, victims[1])

    stop_reader(reader)
    assert g.finish_erasure(10.0) is True
    assert g.pending_erasures() == 0
    assert not any(on_disk(g.path, t) for t in victims)
    assert on_disk(g.path, keeper)
    g.close()


def test_pending_erasure_of_a_collection_and_a_later_delete(
    tmp_path: Path, reader_for: list[subprocess.Popen[str]]
) -> None:
    """delete_collection reports pending too; a later delete whose checkpoint succeeds completes earlier ones."""
    rng = np.random.default_rng(51)
    g = Gallery.open(tmp_path / "g.db", actor="tester")
    for name in ("a", "b"):
        g.create_collection(name, "m", SHA, DIM)
    ta = [Template(v, "m") for v in rng.standard_normal((2, DIM)).astype(np.float32)]
    tb = Template(rng.standard_normal(DIM).astype(np.float32), "m")
    g.add_samples("a", g.add_person("a", "x").id, ta)
    sid_b = g.add_samples("b", g.add_person("b", "y").id, [tb])[0]

    reader = start_reader(g.path, reader_for)
    gone = g.delete_collection("a")
    assert gone == 2 and gone.erased is False and g.pending_erasures() == 1
    assert on_disk(g.path, ta[0])
    stop_reader(reader)
    done = g.delete_sample("b", sid_b)  # its own checkpoint succeeds and covers the earlier delete
    assert done.erased and g.pending_erasures() == 0 and g.finish_erasure(0) is True
    assert not on_disk(g.path, ta[0]) and not on_disk(g.path, ta[1]) and not on_disk(g.path, tb)
    g.close()


def test_close_with_pending_erasure_stops_the_retry_thread(
    tmp_path: Path, reader_for: list[subprocess.Popen[str]]
) -> None:
    """Closing while an erasure is pending returns promptly; reopening after the reader ends erases the bytes."""
    rng = np.random.default_rng(52)
    g = Gallery.open(tmp_path / "g.db", actor="tester")
    g.create_collection("c", "m", SHA, DIM)
    t = Template(rng.standard_normal(DIM).astype(np.float32), "m")
    pid = g.add_person("c", "p").id
    g.add_samples("c", pid, [t])
    reader = start_reader(g.path, reader_for)
    assert g.delete_person("c", pid).erased is False
    started = time.monotonic()
    g.close()
    assert time.monotonic() - started < 5
    stop_reader(reader)
    again = Gallery.open(tmp_path / "g.db")
    assert again.store.checkpoint() is True
    assert not on_disk(again.path, t)
    again.close()
