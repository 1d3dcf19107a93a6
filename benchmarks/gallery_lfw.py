"""LFW identification protocol through the gallery API, end to end, next to the evaluation suite's numbers.

Gallery: one image of each of the 1,680 LFW people with two or more images, enrolled with ``Recognizer.enroll``
into a fresh SQLite gallery (decode, detect, align, embed, store, index). Probes: their other 7,484 images (known)
and all 4,069 images of one-image people (unknown), identified with ``Recognizer.identify_many`` (top-20 people per
face). When an image has several faces, the most central one is scored, as the evaluation suite does.

From the API's answers it computes rank-1, rank-5, DIR@FPIR 1 % and 10 % with the same metric functions, and the
evaluation suite computes them from its own template pipeline (``embed_images`` + ``evaluate_identification``) in the
same run. They must agree: the script prints both and the share of probes whose top-1 person is the same.

    python benchmarks/gallery_lfw.py                    # all 13,233 images (about 10 min on 2 cores)
    python benchmarks/gallery_lfw.py --limit-people 300 # a quick look (people sorted by name)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from faceatlas import config  # noqa: E402
from faceatlas.detect import select_face  # noqa: E402
from faceatlas.evaluate.metrics import cmc, dir_at_fpir, rank_k  # noqa: E402
from faceatlas.evaluate.protocols import IdentificationSplit, lfw_identification_split  # noqa: E402
from faceatlas.evaluate.runner import embed_images, evaluate_identification  # noqa: E402
from faceatlas.facade import FaceAtlas  # noqa: E402
from faceatlas.gallery import Gallery  # noqa: E402
from faceatlas.models import ModelStore  # noqa: E402
from faceatlas.recognition import QualityGates, Recognizer  # noqa: E402

TOP_K = 20


def limited(split: IdentificationSplit, n: int) -> IdentificationSplit:
    """The split restricted to the first ``n`` people of each list (by name; 0 keeps everything)."""
    if n <= 0:
        return split
    known = sorted({p for p, _ in split.gallery})[:n]
    unknown = sorted({p for p, _ in split.unknown_probes})[:n]
    return IdentificationSplit(
        [g for g in split.gallery if g[0] in known],
        [g for g in split.known_probes if g[0] in known],
        [g for g in split.unknown_probes if g[0] in unknown],
    )


def api_similarity(rec: Recognizer, images: Path, split: IdentificationSplit, names: list[str]) -> tuple[np.ndarray, int]:
    """Similarity matrix (gallery person × probe) from the API's top-k answers (-2 outside the top-k)."""
    probes = list(split.known_probes) + list(split.unknown_probes)
    col = {n: i for i, n in enumerate(names)}
    sim = np.full((len(names), len(probes)), -2.0, np.float32)  # below any cosine: outside the top-k
    faceless = 0
    t0 = time.time()
    step = 256
    for s in range(0, len(probes), step):
        chunk = probes[s : s + step]
        answers = rec.identify_many("lfw", [images / p for _, p in chunk], k=TOP_K)
        for j, faces in enumerate(answers):
            if not faces:
                faceless += 1
                sim[:, s + j] = 0.0  # as the suite scores a zero template
                continue
            img_w, img_h = _size(images / chunk[j][1])
            pick = faces[select_face([f.face.detection for f in faces], img_w, img_h, "central")]
            for m in pick.matches:
                sim[col[m.external_id], s + j] = m.score
        print(f"  identify: {s + len(chunk)}/{len(probes)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return sim, faceless


def _size(path: Path) -> tuple[int, int]:
    """Image width and height."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def metrics(sim: np.ndarray, g_labels: list[str], p_labels: list[str]) -> dict[str, Any]:
    """rank-1/5 and DIR@FPIR from a similarity matrix."""
    curve = cmc(sim, g_labels, p_labels, max_rank=TOP_K)
    out: dict[str, Any] = {"rank1": rank_k(curve, 1), "rank5": rank_k(curve, 5)}
    for fpir in (0.01, 0.1):
        d = dir_at_fpir(sim, g_labels, p_labels, fpir)
        out[f"dir_at_fpir_{fpir:g}"] = d.dir if d.resolvable else None
    return out


def main() -> None:
    """Run both pipelines and compare."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=config.data_dir() / "lfw")
    ap.add_argument("--embedder", default="sface")
    ap.add_argument("--limit-people", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gallery_lfw.json")
    args = ap.parse_args()
    images = args.data / "images"
    split = limited(lfw_identification_split(images), args.limit_people)
    store = ModelStore(models_dir=config.models_dir() or REPO.parent / "shared" / "models")
    atlas = FaceAtlas(embedder=args.embedder, store=store)
    names = [n for n, _ in split.gallery]
    probes = list(split.known_probes) + list(split.unknown_probes)
    p_labels = [n for n, _ in probes]

    with tempfile.TemporaryDirectory() as tmp:
        gallery = Gallery.open(str(Path(tmp) / "lfw.db"))
        rec = Recognizer(atlas, gallery)
        rec.ensure_collection("lfw")
        t0 = time.perf_counter()
        not_enrolled = 0
        for i, (person, rel) in enumerate(split.gallery):
            # The suite keeps every detected face: no quality gates; the central face of a multi-face photo.
            res = rec.enroll("lfw", person, [images / rel], multi_face="central", gates=QualityGates(0.0, 0.0, 0.0))
            not_enrolled += len(res.rejected)
            if i % 200 == 199:
                print(f"  enrol: {i + 1}/{len(split.gallery)}", file=sys.stderr, flush=True)
        enrol_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim, faceless = api_similarity(rec, images, split, names)
        ident_s = time.perf_counter() - t0
        rec.close()
    api = metrics(sim, names, p_labels)

    cache = config.cache_dir() / "eval"
    keys = sorted({p for _, p in split.gallery} | {p for _, p in probes})
    ts = embed_images(atlas, [images / k for k in keys], keys=keys, select="central", cache_dir=cache)
    suite = evaluate_identification(ts, split, max_rank=TOP_K).summary
    suite_m = {"rank1": suite["rank1"], "rank5": suite["rank5"],
               **{f"dir_at_fpir_{f}": suite["dir_at_fpir"][f]["dir"] for f in ("0.01", "0.1")}}
    idx = ts.index()
    g = ts.vectors[[idx[p] for _, p in split.gallery]]
    suite_top = np.argmax(g @ ts.vectors[[idx[p] for _, p in probes]].T, axis=0)
    same_top1 = float(np.mean(suite_top == np.argmax(sim, axis=0)))

    result = {"embedder": args.embedder, "gallery_people": len(names), "known_probes": len(split.known_probes),
              "unknown_probes": len(split.unknown_probes), "gallery_not_enrolled": not_enrolled,
              "probes_without_face": faceless, "api": api, "suite": suite_m, "same_top1_share": same_top1,
              "enrol_seconds": round(enrol_s, 1), "identify_seconds": round(ident_s, 1),
              "identify_images_per_s": round(len(probes) / ident_s, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("| metric | gallery API | evaluation suite |")
    print("|---|---|---|")
    for key in ("rank1", "rank5", "dir_at_fpir_0.01", "dir_at_fpir_0.1"):
        a, b = api[key], suite_m[key]
        print(f"| {key} | {'n/a' if a is None else f'{100 * a:.2f} %'} | {'n/a' if b is None else f'{100 * b:.2f} %'} |")
    print(f"same top-1 person: {100 * same_top1:.2f} % of {len(probes)} probes; gallery not enrolled: {not_enrolled}; "
          f"probes without a face: {faceless}; enrol {enrol_s:.0f} s, identify {ident_s:.0f} s "
          f"({result['identify_images_per_s']} images/s)")


if __name__ == "__main__":
    main()
