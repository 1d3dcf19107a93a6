"""Durability under kill -9: acknowledged enrolments survive and the gallery always reopens.

Each trial starts `faceatlas enroll-dir --json` on a copy-free folder of LFW people (symlinks), reads the JSON lines it
prints — each is printed only after that person's write committed, so each is an acknowledged write — kills the
process with SIGKILL at a random moment, then reopens the gallery and checks: it opens, its integrity check passes,
and every acknowledged sample id is present with its person.

    python benchmarks/kill_enroll.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEATLAS_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "src"))


def people_folder(dest: Path, n: int) -> Path:
    """Symlinks to the first ``n`` LFW people."""
    src = DATA / "lfw" / "images"
    for person in sorted(p for p in src.iterdir() if p.is_dir())[:n]:
        (dest / person.name).mkdir(parents=True)
        for img in sorted(person.glob("*.jpg")):
            (dest / person.name / img.name).symlink_to(img)
    return dest


def trial(folder: Path, gallery: Path, home: Path, rng: random.Random, max_wait: float) -> dict[str, object]:
    """One kill -9 trial on an existing (growing) gallery."""
    from faceatlas.gallery import Gallery

    env = {**os.environ, "FACEATLAS_HOME": str(home)}
    cmd = [sys.executable, "-m", "faceatlas", "enroll-dir", str(folder), "--collection", "k", "--gallery", str(gallery),
           "--multi-face", "largest", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    acked: list[dict[str, object]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                acked.append(json.loads(line))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(rng.uniform(max_wait * 0.3, max_wait))  # mostly after startup, so writes are in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join(timeout=5)
    with Gallery.open(str(gallery)) as g:
        problems = g.check()
        lost = 0
        for rec in acked:
            for sid in rec["sample_ids"]:  # type: ignore[union-attr]
                try:
                    s = g.get_sample("k", int(sid))
                    person = g.get_person("k", rec["person"])  # type: ignore[arg-type]
                    lost += s.person_id != person.id
                except Exception:  # noqa: BLE001 - any failure to read an acknowledged sample counts as lost
                    lost += 1
        total = g.get_collection("k").samples if acked else 0
    return {"acknowledged_people": len(acked), "acknowledged_faces": sum(len(r["sample_ids"]) for r in acked),  # type: ignore[arg-type]
            "lost": lost, "opens": True, "check_problems": problems, "samples_in_store": total}


def main() -> None:
    """Run the trials and print a summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--people", type=int, default=1000, help="LFW people in the folder (enough to outlast the kill)")
    ap.add_argument("--max-wait", type=float, default=25.0, help="latest kill time in seconds (earliest: 30 %% of it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kill_enroll.json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = people_folder(Path(tmp) / "people", args.people)
        for i in range(args.trials):
            home = Path(tmp) / f"home{i}"
            home.mkdir()
            try:
                r = trial(folder, home / "g.db", home, rng, args.max_wait)
            except Exception as exc:  # noqa: BLE001 - an unreadable store is a result, not a crash of the benchmark
                r = {"opens": False, "error": f"{type(exc).__name__}: {exc}", "lost": None}
            rows.append(r)
            print(json.dumps({"trial": i + 1, **r}), flush=True)
    lost = sum(int(r["lost"] or 0) for r in rows)
    unreadable = sum(1 for r in rows if not r["opens"] or r.get("check_problems"))
    acked = sum(int(r.get("acknowledged_faces") or 0) for r in rows)
    print(f"{len(rows)} trials: {acked} acknowledged faces, {lost} lost, {unreadable} unreadable stores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": rows, "lost": lost, "unreadable": unreadable}, indent=2))


if __name__ == "__main__":
    main()
