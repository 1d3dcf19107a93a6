"""Face-analysis heads measured: liveness BPCER/APCER, gender/age on labelled LFW people, pose, eyes, expression, speed.

No labelled presentation-attack (PAD) dataset was available. Bona fide = every LFW image (real face photographs);
attacks = LFW faces re-rendered by ``benchmarks/spoof_synth.py`` as print and screen replays. Results go to
``benchmarks/results/analyze_*.{csv,json,png}``.

    python benchmarks/analyze.py bonafide                 # all 13,233 LFW images → analyze_bonafide.csv (resumable)
    python benchmarks/analyze.py attacks --n 1500         # stage attacks (spoof_synth.py) and score them
    python benchmarks/analyze.py det                      # BPCER/APCER per model and fused, DET plot, operating point
    python benchmarks/analyze.py gender                   # agreement with benchmarks/data/lfw_gender.csv + age spread
    python benchmarks/analyze.py pose                     # roll on in-plane rotations, yaw sign on mirrored images
    python benchmarks/analyze.py eyes                     # open LFW eyes vs eyes closed by hand-made edits
    python benchmarks/analyze.py expression-sheets        # top LFW faces per class → contact sheets (class order)
    python benchmarks/analyze.py speed                    # ms per face per head, all heads, next to the embedder
    python benchmarks/analyze.py overlay                  # every head drawn on 8 LFW photos, to check by eye
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, default_data_dir, default_models_dir, progress

import faceatlas.analysis  # noqa: F401  (registers the heads)
from faceatlas import FaceAtlas
from faceatlas.images import LoadedImage, load_image
from faceatlas.pipeline import FaceRequest

LIVE_MODELS = ("minifasnet-v2", "faceplugin-liveness")
DATA = Path(__file__).resolve().parent / "data"


def lfw_images(data: Path) -> list[Path]:
    """Every LFW image, sorted."""
    return sorted((data / "lfw" / "images").glob("*/*.jpg"))


def atlas(args: argparse.Namespace) -> FaceAtlas:
    """The pipeline under test (one thread unless asked: the machine is shared)."""
    return FaceAtlas(models_dir=args.models, threads=args.threads)


# -- liveness -------------------------------------------------------------------------------------------------


def score_liveness(fa: FaceAtlas, images: Sequence[Any], names: Sequence[str], out: Path) -> None:
    """Append ``name, detected, <model scores>`` rows to ``out`` for images not already in it (resumable)."""
    done: set[str] = set()
    if out.is_file():
        with out.open() as fh:
            done = {row["image"] for row in csv.DictReader(fh)}
    todo = [(img, n) for img, n in zip(images, names, strict=True) if n not in done]
    progress(f"{len(done)} already scored, {len(todo)} to go → {out}")
    new = not out.is_file()
    request = FaceRequest(faces="one", heads=("liveness",))
    t0 = time.perf_counter()
    with out.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["image", "faces", *LIVE_MODELS, "fused"])
        for i, ((_, name), res) in enumerate(zip(todo, fa.iter_many([t[0] for t in todo], request, chunk=16,
                                                                     errors="keep"), strict=True)):
            if not res.faces:
                w.writerow([name, 0, "", "", ""])
                continue
            lv = res.faces[0].head("liveness")
            w.writerow([name, res.detected, *(f"{lv.scores[m]:.5f}" for m in LIVE_MODELS), f"{lv.score:.5f}"])
            if i % 500 == 499:
                fh.flush()
                rate = (i + 1) / (time.perf_counter() - t0)
                progress(f"  {i + 1}/{len(todo)} ({rate:.1f} images/s)")


def cmd_bonafide(args: argparse.Namespace) -> None:
    """Score every LFW image (bona fide presentations)."""
    data = args.data
    paths = lfw_images(data)[: args.limit or None]
    score_liveness(atlas(args), paths, [str(p.relative_to(data / "lfw" / "images")) for p in paths],
                   RESULTS_DIR / "analyze_bonafide.csv")


def cmd_attacks(args: argparse.Namespace) -> None:
    """Stage replay attacks from LFW faces and score them."""
    from spoof_synth import render_attacks

    folder = RESULTS_DIR / "attacks"
    made = render_attacks(lfw_images(args.data), folder, args.n, seed=args.seed)
    progress(f"{len(made)} attack images in {folder}")
    score_liveness(atlas(args), made, [p.name for p in made], RESULTS_DIR / "analyze_attacks.csv")


def read_scores(path: Path) -> dict[str, np.ndarray]:
    """Per-column score arrays of a score CSV (rows without a face dropped)."""
    from faceatlas.analysis.liveness import fuse

    with path.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fused"]]
    out = {k: np.array([float(r[k]) for r in rows]) for k in LIVE_MODELS}
    out["fused"] = fuse([out[k] for k in LIVE_MODELS])  # recomputed: the CSV may predate a change of fusion rule
    return out | {"image": np.array([r["image"] for r in rows])}


def cmd_det(args: argparse.Namespace) -> None:
    """BPCER and APCER per model and fused; DET curves; the operating point at a BPCER target."""
    bona = read_scores(RESULTS_DIR / "analyze_bonafide.csv")
    att = read_scores(RESULTS_DIR / "analyze_attacks.csv")
    kinds = np.array([n.split("_")[0] for n in att["image"]])
    with (RESULTS_DIR / "analyze_attacks.csv").open() as fh:
        no_face = sum(1 for r in csv.DictReader(fh) if not r["fused"])
    out: dict[str, Any] = {"bona_fide_images": int(len(bona["fused"])), "attack_images": int(len(att["fused"])),
                           "attack_images_without_a_detected_face": no_face,
                           "attack_kinds": {k: int((kinds == k).sum()) for k in sorted(set(kinds))}, "models": {}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, ax = plt.subplots(figsize=(6, 6))
    for key in (*LIVE_MODELS, "fused"):
        b, a = bona[key], att[key]
        ts = np.unique(np.concatenate([b, a, np.linspace(0, 1, 1001)]))  # every score is a threshold
        bpcer = np.searchsorted(np.sort(b), ts, side="left") / len(b)
        apcer = 1 - np.searchsorted(np.sort(a), ts, side="left") / len(a)
        # Operating point: the highest threshold whose BPCER stays within the target (most attacks refused).
        ok = np.where(bpcer <= args.bpcer_target)[0]
        t_op = float(ts[ok.max()]) if len(ok) else 0.0
        eer_i = int(np.argmin(np.abs(bpcer - apcer)))
        entry = {
            "at_0.5": {"bpcer": float((b < 0.5).mean()), "apcer": float((a >= 0.5).mean())},
            "operating_point": {"threshold": t_op, "bpcer": float((b < t_op).mean()), "apcer": float((a >= t_op).mean()),
                                "apcer_by_attack": {k: float((a[kinds == k] >= t_op).mean()) for k in sorted(set(kinds))}},
            "eer": float((bpcer[eer_i] + apcer[eer_i]) / 2), "eer_threshold": float(ts[eer_i]),
        }
        if key == "fused":
            from faceatlas.analysis.liveness import DEFAULT_THRESHOLD as T

            entry["library_default"] = {"threshold": T, "bpcer": float((b < T).mean()), "apcer": float((a >= T).mean()),
                                        "apcer_by_attack": {k: float((a[kinds == k] >= T).mean())
                                                            for k in sorted(set(kinds))}}
        out["models"][key] = entry
        clip = lambda v: norm.ppf(np.clip(v, 5e-4, 1 - 5e-4))  # noqa: E731
        ax.plot(clip(apcer), clip(bpcer), label=f"{key} (EER {entry['eer']:.1%})")
        ax.plot(clip(entry["operating_point"]["apcer"]), clip(entry["operating_point"]["bpcer"]), "o")
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95]
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set_xlabel("APCER (staged LFW print/screen replays)")
    ax.set_ylabel("BPCER (LFW bona fide)")
    ax.set_title("Passive liveness DET (no labelled PAD dataset)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "analyze_det.png", dpi=110)
    write(out, "analyze_liveness")


# -- helpers --------------------------------------------------------------------------------------------------


def write(result: dict[str, Any], name: str) -> None:
    """Print and save a JSON result."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS_DIR / f"{name}.json").write_text(text + "\n")
    print(text)


def faces_of(fa: FaceAtlas, images: Sequence[Any], heads: Sequence[str]) -> Iterator[tuple[int, Any]]:
    """(index, face) of the selected face of each image that has one."""
    request = FaceRequest(faces="one", heads=tuple(heads))
    for i, res in enumerate(fa.iter_many(images, request, chunk=16, errors="keep")):
        if res.faces:
            yield i, res.faces[0]


def loaded(path: Path | str) -> LoadedImage:
    """An image decoded to RGB."""
    return load_image(path)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run one measurement."""
    from analyze_more import ADD_OPTIONS
    from analyze_more import COMMANDS as MORE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["bonafide", "attacks", "det", *MORE])
    ap.add_argument("--models", type=Path, default=default_models_dir())
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="bonafide: only the first N images (0 = all)")
    ap.add_argument("--n", type=int, default=1500, help="attacks: how many to stage")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--bpcer-target", type=float, default=0.05)
    ADD_OPTIONS(ap)
    args = ap.parse_args(argv)
    handlers = {"bonafide": cmd_bonafide, "attacks": cmd_attacks, "det": cmd_det, **MORE}
    handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
