"""LFW accuracy table: every embedder alone, with and without flip TTA, and the fusion ensemble.

For each configuration: LFW View 2 accuracy ± std (threshold from the other nine folds), TAR@FAR=1e-2, EER,
closed-set rank-1 and open-set DIR@FPIR=1 % (identification protocol over all 13,233 images), and the per-image time
of detect + align + embed on this machine. Detections (landmarks) are cached once and shared by all embedders.

It also checks calibration honesty: for each fold, a calibration built from the impostor pairs of the OTHER folds'
images sets the threshold for far=1e-2; the false accepts measured on the held-out fold's impostor pairs should land
within a factor of 2 of 1e-2.

Run (all of LFW: long on 2 cores, results are cached and the run resumes):
    python benchmarks/lfw_table.py
    python benchmarks/lfw_table.py --configs sface,sface+flip --no-identification   # quicker
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from faceatlas import config  # noqa: E402
from faceatlas.calibration import Calibration  # noqa: E402
from faceatlas.embed.ensemble import fuse_templates  # noqa: E402
from faceatlas.evaluate.calibrate import all_pair_scores  # noqa: E402
from faceatlas.evaluate.metrics import kfold_accuracy  # noqa: E402
from faceatlas.evaluate.protocols import lfw_identification_split, read_lfw_pairs  # noqa: E402
from faceatlas.evaluate.runner import (  # noqa: E402
    TemplateSet,
    embed_images,
    evaluate_identification,
    evaluate_verification,
    pair_scores,
    prefill_flip_caches,
    seed_template_cache,
)
from faceatlas.facade import FaceAtlas  # noqa: E402
from faceatlas.models import ModelStore  # noqa: E402

DEFAULT_CONFIGS = (
    "sface,sface+flip,faceplugin-512,faceplugin-512+flip,mobilefacenet-192,mobilefacenet-192+flip,dlib-resnet,dlib-resnet+flip"
)


def progress(label: str) -> Any:
    """A stderr progress printer."""
    state = {"last": 0.0}

    def cb(done: int, total: int) -> None:
        now = time.time()
        if now - state["last"] > 10 or done == total:
            state["last"] = now
            print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)

    return cb


def time_per_image(atlas: FaceAtlas, paths: list[Path], n: int) -> float:
    """Median wall time (ms) of detect + align + embed of one image, over ``n`` images after warm-up."""
    atlas.embed(paths[0], faces="one")
    times = []
    for p in paths[1 : n + 1]:
        t = time.perf_counter()
        atlas.embed(p, faces="one")
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def fuse(sets: list[TemplateSet], weights: list[float], model_id: str) -> TemplateSet:
    """The ensemble's templates from its members' cached ones (the same function EnsembleEmbedder uses)."""
    vec = fuse_templates([ts.vectors for ts in sets], weights)
    found = np.logical_and.reduce([ts.found for ts in sets])
    vec[~found] = 0
    return TemplateSet(sets[0].keys, vec.astype(np.float32), found, sets[0].n_faces, model_id, 0.0, 0)


def _member_scores(sets: list[TemplateSet], pairs: list[Any]) -> tuple[Any, Any, Any, Any]:
    """Pair scores (pairs × members), pairs with a face missing in any member, labels and folds."""
    cols = [pair_scores(ts, pairs) for ts in sets]
    scores = np.stack([c[0] for c in cols], axis=1).astype(np.float64)
    failed = np.logical_or.reduce([c[1] for c in cols])
    return scores, failed, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])


def _weights(scores: Any, rows: Any, labels: Any, rule: str) -> Any:
    """Fusion weights (absolute values summing to 1) learned on ``rows`` only: z-norm or Fisher LDA."""
    if rule == "znorm":
        w = 1.0 / scores[rows & ~labels].std(axis=0)
    else:
        gen, imp = scores[rows & labels], scores[rows & ~labels]
        cov = 0.5 * (np.cov(gen, rowvar=False) + np.cov(imp, rowvar=False))
        w = np.linalg.solve(np.atleast_2d(cov), gen.mean(axis=0) - imp.mean(axis=0))
    return w / np.abs(w).sum()


def _fused(scores: Any, w: Any, labels: Any, failed: Any) -> Any:
    """Fused pair scores; a pair with a missing face is pushed to the wrong side of any threshold."""
    out = scores @ w
    out[failed & labels], out[failed & ~labels] = -1e9, 1e9
    return out


def fusion_cv(sets: list[TemplateSet], pairs: list[Any], rule: str) -> dict[str, Any]:
    """LFW accuracy of score fusion whose weights are learned per fold on the other nine folds only.

    ``znorm``: weight 1/sigma of each member's impostor scores on the training folds (z-score fusion; the means only
    shift the threshold, which is chosen on the training folds too). ``lda``: Fisher's discriminant of the members'
    scores on the training pairs. Returns per-fold weights and accuracies.
    """
    scores, failed, labels, folds = _member_scores(sets, pairs)
    accs, weights = [], []
    for k in sorted(set(folds.tolist())):
        w = _weights(scores, (folds != k) & ~failed, labels, rule)
        accs.append(float(kfold_accuracy(_fused(scores, w, labels, failed), labels, folds).accuracies[k]))
        weights.append([round(float(x), 4) for x in w])
    return {"rule": rule, "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracies": accs, "fold_weights": weights}


def fusion_nested(sets: dict[str, TemplateSet], pairs: list[Any]) -> dict[str, Any]:
    """Accuracy of the whole recipe "pick the members, then z-norm weights", chosen without the test fold.

    For each held-out fold, every subset (two or more) of the given configurations is scored by its nine-fold
    accuracy on the training folds only (z-norm weights and thresholds from those folds); the best subset is then
    weighted on all training folds and measured once on the held-out fold. This removes the optimism of choosing
    the members by looking at the test folds.
    """
    names = list(sets)
    scores, failed, labels, folds = _member_scores(list(sets.values()), pairs)
    subsets = [c for r in range(2, len(names) + 1) for c in itertools.combinations(range(len(names)), r)]
    accs, chosen = [], []
    for k in sorted(set(folds.tolist())):
        train, rest = (folds != k) & ~failed, folds != k

        def fused(combo: tuple[int, ...], train: Any = train) -> Any:
            sub = scores[:, list(combo)]
            return _fused(sub, _weights(sub, train, labels, "znorm"), labels, failed)

        inner = {c: kfold_accuracy(fused(c)[rest], labels[rest], folds[rest]).mean for c in subsets}
        best = max(subsets, key=lambda c: inner[c])
        accs.append(float(kfold_accuracy(fused(best), labels, folds).accuracies[k]))
        chosen.append("+".join(names[i] for i in best))
    return {"rule": "nested selection, znorm", "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracies": accs, "chosen_per_fold": chosen}


def calibration_check(ts: TemplateSet, pairs: list[Any], far: float = 1e-2) -> dict[str, Any]:
    """Per held-out fold: threshold from a calibration on the other folds' images; measured FAR on the fold."""
    idx = ts.index()
    scores, failed = pair_scores(ts, pairs)
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    accepted = total = 0
    per_fold = []
    for k in sorted(set(folds.tolist())):
        train_imgs = sorted({x for p in pairs if p.fold != k for x in (p.a, p.b)})
        test_people = {Path(x).parent.name for p in pairs if p.fold == k for x in (p.a, p.b)}
        train_imgs = [x for x in train_imgs if Path(x).parent.name not in test_people]
        rows = np.array([idx[x] for x in train_imgs])
        keep = rows[ts.found[rows]]
        imp, _ = all_pair_scores(ts.vectors[keep], [Path(ts.keys[i]).parent.name for i in keep])
        cal = Calibration.from_scores(ts.model_id, imp, source=f"LFW folds except {k + 1}")
        thr = cal.threshold_for(far)
        m = (folds == k) & ~labels & ~failed
        fa = int((scores[m] >= thr).sum())
        accepted += fa
        total += int(m.sum())
        per_fold.append({"fold": k + 1, "threshold": thr, "false_accepts": fa, "impostor_pairs": int(m.sum())})
    measured = accepted / total if total else float("nan")
    return {"target_far": far, "measured_far": measured, "ratio": measured / far, "within_factor_2": 0.5 <= measured / far <= 2,
            "false_accepts": accepted, "impostor_pairs": total, "folds": per_fold}


def row(name: str, ts: TemplateSet, pairs: list[Any], split: Any, ms: float | None) -> dict[str, Any]:
    """All table metrics for one configuration."""
    ver = evaluate_verification(ts, pairs).summary
    out: dict[str, Any] = {
        "config": name,
        "accuracy": ver["accuracy_mean"],
        "accuracy_std": ver["accuracy_std"],
        "tar_at_far_1e-2": ver["tar_at_far"]["0.01"]["tar"],
        "eer": ver["eer"],
        "failed_pairs": ver["failed_to_detect_pairs"],
        "ms_per_image": ms,
        "threshold_mean": ver["threshold_mean"],
    }
    if split is not None:
        ident = evaluate_identification(ts, split).summary
        out["rank1"] = ident["rank1"]
        out["dir_at_fpir_1e-2"] = ident["dir_at_fpir"]["0.01"]["dir"]
    return out


def main() -> None:
    """Run the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=config.data_dir() / "lfw")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated embedder names ('+flip' allowed)")
    ap.add_argument("--fusion", default="", help="an ensemble model from the manifest to evaluate too (default: none)")
    ap.add_argument("--fusion-cv", default="", help="comma-separated configs to fuse with weights learned per fold")
    ap.add_argument("--fusion-candidates", default="", help="configs among which members are chosen per fold (nested)")
    ap.add_argument("--no-identification", action="store_true", help="only the 7,701 pair images")
    ap.add_argument("--timing-images", type=int, default=30, help="images timed per configuration")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lfw_table.json")
    args = ap.parse_args()

    pairs = read_lfw_pairs(args.data / "pairs.txt")
    split = None if args.no_identification else lfw_identification_split(args.data / "images")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    if split is not None:
        keys = sorted(set(keys) | {p for g in (split.gallery, split.known_probes, split.unknown_probes) for _, p in g})
    paths = [args.data / "images" / k for k in keys]
    cache = config.cache_dir() / "eval"
    store = ModelStore(models_dir=config.models_dir() or REPO.parent / "shared" / "models")
    sets: dict[str, TemplateSet] = {}
    rows = []
    timing_paths = paths[:: max(1, len(paths) // (args.timing_images + 1))]
    names = [c for c in args.configs.split(",") if c]
    for name in names:
        # A model and its +flip twin: embed each crop once and fill both template caches.
        if f"{name}+flip" in names:
            plain, flipped = FaceAtlas(embedder=name, store=store), FaceAtlas(embedder=f"{name}+flip", store=store)
            n = prefill_flip_caches(plain, flipped, paths, keys=keys, cache_dir=cache, progress=progress(f"{name} ±flip"))
            print(f"{name}: {n} images embedded with and without flip", file=sys.stderr, flush=True)
    for name in names:
        atlas = FaceAtlas(embedder=name, store=store)
        print(f"{name}: embedding {len(paths)} images", file=sys.stderr, flush=True)
        ts = embed_images(atlas, paths, keys=keys, select="central", cache_dir=cache, progress=progress(name))
        sets[name] = ts
        ms = time_per_image(atlas, timing_paths, args.timing_images)
        rows.append(row(name, ts, pairs, split, ms))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    fusion_info: dict[str, Any] = {}

    def ensure(name: str) -> TemplateSet:
        """A configuration's templates (embedded now, through the cache, if not yet in this run)."""
        if name not in sets:
            sets[name] = embed_images(FaceAtlas(embedder=name, store=store), paths, keys=keys, select="central",
                                      cache_dir=cache, progress=progress(name))
        return sets[name]

    if args.fusion:
        spec = store.spec(args.fusion, "recognition")
        members = [m for m, _ in spec.members]
        fused = fuse([ensure(m) for m in members], [w for _, w in spec.members], spec.name)
        # The fused templates must equal what the ensemble model itself computes.
        ens = FaceAtlas(embedder=spec.name, store=store)
        check = [ens.embed(p, faces="one", select="central") for p in timing_paths[:10]]
        idx = fused.index()
        diffs = [float(np.abs(f[0].template.vector - fused.vectors[idx[str(p.relative_to(args.data / 'images'))]]).max())
                 for f, p in zip(check, timing_paths[:10], strict=True) if f]
        fusion_info = {"members": spec.members, "max_abs_diff_vs_ensemble_model": max(diffs) if diffs else None}
        if diffs and max(diffs) < 1e-4:  # later runs (eval, calibrate) of the ensemble reuse these templates
            seed_template_cache(ens, fused, paths, cache_dir=cache)
        ms = time_per_image(ens, timing_paths, args.timing_images)
        rows.append(row(spec.name, fused, pairs, split, ms))
        sets[spec.name] = fused
    cv = []
    if args.fusion_cv:
        members = args.fusion_cv.split(",")
        member_sets = [ensure(m) for m in members]
        cv = [{"members": members, **fusion_cv(member_sets, pairs, rule)} for rule in ("znorm", "lda")]
    if args.fusion_candidates:
        cand = args.fusion_candidates.split(",")
        cv.append({"members": cand, **fusion_nested({m: ensure(m) for m in cand}, pairs)})
    calib = {name: calibration_check(ts, pairs) for name, ts in sets.items() if name in (args.configs.split(",")[0], args.fusion)}
    result = {"rows": rows, "fusion": fusion_info, "fusion_cv": cv, "calibration_far_1e-2": calib,
              "images": len(paths), "machine": "2 cores, no GPU"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("| config | LFW acc ± std | TAR@FAR=1e-2 | EER | rank-1 | DIR@FPIR=1% | ms/image |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        def pct(x: Any) -> str:
            return "n/a" if x is None else f"{100 * x:.2f} %"

        acc = f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} %"
        print(f"| {r['config']} | {acc} | {pct(r['tar_at_far_1e-2'])} | {pct(r['eer'])} | {pct(r.get('rank1'))} | "
              f"{pct(r.get('dir_at_fpir_1e-2'))} | {r['ms_per_image']:.0f} |")
    for name, c in calib.items():
        print(f"calibration {name}: far=1e-2 → measured {c['measured_far']:.4f} on held-out folds "
              f"({c['false_accepts']}/{c['impostor_pairs']}), ratio {c['ratio']:.2f}, within ×2: {c['within_factor_2']}")
    for c in cv:
        print(f"fusion, weights learned per fold ({c['rule']}) of {'+'.join(c['members'])}: "
              f"{100 * c['accuracy']:.2f} ± {100 * c['accuracy_std']:.2f} %; "
              + (f"fold 1 weights {c['fold_weights'][0]}" if "fold_weights" in c else f"chosen per fold {c['chosen_per_fold']}"))
    if fusion_info:
        diff = fusion_info["max_abs_diff_vs_ensemble_model"]
        print(f"fusion members {fusion_info['members']}; max |diff| vs ensemble model {diff}")


if __name__ == "__main__":
    main()
