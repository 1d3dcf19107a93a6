"""The long-reader erasure reproduction of issue #12 (M3), against a real server.

Starts a real ``faceatlas serve`` on loopback with its own gallery, enrols one person over REST, then starts another
process that opens the gallery file with Python's ``sqlite3`` and holds ``BEGIN; SELECT …`` (a read snapshot) for
``--hold`` seconds. While the snapshot is held it deletes the person over REST and records the answer (an honest
server says ``202`` with ``"erasure": "pending"`` while the template bytes are still in the file, or ``200`` with
``"complete"`` only when they are gone), enrols a bystander to show writes are not stalled, polls
``/v1/health``'s ``pending_erasures`` and scans the gallery's files (database, WAL, shared memory) for the deleted
template's float32 bytes. After the reader ends it waits up to ``--bound`` seconds for 0 template bytes on disk and
0 pending erasures. The template is computed in this process with the same pipeline (default models) and checked
against the file right after enrolment, so the scan is known to see it.

    python benchmarks/erasure_reader.py              # the 40-second reader of the issue
    python benchmarks/erasure_reader.py --hold 5

Prints a JSON summary and writes ``benchmarks/results/erasure_reader.json``; exits 1 when the outcome is not clean.
Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, default_models_dir, default_out, environment, progress, write_json  # noqa: E402

COLLECTION = "m3"
VICTIM = "reader-victim"
BYSTANDER = "bystander"
PIECE = 16  # bytes: four float32 values; a 16-byte run of a random template cannot occur by chance

READER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
rows = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
print("ready", rows, flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
conn.close()
print("done", time.time(), flush=True)
"""


def gallery_files(path: Path) -> list[Path]:
    """The files SQLite keeps for a gallery that exist now: the database, its WAL, shared memory and journal."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()]


def gallery_bytes(path: Path) -> bytes:
    """Every byte of the gallery's files, concatenated (separated, so no piece spans two files)."""
    return b"\0\1\2\3".join(p.read_bytes() for p in gallery_files(path))


def template_pieces(data: bytes, vector: np.ndarray, piece: int = PIECE) -> tuple[int, int]:
    """How many ``piece``-byte pieces of the template's little-endian float32 bytes occur in ``data``, of how many."""
    raw = np.asarray(vector, dtype="<f4").reshape(-1).tobytes()
    chunks = [raw[i : i + piece] for i in range(0, len(raw) - piece + 1, piece)]
    return sum(c in data for c in chunks), len(chunks)


def pipeline_template(photo: Path) -> np.ndarray:
    """The template of the photo's face with the default models (what the server computes for it)."""
    from faceatlas.facade import FaceAtlas

    face, _ = FaceAtlas().template(photo)
    assert face.template is not None
    return np.asarray(face.template.vector, dtype=np.float32)


def _pending(client: Any) -> int:
    """``pending_erasures`` from ``/v1/health`` (-1 when the answer has none)."""
    return int(client.get("/v1/health").json().get("pending_erasures", -1))


def reproduce(hold: float, photo: Path, bystander_photo: Path, workdir: Path, *, bound: float = 30.0,
              poll: float = 1.0, vector: np.ndarray | None = None,
              log: Callable[[str], None] = progress) -> dict[str, Any]:
    """Run the reproduction once in ``workdir``; return the summary (``ok`` says whether it ended clean)."""
    import httpx

    from faceatlas.server.launcher import ServerProcess

    vec = pipeline_template(photo) if vector is None else np.asarray(vector, dtype=np.float32)
    gallery = workdir / "gallery" / "gallery.db"
    gallery.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"hold_s": hold, "bound_s": bound, "template_dim": int(vec.size),
                           "template_pieces": template_pieces(b"", vec)[1], "piece_bytes": PIECE}
    server = ServerProcess(workdir / "home", ["--gallery", str(gallery), "--rate-limit", "0", "--log-level", "warning"])
    reader: subprocess.Popen[str] | None = None
    try:
        server.start()
        assert server.admin_key, "no admin key (a fresh home prints one)"
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                          timeout=120) as c:
            def scan() -> int:
                return template_pieces(gallery_bytes(gallery), vec)[0]

            r = c.post(f"/v1/collections/{COLLECTION}/enroll", data={"person": VICTIM},
                       files={"images": (photo.name, photo.read_bytes(), "image/jpeg")})
            out["enrol_status"] = r.status_code
            r.raise_for_status()
            out["pieces_on_disk_after_enrol"] = scan()  # the scan sees the live template
            log(f"enrolled {VICTIM}: {out['pieces_on_disk_after_enrol']}/{out['template_pieces']} pieces on disk")

            reader = subprocess.Popen([sys.executable, "-c", READER, str(gallery), str(hold)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert reader.stdout is not None
            ready = reader.stdout.readline().split()
            held_from = time.monotonic()
            assert ready and ready[0] == "ready", f"the reader did not start: {ready} {reader.stderr}"
            out["reader_rows_in_snapshot"] = int(ready[1])
            log(f"reader {reader.pid} holds a read snapshot for {hold:g} s")

            started = time.monotonic()
            r = c.delete(f"/v1/collections/{COLLECTION}/persons/{VICTIM}")
            body = r.json()
            out["delete"] = {"status": r.status_code, "erasure": body.get("erasure"),
                             "faces": (body.get("deleted") or {}).get("faces"),
                             "seconds": round(time.monotonic() - started, 3)}
            out["pieces_on_disk_right_after_delete"] = scan()
            out["pending_erasures_after_delete"] = _pending(c)
            log(f"DELETE answered {r.status_code} {body.get('erasure')!r}; "
                f"{out['pieces_on_disk_right_after_delete']} pieces on disk, "
                f"pending_erasures={out['pending_erasures_after_delete']}")

            started = time.monotonic()
            r = c.post(f"/v1/collections/{COLLECTION}/enroll", data={"person": BYSTANDER},
                       files={"images": (bystander_photo.name, bystander_photo.read_bytes(), "image/jpeg")})
            out["write_while_held"] = {"status": r.status_code, "seconds": round(time.monotonic() - started, 3)}

            timeline = []
            while reader.poll() is None:
                timeline.append({"t": round(time.monotonic() - held_from, 1), "pending_erasures": _pending(c),
                                 "pieces_on_disk": scan()})
                try:
                    reader.wait(timeout=poll)
                except subprocess.TimeoutExpired:
                    pass
            out["timeline_while_held"] = timeline
            out["pieces_on_disk_while_held"] = min((x["pieces_on_disk"] for x in timeline),
                                                   default=out["pieces_on_disk_right_after_delete"])
            done = reader.stdout.readline().split()  # "done <time the snapshot ended>"
            ended = time.monotonic() - max(0.0, time.time() - float(done[1])) if done[:1] == ["done"] else time.monotonic()
            out["reader"] = {"exit": reader.returncode, "held_s": round(ended - held_from, 1)}
            log(f"reader ended after {out['reader']['held_s']} s")

            pieces, pending = scan(), _pending(c)
            while (pieces or pending) and time.monotonic() - ended < bound:
                time.sleep(0.1)
                pieces, pending = scan(), _pending(c)
            out["after_reader"] = {"seconds_to_clean": round(time.monotonic() - ended, 2) if not (pieces or pending)
                                   else None, "pieces_on_disk": pieces, "pending_erasures": pending}
            out["get_deleted_person_status"] = c.get(f"/v1/collections/{COLLECTION}/persons/{VICTIM}").status_code
            r = c.post(f"/v1/collections/{COLLECTION}/identify",
                       files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
            out["identify_names_deleted_person"] = any(
                m.get("person") == VICTIM for f in r.json().get("faces", []) for m in f.get("candidates", []))
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait()
        server.stop(10)
    pending_said = out["delete"]["erasure"] == "pending"
    out["honest"] = (out["delete"]["status"] == (202 if pending_said else 200)
                     and pending_said == (out["pieces_on_disk_right_after_delete"] > 0))
    out["ok"] = bool(out["honest"] and out["pieces_on_disk_after_enrol"] == out["template_pieces"] > 0
                     and out["after_reader"]["pieces_on_disk"] == 0 and out["after_reader"]["pending_erasures"] == 0
                     and out["get_deleted_person_status"] == 404 and not out["identify_names_deleted_person"]
                     and out["write_while_held"]["status"] == 200)
    return out


def main() -> None:
    """Run the reproduction once and print its summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold", type=float, default=40.0, help="seconds the other process holds its read snapshot")
    ap.add_argument("--bound", type=float, default=30.0, help="seconds allowed after the reader ends to be erased")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between health polls and scans while held")
    ap.add_argument("--photo", default="Jennifer_Aniston/Jennifer_Aniston_0001.jpg", help="LFW image to enrol")
    ap.add_argument("--bystander", default="Colin_Powell/Colin_Powell_0001.jpg", help="LFW image enrolled meanwhile")
    ap.add_argument("--out", type=Path, default=default_out("erasure_reader"))
    args = ap.parse_args()

    os.environ.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    os.environ.setdefault("FACEATLAS_OFFLINE", "1")
    lfw = default_data_dir() / "lfw" / "images"
    with tempfile.TemporaryDirectory(prefix="faceatlas-erasure-reader-") as tmp:
        summary = reproduce(args.hold, lfw / args.photo, lfw / args.bystander, Path(tmp), bound=args.bound,
                            poll=args.poll)
    print(json.dumps(summary, indent=2))
    write_json(args.out, {"benchmark": "erasure_reader", "args": vars(args) | {"out": str(args.out)},
                          "environment": environment(), "summary": summary})
    raise SystemExit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
