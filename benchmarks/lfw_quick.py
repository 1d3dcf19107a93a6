"""Quick LFW verification accuracy (View-2 protocol) on the first K folds of pairs.txt.

Each distinct image is embedded once (``FaceAtlas.embed_many`` in chunks, ``faces='one'`` with the chosen selection
policy); a pair's score is the cosine of its two templates. For every fold used, the decision threshold is the one
that maximises accuracy on the OTHER folds used, and accuracy is measured on the held-out fold; the result is the mean
± standard deviation (population, ddof=0) over the folds. A pair where either image has no detected face counts as an
error. The mean of the chosen thresholds is printed too: a data-driven default cosine threshold. Accuracy at the
embedder's manifest default threshold is reported alongside.

Run from anywhere:

    python benchmarks/lfw_quick.py                                # 3 folds, sface, select=largest
    python benchmarks/lfw_quick.py --folds 10 --select central    # full protocol
    python benchmarks/lfw_quick.py --folds 10 --select central --flip
    python benchmarks/lfw_quick.py --embedder faceplugin-512 --detector scrfd-500m

Models come from ``FACEATLAS_MODELS`` (default ``../shared/models``), data from ``FACEATLAS_DATA`` (default
``../shared/data``), both relative to the repository root.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import (
    LfwPair,
    default_data_dir,
    default_models_dir,
    default_out,
    distinct_images,
    environment,
    print_table,
    progress,
    read_lfw_pairs,
    write_json,
)

from faceatlas.detect import SelectPolicy
from faceatlas.errors import FaceAtlasError
from faceatlas.facade import FaceAtlas

EMBEDDERS = ("sface", "faceplugin-512")
DETECTORS = ("yunet", "yunet-fp32", "scrfd-500m", "scrfd-2.5g")
SELECTS = ("largest", "central", "score")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=3, help="use the first K folds (2..10; 10 = full protocol)")
    ap.add_argument("--embedder", choices=EMBEDDERS, default="sface", help="embedder model (default: sface)")
    ap.add_argument("--detector", choices=DETECTORS, default="yunet", help="detector model (default: yunet)")
    ap.add_argument("--flip", action="store_true", help="flip test-time augmentation (sum of plain+mirrored)")
    ap.add_argument("--select", choices=SELECTS, default="largest", help="which face when several are found")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: library default)")
    ap.add_argument("--det-score", type=float, default=0.6, help="detection score threshold (default 0.6)")
    ap.add_argument("--chunk", type=int, default=32, help="images per embed_many call (default 32)")
    ap.add_argument("--fixed-threshold", type=float, default=None,
                    help="also report accuracy at this fixed threshold (default: the embedder's manifest default)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="extra model files folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results path (default: benchmarks/results/lfw_quick_<embedder>_<detector>_<select>"
                         "[_flip]_f<K>.json)")
    args = ap.parse_args()
    if not 2 <= args.folds <= 10:
        ap.error("--folds must be between 2 and 10 (thresholds are chosen on the other folds)")
    if args.chunk < 1:
        ap.error("--chunk must be >= 1")
    if args.out is None:
        name = f"lfw_quick_{args.embedder}_{args.detector}_{args.select}{'_flip' if args.flip else ''}_f{args.folds}"
        args.out = default_out(name)
    return args


def embed_all(
    fa: FaceAtlas, images_dir: Path, rels: list[str], chunk: int, select: SelectPolicy
) -> tuple[dict[str, npt.NDArray[np.float32] | None], dict[str, str]]:
    """One template per image (None where no face was found) and any per-image errors."""
    vectors: dict[str, npt.NDArray[np.float32] | None] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    next_report = 500
    for start in range(0, len(rels), chunk):
        part = rels[start : start + chunk]
        try:
            rows = fa.embed_many([images_dir / r for r in part], faces="one", select=select)
        except FaceAtlasError:
            rows = []
            for r in part:  # find the culprit, keep the rest
                try:
                    rows.append(fa.embed_many([images_dir / r], faces="one", select=select)[0])
                except FaceAtlasError as exc:
                    errors[r] = str(exc)
                    rows.append([])
        for rel, faces in zip(part, rows, strict=True):
            if len(faces) > 1:
                raise RuntimeError(f"embed_many(faces='one') returned {len(faces)} faces for {rel}")
            tpl = faces[0].template if faces else None
            vectors[rel] = None if tpl is None else np.asarray(tpl.vector, np.float32)
        done = start + len(part)
        if done >= next_report or done == len(rels):
            el = time.perf_counter() - t0
            missing = sum(1 for v in vectors.values() if v is None)
            progress(f"  {done}/{len(rels)} images, {el:.0f} s, {el / done * 1e3:.1f} ms/image, {missing} without face")
            next_report += 500
    return vectors, errors


def best_threshold(scores: npt.NDArray[np.float64], same: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """Threshold maximising accuracy of ``score >= t`` ⇔ same (midpoints of sorted scores); ties → middle one."""
    pos = np.sort(scores[same])
    neg = np.sort(scores[~same])
    u = np.unique(scores)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1e-6]])
    # correct = positives at or above t + negatives below t
    correct = (len(pos) - np.searchsorted(pos, cands, side="left")) + np.searchsorted(neg, cands, side="left")
    best = np.flatnonzero(correct == correct.max())
    t = float(cands[best[len(best) // 2]])
    return t, float(correct.max()) / len(scores)


def main() -> None:
    """Embed, score, cross-validate, print and save."""
    args = parse_args()
    lfw = args.data_dir / "lfw"
    n_folds_file, per, all_pairs = read_lfw_pairs(lfw / "pairs.txt")
    if args.folds > n_folds_file:
        raise SystemExit(f"pairs.txt has only {n_folds_file} folds")
    pairs: list[LfwPair] = [p for p in all_pairs if p.fold < args.folds]
    rels = distinct_images(pairs)

    fa = FaceAtlas(detector=args.detector, embedder=args.embedder, models_dir=args.models_dir, threads=args.threads,
                   flip=args.flip, select=args.select, det_score=args.det_score)
    fa.warmup()
    fixed = args.fixed_threshold
    if fixed is None:
        fixed = fa.store.spec(args.embedder).default_threshold
    progress(f"embedding {len(rels)} images ({len(pairs)} pairs, {args.folds} folds) with {fa!r}, "
             f"detector {args.detector}")
    t0 = time.perf_counter()
    vectors, errors = embed_all(fa, lfw / "images", rels, args.chunk, args.select)
    embed_s = time.perf_counter() - t0

    no_face = [r for r in rels if vectors[r] is None]
    fold = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    valid = np.array([vectors[p.a] is not None and vectors[p.b] is not None for p in pairs])
    scores = np.full(len(pairs), np.nan)
    for k, p in enumerate(pairs):
        va, vb = vectors[p.a], vectors[p.b]
        if va is not None and vb is not None:
            scores[k] = float(np.dot(va, vb))

    rows: list[list[Any]] = []
    fold_results: list[dict[str, Any]] = []
    accs: list[float] = []
    thresholds: list[float] = []
    for f in range(args.folds):
        train = (fold != f) & valid
        test = fold == f
        t, train_acc = best_threshold(scores[train], same[train])
        pred = scores[test] >= t  # NaN (no face) compares False ...
        correct = (pred == same[test]) & valid[test]  # ... and is counted wrong either way
        acc = float(correct.sum()) / int(test.sum())
        missing = int((~valid[test]).sum())
        accs.append(acc)
        thresholds.append(t)
        fold_results.append({"fold": f + 1, "threshold": t, "train_accuracy": train_acc, "accuracy": acc,
                             "pairs": int(test.sum()), "pairs_without_face": missing})
        rows.append([f + 1, t, 100 * train_acc, 100 * acc, int(test.sum()), missing])

    mean_acc, std_acc = float(np.mean(accs)), float(np.std(accs))
    mean_t = float(np.mean(thresholds))
    fixed_acc = None
    if fixed is not None:
        fixed_acc = float((((scores >= fixed) == same) & valid).sum()) / len(pairs)
    gen = scores[same & valid]
    imp = scores[~same & valid]
    missing_pairs = int((~valid).sum())

    print_table(["fold", "threshold", "train acc %", "test acc %", "pairs", "no-face pairs"], rows,
                title=f"LFW verification per fold ({fa!r}, detector {args.detector})")
    summary = [
        ["folds", args.folds],
        ["accuracy % (mean ± std)", f"{100 * mean_acc:.2f} ± {100 * std_acc:.2f}"],
        ["mean chosen threshold", round(mean_t, 4)],
        ["threshold range", f"{min(thresholds):.4f} .. {max(thresholds):.4f}"],
    ]
    if fixed is not None and fixed_acc is not None:
        summary.append([f"accuracy % at fixed threshold {fixed:.3f}", round(100 * fixed_acc, 2)])
    summary += [
        ["pairs", len(pairs)],
        ["pairs with a missing face (errors)", missing_pairs],
        ["distinct images", len(rels)],
        ["images without a face", len(no_face)],
        ["images with load errors", len(errors)],
        ["genuine score mean / min", f"{gen.mean():.3f} / {gen.min():.3f}" if gen.size else "-"],
        ["impostor score mean / max", f"{imp.mean():.3f} / {imp.max():.3f}" if imp.size else "-"],
        ["embed time s (ms/image)", f"{embed_s:.1f} ({embed_s / len(rels) * 1e3:.1f})"],
    ]
    print_table(["metric", "value"], summary, title="Summary")
    if no_face:
        print(f"\nImages without a face ({len(no_face)}):")
        for r in no_face:
            print(f"  {r}")
    for r, e in errors.items():
        print(f"  error: {r}: {e}")

    payload: dict[str, Any] = {
        "benchmark": "lfw_quick",
        "config": {
            "folds": args.folds,
            "embedder": args.embedder,
            "model_id": fa.model_id,
            "detector": args.detector,
            "flip": args.flip,
            "select": args.select,
            "threads": args.threads,
            "det_score": args.det_score,
            "chunk": args.chunk,
            "data_dir": str(args.data_dir),
            "models_dir": str(args.models_dir),
            "std": "population (ddof=0) over folds",
            "threshold_rule": "maximise accuracy of cosine >= t on the other folds used; middle of tied optima",
        },
        "environment": environment(),
        "accuracy_mean": mean_acc,
        "accuracy_std": std_acc,
        "mean_threshold": mean_t,
        "fixed_threshold": fixed,
        "fixed_threshold_accuracy": fixed_acc,
        "folds": fold_results,
        "pairs": len(pairs),
        "pairs_per_half_fold": per,
        "pairs_with_missing_face": missing_pairs,
        "distinct_images": len(rels),
        "images_without_face": no_face,
        "image_errors": errors,
        "genuine_scores": {"n": int(gen.size), "mean": float(gen.mean()) if gen.size else None,
                           "min": float(gen.min()) if gen.size else None},
        "impostor_scores": {"n": int(imp.size), "mean": float(imp.mean()) if imp.size else None,
                            "max": float(imp.max()) if imp.size else None},
        "embed_seconds": embed_s,
        "embed_ms_per_image": embed_s / len(rels) * 1e3,
    }
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
