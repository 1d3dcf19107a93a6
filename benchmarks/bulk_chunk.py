"""How many faces the bulk paths should batch per head call: ``embed_many`` CPU and wall time per image by ``chunk``.

``Pipeline.iter_many`` (behind ``embed_many``, ``enroll-dir``, ``cluster``, the Ray workers) detects images one by
one and runs the embedding head on batches of about ``chunk`` faces. This measures ``FaceAtlas(threads=T)
.embed_many(paths, faces="one", chunk=C)`` on ``--images`` LFW photos for each thread count and chunk size, the chunk
order rotating every round so load changes spread over all of them, and reports per chunk the median over rounds of
CPU and wall ms per image, and the median ratio to ``chunk=32`` (the old default) within the same round.
``--path evaluate`` measures the evaluation runner instead (``evaluate.runner.embed_images`` with no cache, chunk as
its ``head_batch``: what ``faceatlas evaluate`` and ``calibrate`` embed with).

    python benchmarks/bulk_chunk.py                      # threads 1 and 2, chunks 1,2,4,8,32, 5 rounds of 150 photos
    python benchmarks/bulk_chunk.py --path evaluate --chunks 2,32 --threads 2
Results: ``benchmarks/results/bulk_chunk.json`` (``bulk_chunk_evaluate.json``; ``--out``), a table on stdout.
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
    ap.add_argument("--path", choices=("embed_many", "evaluate"), default="embed_many")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path, default=None, help="default: results/bulk_chunk[_evaluate].json")
    args = ap.parse_args()
    from faceatlas.evaluate.runner import embed_images
    from faceatlas.facade import FaceAtlas

    def once(fa: Any, chunk: int) -> None:
        """One pass over the photos on the chosen path."""
        if args.path == "evaluate":
            embed_images(fa, paths, select="largest", cache_dir=None, head_batch=chunk)
        else:
            fa.embed_many(paths, faces="one", select="largest", chunk=chunk)

    paths = sorted((default_data_dir() / "lfw" / "images").glob("*/*_0001.jpg"))[: args.images]
    chunks = [int(c) for c in args.chunks.split(",")]
    result: dict[str, Any] = {"environment": environment(), "images": len(paths), "path": args.path,
                              "load_before": os.getloadavg()[0], "threads": {}}
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        fa = FaceAtlas(models_dir=args.models_dir, threads=threads)
        fa.embed_many(paths[:8], faces="one", select="largest")
        cpu: dict[int, list[float]] = {c: [] for c in chunks}
        wall: dict[int, list[float]] = {c: [] for c in chunks}
        for r in range(args.rounds):
            for chunk in chunks[r % len(chunks):] + chunks[: r % len(chunks)]:
                c0, t0 = time.process_time(), time.perf_counter()
                once(fa, chunk)
                cpu[chunk].append((time.process_time() - c0) * 1000 / len(paths))
                wall[chunk].append((time.perf_counter() - t0) * 1000 / len(paths))
        base = 32 if 32 in chunks else chunks[-1]
        res = {}
        for chunk in chunks:
            cpu_r, wall_r = np.divide(cpu[chunk], cpu[base]), np.divide(wall[chunk], wall[base])
            res[chunk] = {"cpu_ms": round(float(np.median(cpu[chunk])), 2), "wall_ms": round(float(np.median(wall[chunk])), 2),
                          f"cpu_vs_{base}": _quartiles(cpu_r), f"wall_vs_{base}": _quartiles(wall_r)}
            rows.append([threads, chunk, res[chunk]["cpu_ms"], res[chunk]["wall_ms"], _shown(cpu_r), _shown(wall_r)])
        result["threads"][threads] = res
    result["load_after"] = os.getloadavg()[0]
    print_table(["threads", "chunk", "CPU ms/image", "wall ms/image", "CPU ÷ chunk 32 [p25, p75]",
                 "wall ÷ chunk 32 [p25, p75]"], rows,
                title=f"{args.path} over {len(paths)} LFW photos, {args.rounds} rounds; load "
                      f"{result['load_before']:.2f} → {result['load_after']:.2f}")
    write_json(args.out or default_out("bulk_chunk" + ("_evaluate" if args.path == "evaluate" else "")), result)


def _quartiles(ratios: Any) -> dict[str, float]:
    """Median, p25 and p75 of paired per-round ratios."""
    p25, med, p75 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(med), 3), "p25": round(float(p25), 3), "p75": round(float(p75), 3)}


def _shown(ratios: Any) -> str:
    """``median [p25, p75]`` for the table."""
    q = _quartiles(ratios)
    return f"{q['median']:.3f} [{q['p25']:.3f}, {q['p75']:.3f}]"


if __name__ == "__main__":
    main()
