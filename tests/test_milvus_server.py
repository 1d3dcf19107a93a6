"""faceatlas' ``milvus://`` gallery against a real Milvus server started here as a user would (slow).

The server is ``milvus-server`` from the PyPI package ``milvus`` (2.3.5, "embedded Milvus": the real Milvus 2.3
standalone binary with its own etcd), installed in a virtual environment of its own; point
``FACEATLAS_MILVUS_SERVER`` at its executable, e.g.::

    python3 -m venv /tmp/milvus-venv && /tmp/milvus-venv/bin/pip install milvus==2.3.5
    FACEATLAS_MILVUS_SERVER=/tmp/milvus-venv/bin/milvus-server python -m pytest -m slow tests/test_milvus_server.py

Without it (or without pymilvus) the tests skip and say why. The server gets free ports (its embedded etcd too,
through an etcd config file named by ``ETCD_CONFIG_PATH``) and a temporary data folder, so it never meets another
Milvus on the machine; it is stopped with SIGINT (the launcher's own shutdown) and its process group is killed if
anything is left.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import lfw

from faceatlas.errors import FaceAtlasError
from faceatlas.facade import FaceAtlas
from faceatlas.gallery import Gallery, NewPerson
from faceatlas.recognition import Recognizer
from faceatlas.types import Template

pytestmark = pytest.mark.slow

ENV_SERVER = "FACEATLAS_MILVUS_SERVER"
START_TIMEOUT_S = 240.0
#: milvus-server options that take a port (every listening port of the standalone process but etcd's and metrics').
PORT_OPTIONS = ("--etcd-port", "--root-coord-port", "--proxy-port", "--proxy-internal-port", "--query-coord-port",
                "--query-node-port", "--index-coord-port", "--index-node-port", "--data-coord-port", "--data-node-port")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def server_executable() -> str:
    """The milvus-server executable named by FACEATLAS_MILVUS_SERVER (the test skips without one)."""
    if importlib.util.find_spec("pymilvus") is None:
        pytest.skip("pymilvus is not installed (pip install 'faceatlas[milvus]')")
    path = os.environ.get(ENV_SERVER, "")
    if not path:
        pytest.skip(f"{ENV_SERVER} is not set: point it at milvus-server (pip install milvus==2.3.5 in its own venv)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"{ENV_SERVER}={path} is not an executable file")
    return path


def healthz(pid: int) -> str:
    """The server's /healthz answer (its metrics port is in the process environment the launcher gave it)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    port = next(int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"METRICS_PORT="))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310 - loopback
        return str(resp.read().decode())


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the launcher (it stops Milvus), then kill whatever is left of its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus standalone server on free ports with a temporary data folder; yields ``host:port``."""
    exe = server_executable()
    base = tmp_path_factory.mktemp("milvus-server")
    ports = free_ports(len(PORT_OPTIONS) + 1)
    client_port, peer_port = ports[0], ports[-1]
    etcd = base / "etcd.yaml"
    etcd.write_text(
        "name: faceatlas-test\n"
        f"listen-client-urls: http://127.0.0.1:{client_port}\nadvertise-client-urls: http://127.0.0.1:{client_port}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer_port}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"initial-cluster: faceatlas-test=http://127.0.0.1:{peer_port}\n"
    )
    args = [exe, "--data", str(base / "data")]
    for option, port in zip(PORT_OPTIONS, ports, strict=False):
        args += [option, str(port)]
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed below, after the server
    env = {**os.environ, "ETCD_CONFIG_PATH": str(etcd)}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        pid = wait_started(proc, base / "server.log")
        assert "OK" in healthz(pid)
        yield f"127.0.0.1:{ports[PORT_OPTIONS.index('--proxy-port')]}"
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(base / "data", ignore_errors=True)


def wait_started(proc: subprocess.Popen[bytes], log: Path) -> int:
    """Wait for the launcher's banner (printed once /healthz says OK); the Milvus process id."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"Process:\s+(\d+)", text)
        if found and "Ctrl+C to exit" in text:
            return int(found.group(1))
        if proc.poll() is not None or "already stopped" in text:
            pytest.fail(f"milvus-server exited early:\n{text[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"milvus-server not healthy within {START_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture()
def server_uri(milvus_server: str, tmp_path: Path) -> str:
    """A fresh gallery URI on the server: its own metadata file, hence its own Milvus namespace."""
    return f"milvus://{milvus_server}?meta={tmp_path / 'meta.sqlite'}"


def unit(rng: np.random.Generator, n: int, dim: int = 128) -> np.ndarray:
    """``n`` random unit vectors."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_enrol_identify_and_delete_real_faces(atlas: FaceAtlas, lfw_dir: Path, server_uri: str) -> None:
    """Real LFW people enrolled on the server are identified; a deleted person is gone from the very next search."""
    rec = Recognizer(atlas, Gallery.open(server_uri, index="hnsw"))
    try:
        assert rec.gallery.backend == "milvus"
        people = {"Colin_Powell": (1, 2, 3), "Tony_Blair": (2, 3, 4), "George_W_Bush": (1, 2), "Gerhard_Schroeder": (1, 2)}
        for person, numbers in people.items():
            res = rec.enroll("c", person, [lfw(person, i) for i in numbers])
            assert len(res.sample_ids) == len(numbers) and not res.rejected
        probes = {"Colin_Powell": 20, "Tony_Blair": 10, "George_W_Bush": 30, "Gerhard_Schroeder": 10}
        for person, number in probes.items():
            r = rec.identify("c", lfw(person, number))[0]
            assert r.decision is not None and r.decision.external_id == person, (person, r.matches)
            central = rec.identify("c", lfw(person, number), aggregate="centroid")[0]
            assert central.matches[0].external_id == person
        assert rec.gallery.check() == []
        rec.gallery.delete_person("c", "Tony_Blair")
        after = rec.identify("c", lfw("Tony_Blair", 10), k=10)[0]
        assert after.decision is None and all(m.external_id != "Tony_Blair" for m in after.matches)
        sample = rec.gallery.list_samples("c", "Colin_Powell")[0]
        rec.gallery.delete_sample("c", sample.id)
        face, _ = rec.pipeline.template(lfw("Colin_Powell", 1))
        assert face.template is not None
        hits = rec.gallery.search("c", face.template, k=10)[0]
        assert all(c.sample_id != sample.id for c in hits) and hits[0].external_id == "Colin_Powell"
    finally:
        rec.close()
    with Gallery.open(server_uri) as again:  # a new connection sees the same gallery
        assert {p.external_id for p in again.list_persons("c")} == {"Colin_Powell", "George_W_Bush", "Gerhard_Schroeder"}
        assert again.get_collection("c").samples == 6


def test_batch_insert_and_immediate_deletes(server_uri: str) -> None:
    """2,500 templates in one call go to Milvus in batches; every template comes back bit-identical; deletes are final."""
    rng = np.random.default_rng(7)
    vecs = unit(rng, 2_500)
    templates = [Template(v, "sface") for v in vecs]
    with Gallery.open(server_uri, index="hnsw") as g:
        g.create_collection("bulk", "sface", "a" * 64, 128)
        g.add_person("bulk", "crowd")
        ids = g.add_samples("bulk", "crowd", templates)
        for i in range(5):
            g.add_person_with_samples("bulk", f"p{i}", [Template(vecs[i] * 0.5 + unit(rng, 1)[0], "sface")])
        stats = g.stats().collections[0]
        assert (stats.samples, stats.indexed, stats.index_kind) == (2_505, 2_505, "hnsw")
        back = g.get_sample("bulk", ids[1_777], include_template=True).template
        assert back is not None and np.array_equal(back.vector, templates[1_777].vector)
        top = g.search("bulk", vecs[[0, 1_234, 2_499]], k=1, model_id="sface")
        assert [c[0].sample_id for c in top] == [ids[0], ids[1_234], ids[2_499]]
        for i in (0, 1_234, 2_499):
            g.delete_sample("bulk", ids[i])
            hit = g.search("bulk", vecs[i], k=3, model_id="sface")[0]
            assert hit and all(c.sample_id != ids[i] for c in hit)
        g.delete_person("bulk", "p3")
        assert all(c.external_id != "p3" for c in g.search("bulk", vecs[3], k=10, model_id="sface")[0])
        assert g.get_collection("bulk").samples == 2_501
        assert g.check() == []


def test_add_people_batches_and_reads_its_own_writes(server_uri: str) -> None:
    """3,000 persons in three add_people calls; each batch is searchable at once (Session reads), deletes are final."""
    rng = np.random.default_rng(8)
    vecs = unit(rng, 3_000)
    with Gallery.open(server_uri, index="hnsw") as g:
        g.create_collection("many", "sface", "a" * 64, 128)
        ids: list[int] = []
        for start in range(0, 3_000, 1_000):
            batch = [NewPerson(f"p{i}", Template(vecs[i], "sface")) for i in range(start, start + 1_000)]
            ids += [sids[0] for _, sids in g.add_people("many", batch)]
            last = start + 999  # the batch's last template, searched right after the call returned
            assert g.search("many", vecs[last], k=1, model_id="sface")[0][0].sample_id == ids[last]
            central = g.search("many", vecs[last], k=1, model_id="sface", aggregate="centroid")[0][0]
            assert central.external_id == f"p{last}" and central.score > 0.999
        stats = g.stats().collections[0]
        assert (stats.persons, stats.samples, stats.indexed) == (3_000, 3_000, 3_000)
        with pytest.raises(FaceAtlasError) as err:  # one taken id: the whole batch is refused, nothing left behind
            g.add_people("many", [NewPerson("fresh", Template(vecs[0], "sface")),
                                  NewPerson("p5", Template(vecs[1], "sface"))])
        assert err.value.code == "conflict"
        g.delete_person("many", "p2999")
        assert all(c.external_id != "p2999" for c in g.search("many", vecs[2_999], k=5, model_id="sface")[0])
        assert g.stats().collections[0].indexed == 2_999 and g.check() == []


def test_collection_keeps_its_model_on_the_server(atlas: FaceAtlas, lfw_dir: Path, models_dir: Path, server_uri: str) -> None:
    """Templates or queries of another model are refused (model_mismatch), by the gallery and by a Recognizer."""
    rec = Recognizer(atlas, Gallery.open(server_uri))
    try:
        rec.enroll("c", "Tony_Blair", [lfw("Tony_Blair", 2)])
        wrong = np.ones(512, np.float32) / np.sqrt(512)
        for call in (lambda: rec.gallery.search("c", wrong, k=1, model_id="faceplugin-512"),
                     lambda: rec.gallery.search("c", np.ones(128, np.float32), k=1, model_id="other-model"),
                     lambda: rec.gallery.add_samples("c", "Tony_Blair", Template(wrong, "faceplugin-512"))):
            with pytest.raises(FaceAtlasError) as err:
                call()
            assert err.value.code == "model_mismatch"
        other = Recognizer(FaceAtlas(embedder="faceplugin-512", models_dir=models_dir), rec.gallery)
        with pytest.raises(FaceAtlasError) as err:
            other.identify("c", lfw("Tony_Blair", 3))
        assert err.value.code == "model_mismatch"
        assert rec.gallery.get_collection("c").samples == 1
    finally:
        rec.close()
