"""Face detection rate on the LFW View-2 images: in how many of the 7,701 distinct images that pairs.txt references
does the detector find at least one face (target: >= 99.9 %)?

Reports the number of images with no face and with more than one face, the time per image (decode + detect, and
detect alone) and lists every image where no face was found. ``--draw DIR`` saves a few images with the boxes,
scores and five landmarks drawn (failures first, then multi-face images, then a spread of ordinary ones) so a person
can check that they sit right.

Run from anywhere:

    python benchmarks/detect_lfw.py                          # all 7,701 images, YuNet (default detector)
    python benchmarks/detect_lfw.py --detector scrfd-500m    # another detector
    python benchmarks/detect_lfw.py --limit 40 --draw /tmp/draw --draw-n 8

Models come from ``FACEATLAS_MODELS`` (default ``../shared/models``), data from ``FACEATLAS_DATA`` (default
``../shared/data``), both relative to the repository root.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    default_data_dir,
    default_models_dir,
    default_out,
    distinct_images,
    environment,
    print_table,
    progress,
    read_lfw_pairs,
    summarize_ms,
    write_json,
)

from faceatlas.facade import FaceAtlas
from faceatlas.types import Face

DETECTORS = ("yunet", "yunet-fp32", "scrfd-500m", "scrfd-2.5g")
TARGET_RATE = 0.999

# Landmark colours (BGR): left eye, right eye, nose, left mouth corner, right mouth corner (as seen in the image).
LANDMARK_COLOURS = ((0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 0, 255), (0, 255, 255))
LANDMARK_NAMES = ("eye L", "eye R", "nose", "mouth L", "mouth R")


@dataclass
class ImageResult:
    """Detections and timings for one image."""

    rel: str
    faces: list[Face]
    width: int
    height: int
    decode_ms: float
    detect_ms: float


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", choices=DETECTORS, default="yunet", help="detector model (default: yunet)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N distinct images (quick runs)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: library default)")
    ap.add_argument("--det-score", type=float, default=0.6, help="detection score threshold (default 0.6)")
    ap.add_argument("--no-multiscale", action="store_true", help="disable the detector's extra multi-scale passes")
    ap.add_argument("--draw", type=Path, default=None, help="folder to save images with boxes/landmarks drawn")
    ap.add_argument("--draw-n", type=int, default=8, help="how many images to draw (default 8)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="extra model files folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results path (default: benchmarks/results/detect_lfw[_<detector>][_limit<N>].json)")
    args = ap.parse_args()
    if args.out is None:
        suffix = "" if args.detector == "yunet" else f"_{args.detector}"
        suffix += f"_limit{args.limit}" if args.limit else ""
        args.out = default_out("detect_lfw" + suffix)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    if args.draw_n < 0:
        ap.error("--draw-n must be >= 0")
    return args


def run_detection(fa: FaceAtlas, images_dir: Path, rels: list[str]) -> list[ImageResult]:
    """Decode and detect every image, timing both stages."""
    detector = fa.detector
    out: list[ImageResult] = []
    t_start = time.perf_counter()
    for k, rel in enumerate(rels, 1):
        t0 = time.perf_counter()
        loaded = fa.load(images_dir / rel)
        t1 = time.perf_counter()
        dets = detector.detect(loaded)
        t2 = time.perf_counter()
        faces = [Face(d, i) for i, d in enumerate(dets)]
        out.append(ImageResult(rel, faces, loaded.width, loaded.height, (t1 - t0) * 1e3, (t2 - t1) * 1e3))
        if k % 500 == 0 or k == len(rels):
            el = time.perf_counter() - t_start
            missing = sum(1 for r in out if not r.faces)
            progress(f"  {k}/{len(rels)} images, {el:.0f} s, {el / k * 1e3:.1f} ms/image, {missing} without a face")
    return out


def choose_to_draw(results: list[ImageResult], n: int) -> list[tuple[str, ImageResult]]:
    """Failures first, then up to a quarter multi-face images, then evenly spaced single-face images."""
    if n == 0:
        return []
    chosen: list[tuple[str, ImageResult]] = [("noface", r) for r in results if not r.faces][:n]
    multi = [r for r in results if len(r.faces) > 1]
    room = n - len(chosen)
    chosen += [("multi", r) for r in multi[: max(1, n // 4) if room > 0 else 0][:room]]
    room = n - len(chosen)
    single = [r for r in results if len(r.faces) == 1]
    if room > 0 and single:
        idx = np.unique(np.linspace(0, len(single) - 1, num=min(room, len(single))).round().astype(int))
        chosen += [("ok", single[i]) for i in idx]
    return chosen


def draw(fa: FaceAtlas, images_dir: Path, item: ImageResult, dest: Path, scale: int = 2) -> None:
    """Save the image enlarged ``scale``×, with every box, its score and rank, and the five landmarks."""
    import cv2

    bgr = fa.load(images_dir / item.rel).bgr()
    img = cv2.resize(bgr, (bgr.shape[1] * scale, bgr.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    for face in item.faces:
        b = face.box
        p1 = (int(round(b.x1 * scale)), int(round(b.y1 * scale)))
        p2 = (int(round(b.x2 * scale)), int(round(b.y2 * scale)))
        colour = (0, 255, 0) if face.index == 0 else (0, 200, 255)
        cv2.rectangle(img, p1, p2, colour, 2)
        cv2.putText(img, f"#{face.index} {face.score:.2f}", (p1[0], max(14, p1[1] - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        for (x, y), c in zip(face.landmarks.tolist(), LANDMARK_COLOURS, strict=True):
            cv2.circle(img, (int(round(x * scale)), int(round(y * scale))), 3, c, -1, cv2.LINE_AA)
    caption = f"{item.rel}  faces={len(item.faces)}" + ("  NO FACE" if not item.faces else "")
    cv2.rectangle(img, (0, img.shape[0] - 20), (img.shape[1], img.shape[0]), (0, 0, 0), -1)
    cv2.putText(img, caption, (4, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    # legend of landmark colours, top-left, on a dark patch so it reads on any background
    cv2.rectangle(img, (0, 0), (72, 14 * len(LANDMARK_NAMES) + 4), (0, 0, 0), -1)
    for i, (name, c) in enumerate(zip(LANDMARK_NAMES, LANDMARK_COLOURS, strict=True)):
        cv2.circle(img, (8, 10 + 14 * i), 4, c, -1)
        cv2.putText(img, name, (16, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), img):
        raise OSError(f"could not write {dest}")


def main() -> None:
    """Run the benchmark, print the tables and write the JSON."""
    args = parse_args()
    lfw = args.data_dir / "lfw"
    _, _, pairs = read_lfw_pairs(lfw / "pairs.txt")
    rels = distinct_images(pairs)
    total_distinct = len(rels)
    if args.limit is not None:
        rels = rels[: args.limit]
    fa = FaceAtlas(detector=args.detector, models_dir=args.models_dir, threads=args.threads,
                   det_score=args.det_score, multiscale=not args.no_multiscale)
    fa.warmup()
    progress(f"detecting faces in {len(rels)} of {total_distinct} distinct LFW pair images with {args.detector}")
    t0 = time.perf_counter()
    results = run_detection(fa, lfw / "images", rels)
    wall = time.perf_counter() - t0

    n = len(results)
    none = [r.rel for r in results if not r.faces]
    multi = [(r.rel, len(r.faces)) for r in results if len(r.faces) > 1]
    rate = (n - len(none)) / n
    decode = summarize_ms([r.decode_ms for r in results])
    detect = summarize_ms([r.detect_ms for r in results])
    both = summarize_ms([r.decode_ms + r.detect_ms for r in results])
    counts: dict[int, int] = {}
    for r in results:
        counts[len(r.faces)] = counts.get(len(r.faces), 0) + 1
    lowest = sorted((r for r in results if r.faces), key=lambda r: r.faces[0].score)[:10]

    print_table(
        ["metric", "value"],
        [
            ["detector", args.detector],
            ["images", n],
            ["with >= 1 face", n - len(none)],
            ["detection rate %", round(100.0 * rate, 3)],
            [f"target >= {100 * TARGET_RATE:.1f} % met", rate >= TARGET_RATE],
            ["with 0 faces", len(none)],
            ["with > 1 face", len(multi)],
            ["decode+detect ms/image (mean)", both["mean"]],
            ["decode+detect ms/image (median)", both["median"]],
            ["decode+detect ms/image (p90)", both["p90"]],
            ["detect only ms/image (mean)", detect["mean"]],
            ["decode only ms/image (mean)", decode["mean"]],
            ["wall time s", wall],
        ],
        title=f"LFW detection ({n} images)",
    )
    print_table(["faces in image", "images"], [[k, counts[k]] for k in sorted(counts)], title="Faces per image")
    print(f"\nImages with no face ({len(none)}):" + ("" if none else " none"))
    for rel in none:
        print(f"  {rel}")
    if lowest:
        print_table(["image", "best score", "faces"], [[r.rel, r.faces[0].score, len(r.faces)] for r in lowest],
                    title="Lowest best-face scores")

    drawn: list[str] = []
    if args.draw is not None:
        for k, (label, item) in enumerate(choose_to_draw(results, args.draw_n)):
            dest = args.draw / f"{k:02d}_{label}_{Path(item.rel).stem}.png"
            draw(fa, lfw / "images", item, dest)
            drawn.append(str(dest))
        print(f"\ndrew {len(drawn)} image(s) into {args.draw}:")
        for d in drawn:
            print(f"  {d}")

    payload: dict[str, Any] = {
        "benchmark": "detect_lfw",
        "config": {
            "detector": args.detector,
            "threads": args.threads,
            "det_score": args.det_score,
            "multiscale": not args.no_multiscale,
            "limit": args.limit,
            "data_dir": str(args.data_dir),
            "models_dir": str(args.models_dir),
        },
        "environment": environment(),
        "images": n,
        "distinct_images_in_pairs": total_distinct,
        "with_face": n - len(none),
        "detection_rate": rate,
        "target_rate": TARGET_RATE,
        "target_met": rate >= TARGET_RATE,
        "no_face": none,
        "multi_face": [{"image": rel, "faces": c} for rel, c in multi],
        "faces_per_image": {str(k): counts[k] for k in sorted(counts)},
        "timing_ms": {"decode_plus_detect": both, "detect": detect, "decode": decode},
        "wall_s": wall,
        "lowest_best_scores": [{"image": r.rel, "score": r.faces[0].score} for r in lowest],
        "drawn": drawn,
    }
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
