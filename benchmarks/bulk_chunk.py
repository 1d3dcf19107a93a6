"""How many faces the bulk paths should batch per head call: ``embed_many`` CPU and wall time per image by ``chunk``.

``Pipeline.iter_many`` (behind ``embed_many``, ``enroll-dir``, ``cluster``, the Ray workers) detects images one by
one and runs the embedding head on batches of about ``chunk`` faces. This measures ``FaceAtlas(threads=T)
.embed_many(paths, faces="one", chunk=C)`` on ``--images`` LFW photos for each thread count and chunk size, the chunk
order rotating every round so load changes spread over all of them, and reports per chunk the median over rounds of
CPU and wall ms per image, and the median ratio to ``chunk=32`` (the old default) within the same round.

    python benchmarks/bulk_chunk.py                      # threads 1 and 2, chunks 1,2,4,8,32, 5 rounds of 150 photos
Results: ``benchmarks/results/bulk_chunk.json`` (``--out``), a table on stdout.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_models_dir, default_out, environment, print_table, write_json


def main() -> None:
    """Measure every (threads, chunk), print and save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--chunks", default="1,2,4,8,32")
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path, default=default_out("bulk_chunk"))
    args = ap.parse_args()
    from faceatlas.facade import FaceAtlas

    paths = sorted((default_data_dir() / "lfw" / "images").glob("*/*_0001.jpg"))[: args.images]
    chunks = [int(c) for c in args.chunks.split(",")]
    result: dict[str, Any] = {"environment": environment(), "images": len(paths), "load_before": os.getloadavg()[0],
                              "threads": {}}
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        fa = FaceAtlas(models_dir=args.models_dir, threads=threads)
        fa.embed_many(paths[:8], faces="one", select="largest")
        cpu: dict[int, list[float]] = {c: [] for c in chunks}
        wall: dict[int, list[float]] = {c: [] for c in chunks}
        for r in range(args.rounds):
            for chunk in chunks[r % len(chunks):] + chunks[: r % len(chunks)]:
                c0, t0 = time.process_time(), time.perf_counter()
                fa.embed_many(paths, faces="one", select="largest", chunk=chunk)
                cpu[chunk].append((time.process_time() - c0) * 1000 / len(paths))
                wall[chunk].append((time.perf_counter() - t0) * 1000 / len(paths))
        base = 32 if 32 in chunks else chunks[-1]
        res = {}
        for chunk in chunks:
            res[chunk] = {"cpu_ms": round(float(np.median(cpu[chunk])), 2), "wall_ms": round(float(np.median(wall[chunk])), 2),
                          f"cpu_vs_{base}": round(float(np.median(np.divide(cpu[chunk], cpu[base]))), 3),
                          f"wall_vs_{base}": round(float(np.median(np.divide(wall[chunk], wall[base]))), 3)}
            rows.append([threads, chunk, res[chunk]["cpu_ms"], res[chunk]["wall_ms"], res[chunk][f"cpu_vs_{base}"],
                         res[chunk][f"wall_vs_{base}"]])
        result["threads"][threads] = res
    result["load_after"] = os.getloadavg()[0]
    print_table(["threads", "chunk", "CPU ms/image", "wall ms/image", "CPU ÷ chunk 32", "wall ÷ chunk 32"], rows,
                title=f"embed_many over {len(paths)} LFW photos, {args.rounds} rounds; load "
                      f"{result['load_before']:.2f} → {result['load_after']:.2f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
