"""Cost and sanity of the "why this match" occlusion maps (``FaceAtlas.explain``) on LFW genuine pairs.

For the first N genuine pairs of LFW's pairs.txt: time one full explanation (decode, detect, align, ``2 + 2·grid²``
embeddings) and check that greying out the eyes-and-nose block of the aligned faces moves the score more than greying
out the background corners. On the 112×112 ArcFace crop with the default 7×7 grid (16-pixel patches) the eyes and nose
lie in rows/columns 2-4 (pixels 32-80); the corners are patches (0,0), (0,6), (6,0), (6,6). Reported: ms per pair
(median, p90), mean per-patch score drop of both regions, and the share of pairs whose centre drop beats the corners.

    python benchmarks/explain.py                 # 100 pairs, grid 7
    python benchmarks/explain.py --pairs 300 --grid 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    default_data_dir,
    default_out,
    environment,
    print_table,
    progress,
    read_lfw_pairs,
    summarize_ms,
    write_json,
)

from faceatlas.errors import FaceAtlasError
from faceatlas.facade import FaceAtlas


def regions(grid: int) -> tuple[tuple[slice, slice], list[tuple[int, int]]]:
    """The eyes-and-nose block and the four corner patches for a grid (scaled from the 7×7 layout)."""
    lo, hi = round(2 * grid / 7), round(5 * grid / 7)
    last = grid - 1
    return (slice(lo, hi), slice(lo, hi)), [(0, 0), (0, last), (last, 0), (last, last)]


def main() -> None:
    """Run the benchmark and print/write its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100, help="genuine pairs to explain")
    ap.add_argument("--grid", type=int, default=7, help="patches per side")
    ap.add_argument("--embedder", default="sface")
    ap.add_argument("--out", default=str(default_out("explain")))
    args = ap.parse_args()

    root = default_data_dir() / "lfw"
    _, _, pairs = read_lfw_pairs(root / "pairs.txt")
    genuine = [p for p in pairs if p.same][: args.pairs]
    fa = FaceAtlas(embedder=args.embedder)
    fa.warmup()
    centre, corners = regions(args.grid)
    times: list[float] = []
    c_drops: list[float] = []
    k_drops: list[float] = []
    failed = 0
    for i, p in enumerate(genuine):
        started = time.perf_counter()
        try:
            e = fa.explain(root / "images" / p.a, root / "images" / p.b, grid=args.grid)
        except FaceAtlasError:
            failed += 1
            continue
        times.append((time.perf_counter() - started) * 1000)
        c_drops.append(e.region_drop(*centre))
        k_drops.append(float(np.mean([(e.map_a[r, c] + e.map_b[r, c]) / 2 for r, c in corners])))
        if i % 20 == 0:
            progress(f"{i + 1}/{len(genuine)} pairs, {np.median(times):.0f} ms per pair")
    c, k = np.asarray(c_drops), np.asarray(k_drops)
    result: dict[str, Any] = {
        "pairs": len(genuine), "explained": len(c), "failed": failed, "grid": args.grid, "embedder": args.embedder,
        "ms_per_pair": summarize_ms(times),
        "centre_mean_drop": float(c.mean()), "corner_mean_drop": float(k.mean()),
        "centre_beats_corners": float((c > k).mean()),
        "environment": environment(),
    }
    print_table(["pairs", "grid", "ms/pair (median)", "ms/pair (p90)", "eyes+nose drop", "corner drop", "centre > corners"],
                [[len(c), args.grid, result["ms_per_pair"].get("median"), result["ms_per_pair"].get("p90"),
                  round(float(c.mean()), 4), round(float(k.mean()), 4), f"{100 * result['centre_beats_corners']:.0f}%"]],
                title="why-this-match occlusion maps on LFW genuine pairs")
    write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
