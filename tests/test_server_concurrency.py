"""Eight clients enrolling, identifying and deleting at once against a real server (two uvicorn workers).

Each client works on its own people. The same client scripts are then replayed one after another in a second
collection; the final gallery (people, faces per person) and the identify answers must match that serial replay.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import lfw

from faceatlas.server.keys import KeyStore
from faceatlas.server.launcher import ServerProcess

httpx = pytest.importorskip("httpx")

# (A, B) per client; images used: A 1, 2 (enrol), 5 (identify), 7 (final probe); B 1 (enrol), 3 (added), 6, 7.
# All of them hold exactly one face, so every enrolment is accepted.
PEOPLE = [
    ("Ariel_Sharon", "Jacques_Chirac"), ("Jennifer_Capriati", "Vladimir_Putin"), ("Lleyton_Hewitt", "Kofi_Annan"),
    ("Tom_Ridge", "Vicente_Fox"), ("Gloria_Macapagal_Arroyo", "Silvio_Berlusconi"), ("Alejandro_Toledo", "Nestor_Kirchner"),
    ("Luiz_Inacio_Lula_da_Silva", "Donald_Rumsfeld"), ("Serena_Williams", "Gerhard_Schroeder"),
]
CLIENTS = len(PEOPLE)


def _b64(path: Path) -> str:
    """An image file as base64 text."""
    return base64.b64encode(path.read_bytes()).decode()


def _decision(resp: Any) -> list[tuple[str | None, float | None]]:
    """(person, score) for every face of an identify answer."""
    assert resp.status_code == 200, resp.text
    return [(f["person"], f["score"]) for f in resp.json()["faces"]]


def client_script(http: Any, coll: str, i: int) -> dict[str, Any]:
    """One client's work: enrol two people, identify, add and delete faces, delete a person; return its answers."""
    a, b = PEOPLE[i]
    base = f"/v1/collections/{coll}"
    log: dict[str, Any] = {}
    r = http.post(f"{base}/enroll", data={"person": a, "name": a.replace("_", " ")},
                  files=[("images", (f"{a}{n}.jpg", lfw(a, n).read_bytes(), "image/jpeg")) for n in (1, 2)])
    assert r.status_code == 200, r.text
    log["enrol_a"] = sorted(x for x in r.json().get("accepted", []))
    r = http.post(f"{base}/enroll", json={"person": b, "images": [_b64(lfw(b, 1))]})
    assert r.status_code == 200, r.text
    log["enrol_b"] = len(r.json().get("accepted", []))
    log["id_a"] = _decision(http.post(f"{base}/identify", files={"image": lfw(a, 5).read_bytes()}))
    r = http.post(f"{base}/persons/{b}/faces", files=[("images", ("b3.jpg", lfw(b, 3).read_bytes(), "image/jpeg"))])
    assert r.status_code == 200, r.text
    r = http.get(f"{base}/persons/{a}/faces")
    assert r.status_code == 200, r.text
    faces_a = r.json()["faces"]
    r = http.delete(f"{base}/persons/{a}/faces/{faces_a[0]['id']}")
    assert r.status_code == 200, r.text
    log["id_b"] = _decision(http.post(f"{base}/identify", files={"image": lfw(b, 6).read_bytes()}))
    r = http.delete(f"{base}/persons/{b}")
    assert r.status_code == 200, r.text
    log["id_b_deleted"] = _decision(http.post(f"{base}/identify", files={"image": lfw(b, 6).read_bytes()}))
    return log


def _state(http: Any, coll: str) -> dict[str, int]:
    """person → number of faces in a collection."""
    r = http.get(f"/v1/collections/{coll}/persons", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {p["external_id"]: p["samples"] for p in r.json()["persons"]}


@pytest.mark.slow
def test_eight_clients_at_once_match_a_serial_replay(tmp_path: Path, lfw_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    keys = KeyStore(home / "keys.db")
    tokens = [keys.create("read,enrol,delete", ["conc", "serial"], name=f"client{i}")[1] for i in range(CLIENTS)]
    with ServerProcess(home, ["--workers", "2"]) as server:
        clients = [httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {t}"}, timeout=120)
                   for t in tokens]
        try:
            results: list[dict[str, Any] | None] = [None] * CLIENTS
            errors: list[BaseException] = []
            barrier = threading.Barrier(CLIENTS)

            def run(i: int) -> None:
                try:
                    barrier.wait()
                    results[i] = client_script(clients[i], "conc", i)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert not errors, errors
            serial = [client_script(clients[i], "serial", i) for i in range(CLIENTS)]

            # final state: exactly each client's first person, with the faces the serial replay left
            conc_state, serial_state = _state(clients[0], "conc"), _state(clients[0], "serial")
            assert conc_state == serial_state
            assert conc_state == {a: 1 for a, _ in PEOPLE}  # two enrolled, one deleted
            for i, (a, b) in enumerate(PEOPLE):
                got, want = results[i], serial[i]
                assert got is not None
                assert got["enrol_a"] == want["enrol_a"] and got["enrol_b"] == want["enrol_b"]
                assert got["id_a"][0][0] == want["id_a"][0][0] == a
                assert got["id_b"][0][0] == want["id_b"][0][0] == b
                assert got["id_b_deleted"][0][0] != b and want["id_b_deleted"][0][0] != b
            # identify answers on the final galleries are the same (same people, same faces, same scores)
            for a, b in PEOPLE:
                for probe in (lfw(a, 7),) if a != PEOPLE[0][0] else (lfw(a, 7), lfw(b, 7)):
                    c = clients[0].post("/v1/collections/conc/identify", files={"image": probe.read_bytes()})
                    s = clients[0].post("/v1/collections/serial/identify", files={"image": probe.read_bytes()})
                    dc, ds = _decision(c), _decision(s)
                    assert [p for p, _ in dc] == [p for p, _ in ds]
                    assert all(abs((x or 0) - (y or 0)) < 1e-4 for (_, x), (_, y) in zip(dc, ds, strict=True))
            # nothing went wrong on the server side
            assert server.alive()
            assert '"status":5' not in server.stderr_path.read_text()
        finally:
            for c in clients:
                c.close()
