"""Bulk enrolment speed: `faceatlas enroll-dir` over LFW (one sub-folder per person), images/s with 1 and 2 workers.

Runs the real CLI in a subprocess on a fresh gallery each time and times it end to end (decode, detect, align, embed,
quality gates, SQLite writes). `--limit-people N` restricts the folder (symlinks to the first N people) for the
1-vs-2-worker speed-up; `--full` also enrols all 13,233 images with the default worker count.

    python benchmarks/enroll_bulk.py --limit-people 300          # speed-up of 2 workers over 1
    python benchmarks/enroll_bulk.py --limit-people 0 --workers 2 # all of LFW
    python benchmarks/enroll_bulk.py --limit-people 0 --workers 1 --threads 1  # one core: the baseline for 2 workers

With the default threads a single worker already runs its model sessions on both cores, so "2 workers over 1" is
about 1.0x; the single-core run is the baseline that shows what the second core buys.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEATLAS_DATA", REPO.parent / "shared" / "data"))


def subset(images: Path, n: int, dest: Path) -> tuple[Path, int]:
    """A folder of symlinks to the first ``n`` people (all when n == 0) and its image count."""
    if n == 0:
        return images, sum(1 for _ in images.glob("*/*.jpg"))
    count = 0
    for person in sorted(p for p in images.iterdir() if p.is_dir())[:n]:
        (dest / person.name).mkdir(parents=True)
        for img in sorted(person.glob("*.jpg")):
            (dest / person.name / img.name).symlink_to(img)
            count += 1
    return dest, count


def enrol(folder: Path, workers: int, home: Path, threads: int = 0) -> tuple[float, int, int]:
    """Run enroll-dir once; return (seconds, faces enrolled, images rejected)."""
    env = {**os.environ, "FACEATLAS_HOME": str(home)}
    if threads:
        env["FACEATLAS_THREADS"] = str(threads)  # threads per model session (one worker otherwise uses every core)
    cmd = [sys.executable, "-m", "faceatlas", "enroll-dir", str(folder), "--collection", "bench",
           "--gallery", str(home / "g.db"), "--workers", str(workers), "--multi-face", "largest", "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t
    if proc.returncode not in (0, 2):
        raise SystemExit(proc.stderr)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    return secs, sum(len(x["sample_ids"]) for x in lines), sum(len(x["rejected"]) for x in lines)


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-people", type=int, default=300, help="first N people of LFW (0 = all 5,749)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads per model session (0 = default: a lone worker's sessions use every core)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "enroll_bulk.json")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, n_images = subset(DATA / "lfw" / "images", args.limit_people, Path(tmp) / "people")
        # Warm the model cache (one-time transforms) outside the timings.
        enrol(subset(DATA / "lfw" / "images", 2, Path(tmp) / "warm")[0], 1, Path(tmp) / "w")
        for w in [int(x) for x in args.workers.split(",")]:
            home = Path(tmp) / f"home{w}"
            home.mkdir()
            secs, faces, rejected = enrol(folder, w, home, args.threads)
            results.append({"workers": w, "threads": args.threads or "default", "images": n_images, "seconds": round(secs, 1),
                            "images_per_s": round(n_images / secs, 2), "faces_enrolled": faces, "rejected": rejected})
            print(json.dumps(results[-1]), flush=True)
    if len(results) >= 2:
        print(f"speed-up {results[-1]['workers']} workers over {results[0]['workers']}: "
              f"{results[-1]['images_per_s'] / results[0]['images_per_s']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results}, indent=2))


if __name__ == "__main__":
    main()
