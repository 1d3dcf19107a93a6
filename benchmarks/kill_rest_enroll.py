"""Durability of REST enrolment under kill -9: acknowledged faces survive, and no person is left without faces.

Each trial starts a real ``faceatlas serve`` on one growing gallery, has ``--clients`` threads enrol new LFW people
over ``POST /v1/collections/k/enroll`` (1-3 photos each; a 200 answer is an acknowledged write), kills the server's
whole process group with SIGKILL at a random moment, then opens the gallery and counts: acknowledged faces that are
missing or belong to another person (lost), persons with no face at all (only enrolment creates persons here, so
each is a half-done enrolment: issue #12, L7), and the store's own integrity check. The server is restarted for the
next trial.

    python benchmarks/kill_rest_enroll.py --trials 20
    python benchmarks/kill_rest_enroll.py --trials 5 --max-wait 6

Results go to ``benchmarks/results/kill_rest_enroll.json``. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, default_models_dir, default_out, environment, write_json  # noqa: E402

COLLECTION = "k"


def lfw_people(limit: int) -> list[tuple[str, list[Path]]]:
    """LFW people with up to three photos each, in name order."""
    root = default_data_dir() / "lfw" / "images"
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        out.append((d.name, sorted(d.glob("*.jpg"))[:3]))
        if len(out) >= limit:
            break
    return out


def trial(server: Any, key: str, people: list[tuple[str, list[Path]]], next_person: list[int], clients: int,
          rng: random.Random, max_wait: float) -> dict[str, Any]:
    """Enrol over REST until the kill; return what was acknowledged and what the gallery holds afterwards."""
    import httpx

    from faceatlas.gallery import Gallery

    acked: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()
    sent = 0

    def client() -> None:
        nonlocal sent
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            while not stop.is_set():
                with lock:
                    if next_person[0] >= len(people):
                        return
                    name, photos = people[next_person[0]]
                    next_person[0] += 1
                    sent += 1
                files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
                try:
                    r = c.post(f"/v1/collections/{COLLECTION}/enroll", data={"person": name}, files=files)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    body = r.json()
                    with lock:
                        acked.append({"person": name, "sample_ids": list(body["sample_ids"])})

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(max_wait * 0.3, max_wait))
    os.killpg(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(70)
    lost = 0
    with Gallery.open(str(server.gallery_path)) as g:
        problems = g.check()
        for rec in acked:
            try:
                person = g.get_person(COLLECTION, rec["person"])
            except Exception:  # noqa: BLE001 - an acknowledged person that cannot be read is lost
                lost += len(rec["sample_ids"])
                continue
            for sid in rec["sample_ids"]:
                try:
                    lost += g.get_sample(COLLECTION, int(sid)).person_id != person.id
                except Exception:  # noqa: BLE001 - any failure to read an acknowledged sample counts as lost
                    lost += 1
        try:
            persons = g.list_persons(COLLECTION)
        except Exception:  # noqa: BLE001 - no collection yet (killed before the first enrolment)
            persons = []
    empty = [p.external_id for p in persons if p.samples == 0]
    return {"requests_sent": sent, "acknowledged_people": len(acked),
            "acknowledged_faces": sum(len(r["sample_ids"]) for r in acked), "lost_faces": lost,
            "persons_without_faces": len(empty), "examples_without_faces": empty[:5], "check_problems": problems,
            "persons_in_store": len(persons)}


def main() -> None:
    """Run the trials and print a summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=3, help="concurrent enrolling clients")
    ap.add_argument("--max-wait", type=float, default=8.0, help="latest kill, seconds after the server is up")
    ap.add_argument("--people", type=int, default=3000, help="LFW people available (new ones in every trial)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=default_out("kill_rest_enroll"))
    args = ap.parse_args()

    os.environ.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    os.environ.setdefault("FACEATLAS_OFFLINE", "1")
    from faceatlas.server.launcher import ServerProcess

    rng = random.Random(args.seed)
    people = lfw_people(args.people)
    next_person = [0]
    rows: list[dict[str, Any]] = []
    key: str | None = None
    with tempfile.TemporaryDirectory(prefix="faceatlas-kill-rest-") as tmp:
        home = Path(tmp) / "home"
        gallery = Path(tmp) / "gallery.db"
        for i in range(args.trials):
            server = ServerProcess(home, ["--gallery", str(gallery), "--rate-limit", "0", "--log-level", "warning"],
                                   log_dir=Path(tmp) / f"logs{i}")
            server.gallery_path = gallery  # type: ignore[attr-defined]
            try:
                server.start()
                key = key or server.admin_key
                assert key, "no admin key (the first run prints it)"
                row = trial(server, key, people, next_person, args.clients, rng, args.max_wait)
            except Exception as exc:  # noqa: BLE001 - a store that will not open is a result, not a benchmark crash
                row = {"error": f"{type(exc).__name__}: {exc}"[:2000], "lost_faces": None}
            finally:
                server.stop(5)
            rows.append(row)
            print(json.dumps({"trial": i + 1, **row}), flush=True)
    acked = sum(int(r.get("acknowledged_faces") or 0) for r in rows)
    lost = sum(int(r.get("lost_faces") or 0) for r in rows)
    errors = sum(1 for r in rows if "error" in r or r.get("check_problems"))
    empty = max((int(r.get("persons_without_faces") or 0) for r in rows), default=0)  # the gallery only grows
    summary = {"trials": len(rows), "acknowledged_faces": acked, "lost_faces": lost,
               "persons_without_faces_at_end": empty, "trials_with_errors_or_check_problems": errors}
    print(json.dumps(summary))
    write_json(args.out, {"benchmark": "kill_rest_enroll", "args": vars(args) | {"out": str(args.out)},
                          "environment": environment(), "summary": summary, "trials": rows})
    raise SystemExit(0 if lost == 0 and empty == 0 and errors == 0 else 1)


if __name__ == "__main__":
    main()
