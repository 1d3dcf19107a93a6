"""Bulk enrolment speed: `faceatlas enroll-dir` over LFW (one sub-folder per person), in one or more processes.

Runs the real CLI in subprocesses on a fresh gallery each time and times it end to end (decode, detect, align, embed,
quality gates, SQLite writes). `--limit-people N` restricts the folder (symlinks to the first N people).

Two ways to use both cores are compared:
- `--workers 1,2`: one process, N enrolment threads (model sessions on every core unless `--threads`);
- `--processes 1,2`: N `enroll-dir` processes started together, each on every N-th person (sorted by name), all
  writing into the same gallery file (SQLite WAL, one writer at a time); each process has cores/N workers with one
  thread per model session (`--threads` overrides), so one process is exactly the CLI's default. The time is until
  the last process exits.

    python benchmarks/enroll_bulk.py --limit-people 0 --processes 1,2   # all 13,233 images: 2 processes over 1
    python benchmarks/enroll_bulk.py --limit-people 0 --workers 1,2     # the same with threads in one process
    python benchmarks/enroll_bulk.py --limit-people 0 --workers 1 --threads 1  # one core: the baseline for 2 workers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEATLAS_DATA", REPO.parent / "shared" / "data"))


def subset(images: Path, n: int, dest: Path, shard: int = 0, shards: int = 1) -> tuple[Path, int]:
    """A folder of symlinks to every ``shards``-th of the first ``n`` people (all when n == 0) and its image count."""
    people = sorted(p for p in images.iterdir() if p.is_dir())
    people = (people[:n] if n else people)[shard::shards]
    if n == 0 and shards == 1:
        return images, sum(1 for _ in images.glob("*/*.jpg"))
    count = 0
    for person in people:
        (dest / person.name).mkdir(parents=True)
        for img in sorted(person.glob("*.jpg")):
            (dest / person.name / img.name).symlink_to(img)
            count += 1
    return dest, count


def command(folder: Path, workers: int, home: Path) -> list[str]:
    """The enroll-dir command line for one folder into the gallery under ``home``."""
    return [sys.executable, "-m", "faceatlas", "enroll-dir", str(folder), "--collection", "bench",
            "--gallery", str(home / "g.db"), "--workers", str(workers), "--multi-face", "largest", "--json"]


def enrol(folders: list[Path], workers: int, home: Path, threads: int = 0) -> tuple[float, int, int, list[float]]:
    """Run one enroll-dir process per folder, all at once into one gallery.

    Returns (seconds until the last exits, faces enrolled, images rejected, each process's own seconds)."""
    env = {**os.environ, "FACEATLAS_HOME": str(home)}
    if threads:
        env["FACEATLAS_THREADS"] = str(threads)  # threads per model session (a process otherwise uses every core)
    t = time.perf_counter()
    procs = [subprocess.Popen(command(f, workers, home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for f in folders]
    outs: list[tuple[str, str]] = [("", "")] * len(procs)
    each = [0.0] * len(procs)

    def wait(i: int) -> None:
        outs[i] = procs[i].communicate()
        each[i] = round(time.perf_counter() - t, 1)

    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(len(procs))]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    secs = time.perf_counter() - t
    faces = rejected = 0
    for proc, (out, err) in zip(procs, outs, strict=True):
        if proc.returncode not in (0, 2):
            raise SystemExit(err)
        lines = [json.loads(x) for x in out.splitlines() if x.strip()]
        faces += sum(len(x["sample_ids"]) for x in lines)
        rejected += sum(len(x["rejected"]) for x in lines)
    return secs, faces, rejected, each


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-people", type=int, default=300, help="first N people of LFW (0 = all 5,749)")
    ap.add_argument("--workers", default="1,2", help="worker (thread) counts to compare in one process")
    ap.add_argument("--processes", default="",
                    help="process counts to compare instead, e.g. 1,2 (each process: cores/N workers, 1 thread each)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads per model session (0 = default: the CLI's choice, or 1 with --processes)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "enroll_bulk.json")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    images = DATA / "lfw" / "images"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Warm the model cache (one-time transforms) outside the timings.
        enrol([subset(images, 2, Path(tmp) / "warm")[0]], 1, Path(tmp) / "w")
        if args.processes:  # cores/N workers per process, one thread per model session (N = 1: the CLI's default)
            runs = [(int(p), max(1, cores // int(p)), args.threads or 1) for p in args.processes.split(",")]
        else:
            runs = [(1, int(w), args.threads) for w in args.workers.split(",")]
        for n_proc, workers, threads in runs:
            tag = f"p{n_proc}w{workers}t{threads}"
            shards = [subset(images, args.limit_people, Path(tmp) / tag / f"s{i}", i, n_proc) for i in range(n_proc)]
            n_images = sum(c for _, c in shards)
            home = Path(tmp) / f"home-{tag}"
            home.mkdir()
            secs, faces, rejected, each = enrol([f for f, _ in shards], workers, home, threads)
            results.append({"processes": n_proc, "workers": workers, "threads": threads or "default", "images": n_images,
                            "seconds": round(secs, 1), "images_per_s": round(n_images / secs, 2),
                            "faces_enrolled": faces, "rejected": rejected, "process_seconds": each,
                            "process_images": [c for _, c in shards]})
            print(json.dumps(results[-1]), flush=True)
    if len(results) >= 2:
        what = "processes" if args.processes else "workers"
        print(f"speed-up {results[-1][what]} {what} over {results[0][what]}: "
              f"{results[-1]['images_per_s'] / results[0]['images_per_s']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results}, indent=2))


if __name__ == "__main__":
    main()
