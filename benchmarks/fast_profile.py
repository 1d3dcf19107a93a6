"""Candidates for ``profile="fast"``: what each would cost per face and what it would do to templates.

Two measurements, both through faceatlas's own code paths (derived model files, sessions, alignment):

* ``embedders``: CPU time per aligned 112×112 LFW crop (one crop per call, ``--threads`` threads, calls interleaved
  across the candidates so load changes hit all of them) for ``sface``, ``faceplugin-512``, ``mobilefacenet-192``
  and ``mobilefacenet-192+flip``; their LFW accuracy is ``faceatlas eval lfw --embedder NAME``.
* ``cap``: a detector input cap (``detect_size``) and single-scale detection, against the default pipeline, on LFW
  images pasted in a mid-grey 640×480 canvas at ×1 (faces ≈ 95 px), 1280×960 at ×2 (≈ 190 px) and 1920×1080 at ×3
  (≈ 285 px): cosine between the default template and the capped one (1.0 = template unchanged).

    python benchmarks/fast_profile.py                       # both, ~2 minutes
    python benchmarks/fast_profile.py --only embedders --calls 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_models_dir, default_out, print_table, progress, write_json

EMBEDDERS = ("sface", "faceplugin-512", "mobilefacenet-192", "mobilefacenet-192+flip")
CAPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("single-scale", {"multiscale": False}),
    ("cap 320", {"detect_size": 320}),
    ("cap 320 single-scale", {"detect_size": 320, "multiscale": False}),
    ("cap 480 single-scale", {"detect_size": 480, "multiscale": False}),
)
CANVASES = ((1, (640, 480)), (2, (1280, 960)), (3, (1920, 1080)))


def lfw_files(data_dir: Path, n: int) -> list[Path]:
    """The first image of ``n`` LFW people (sorted by name)."""
    return sorted((data_dir / "lfw" / "images").glob("*/*_0001.jpg"))[:n]


def embedders_case(args: argparse.Namespace) -> dict[str, Any]:
    """CPU ms per crop for each candidate embedder, interleaved call by call."""
    from faceatlas.facade import FaceAtlas

    fa = FaceAtlas(models_dir=args.models_dir, threads=args.threads)
    crops = [fa.align(p, fa.detect(p)[0]) for p in lfw_files(args.data_dir, 20)]
    models = {}
    for name in EMBEDDERS:
        try:
            models[name] = FaceAtlas(embedder=name, models_dir=args.models_dir, threads=args.threads).embedder
        except Exception as exc:  # noqa: BLE001 - an optional runtime (ai-edge-litert) may be missing
            progress(f"  {name}: skipped ({exc})")
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.embed_crops(np.stack(crops[:1]))
    for i in range(args.calls):
        crop = np.stack([crops[i % len(crops)]])
        order = list(models) if i % 2 == 0 else list(models)[::-1]
        for name in order:
            c0 = time.process_time()
            models[name].embed_crops(crop)
            cpu[name].append((time.process_time() - c0) * 1e3)
    return {k: {"cpu_ms_median": float(np.median(v)), "cpu_ms_p25": float(np.percentile(v, 25)),
                "cpu_ms_p75": float(np.percentile(v, 75)), "calls": len(v)} for k, v in cpu.items()}


def paste(rgb: np.ndarray, scale: int, size: tuple[int, int]) -> np.ndarray:
    """An RGB image scaled by ``scale`` and pasted in the centre of a mid-grey canvas."""
    import cv2

    if scale != 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    w, h = size
    out = np.full((h, w, 3), 128, np.uint8)
    y0, x0 = (h - rgb.shape[0]) // 2, (w - rgb.shape[1]) // 2
    out[y0 : y0 + rgb.shape[0], x0 : x0 + rgb.shape[1]] = rgb
    return out


def cap_case(args: argparse.Namespace) -> dict[str, Any]:
    """Cosine of capped-detector templates to the default pipeline's, per canvas and face size."""
    from faceatlas.facade import FaceAtlas
    from faceatlas.images import load_image

    base = FaceAtlas(models_dir=args.models_dir, threads=args.threads)
    variants = {label: FaceAtlas(models_dir=args.models_dir, threads=args.threads, **kw) for label, kw in CAPS}
    out: dict[str, Any] = {}
    for scale, size in CANVASES:
        cos: dict[str, list[float]] = {k: [] for k in variants}
        widths = []
        for path in lfw_files(args.data_dir, args.images):
            img = paste(load_image(path).rgb, scale, size)
            ref = base.embed(img, faces="one", color="rgb")
            if not ref or ref[0].template is None:
                continue
            widths.append(ref[0].detection.box.width)
            for label, fa in variants.items():
                got = fa.embed(img, faces="one", color="rgb")
                t = got[0].template if got else None
                cos[label].append(float(np.dot(ref[0].template.vector, t.vector)) if t is not None else -1.0)
        out[f"{size[0]}x{size[1]}"] = {
            "face_width_median_px": float(np.median(widths)), "faces": len(widths),
            **{k: {"min": min(v), "p5": float(np.percentile(v, 5)), "median": float(np.median(v))} for k, v in cos.items()},
        }
    return out


def main() -> None:
    """Measure, print, save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("embedders", "cap"), help="run one measurement")
    ap.add_argument("--threads", type=int, default=2, help="threads per model session (default 2)")
    ap.add_argument("--calls", type=int, default=100, help="timed calls per embedder (default 100)")
    ap.add_argument("--images", type=int, default=40, help="LFW images per canvas in the cap case (default 40)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="extra model files folder")
    ap.add_argument("--out", type=Path, default=default_out("fast_profile"), help="JSON results path")
    args = ap.parse_args()
    results: dict[str, Any] = {"benchmark": "fast_profile", "threads": args.threads}
    if args.only in (None, "embedders"):
        progress("embedders: CPU per crop")
        results["embedders"] = r = embedders_case(args)
        print_table(["embedder", "CPU ms/crop", "p25", "p75"],
                    [[k, v["cpu_ms_median"], v["cpu_ms_p25"], v["cpu_ms_p75"]] for k, v in r.items()],
                    title="CPU per aligned crop (one crop per call)")
    if args.only in (None, "cap"):
        progress("cap: template cosine to the default pipeline")
        results["cap"] = r = cap_case(args)
        rows = [[canvas, v["face_width_median_px"], label, v[label]["min"], v[label]["p5"], v[label]["median"]]
                for canvas, v in r.items() for label, _ in CAPS]
        print_table(["canvas", "face px", "variant", "cos min", "cos p5", "cos median"], rows,
                    title="detector caps: template cosine to the default pipeline (1 = unchanged)")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
