"""Detect + align + embed latency of faceatlas on this machine, as a ratio against OpenCV's own face pipeline
(``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF.alignCrop`` + ``.feature``) measured in the same run, with the same
number of threads (``cv2.setNumThreads`` and ``FaceAtlas(threads=...)``, default 2).

Cases:

(a) one 250×250 LFW image, single-image latency (decode from file → one face → template);
(b) a 640×480 photo made by pasting that LFW image, unscaled, into the centre of a mid-grey 640×480 canvas (saved as
    a JPEG, quality 95, in a temporary folder so both paths decode the same file);
(c) batched throughput over 64 distinct LFW images: ``FaceAtlas.embed_many(paths, faces='one')`` against the OpenCV
    per-image loop over the same files.

For (a) and (b): median and p90 over ``--runs`` timed runs after ``--warmup`` untimed ones, end to end and per stage
(decode, detect, align, embed) for both paths. Runs are ordered A-B-B-A in halves so slow drift in machine load hits
both paths equally. Every ratio is ``faceatlas_ms / opencv_ms`` (below 1 = faceatlas is faster). Both paths use the
largest face. The cosine between the two paths' templates is reported as a sanity check (they should agree closely).

Baseline models: by default OpenCV runs the very file faceatlas's detector was resolved from (``--detector yunet``:
the int8 YuNet 2023mar file; ``yunet-fp32``: the fp32 one). For SFace OpenCV first tries the original int8 file; if it
cannot load it (OpenCV 5.0 rejects it: 29 unused weight tensors are declared as graph inputs) the baseline uses a copy
with just those unused inputs removed (weights, int8 quantisation and graph otherwise untouched), written to a
temporary folder. The JSON records exactly which files (and sha256) the baseline used and OpenCV's error.

Run from anywhere (about a minute with the defaults; keep the machine otherwise idle for numbers worth quoting):

    python benchmarks/speed.py
    python benchmarks/speed.py --threads 1 --runs 200
    python benchmarks/speed.py --runs 5 --warmup 1 --batch 8 --batch-repeats 1     # smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
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

from faceatlas.align import align_face
from faceatlas.atlas import FaceAtlas
from faceatlas.detect import select_face

STAGES = ("decode", "detect", "align", "embed", "total")
OPENCV_TOP_K = 5000

Timings = dict[str, float]


# -- the OpenCV reference path ----------------------------------------------------------------------------------


class OpenCvPipeline:
    """OpenCV's reference face pipeline: imread → FaceDetectorYN → largest face → alignCrop → feature."""

    def __init__(self, yunet: Path, sface: Path, score_threshold: float, nms_threshold: float) -> None:
        import cv2

        self.cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), score_threshold, nms_threshold,
                                                  OPENCV_TOP_K)
        self.recognizer = cv2.FaceRecognizerSF.create(str(sface), "")
        self.size = (320, 320)

    def _detect(self, bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        """The largest face's 15-value row, or None."""
        h, w = bgr.shape[:2]
        if (w, h) != self.size:
            self.detector.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        return faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]

    def _feature(self, bgr: npt.NDArray[np.uint8], face: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Unit-length SFace feature for one detected face."""
        crop = self.recognizer.alignCrop(bgr, face)
        feat = np.asarray(self.recognizer.feature(crop), np.float32).reshape(-1)
        return feat / max(float(np.linalg.norm(feat)), 1e-12)

    def template(self, path: Path) -> npt.NDArray[np.float32] | None:
        """End to end: file → unit template of the largest face (None when no face)."""
        bgr = self.cv2.imread(str(path))
        face = self._detect(bgr)
        return None if face is None else self._feature(bgr, face)

    def stages(self, path: Path) -> Timings:
        """The same path timed stage by stage (ms)."""
        t0 = time.perf_counter()
        bgr = self.cv2.imread(str(path))
        t1 = time.perf_counter()
        face = self._detect(bgr)
        t2 = time.perf_counter()
        if face is None:
            raise RuntimeError(f"OpenCV found no face in {path}")
        crop = self.recognizer.alignCrop(bgr, face)
        t3 = time.perf_counter()
        feat = np.asarray(self.recognizer.feature(crop), np.float32).reshape(-1)
        feat = feat / max(float(np.linalg.norm(feat)), 1e-12)
        t4 = time.perf_counter()
        return _stage_dict(t0, t1, t2, t3, t4)


def loads_in_opencv(sface: Path) -> str | None:
    """None if OpenCV can create FaceRecognizerSF from this file and run it, else OpenCV's error message."""
    import cv2

    try:
        rec = cv2.FaceRecognizerSF.create(str(sface), "")
        rec.feature(np.zeros((112, 112, 3), np.uint8))
    except cv2.error as exc:
        return " ".join(str(exc).split())
    return None


def strip_unused_inputs(src: Path, dest: Path) -> int:
    """Copy an ONNX model, dropping graph inputs that no node reads; returns how many were dropped."""
    import onnx

    model = onnx.load(str(src))
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.input if i.name in used]
    dropped = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    onnx.save(model, str(dest))
    return dropped


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def choose_baseline(args: argparse.Namespace, fa: FaceAtlas, tmp: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The YuNet and SFace files OpenCV will run, and a description of the choice for the report."""
    yunet = Path(args.opencv_yunet) if args.opencv_yunet else fa.store.resolve(args.detector, "detection").original
    info: dict[str, Any] = {"yunet_file": str(yunet), "yunet_sha256": sha256(yunet)}
    if args.opencv_sface:
        sface = Path(args.opencv_sface)
        err = loads_in_opencv(sface)
        if err:
            raise SystemExit(f"OpenCV cannot run --opencv-sface {sface}: {err}")
        info.update(sface_file=str(sface), sface_variant="as given (--opencv-sface)")
    else:
        original = fa.store.resolve("sface", "recognition").original
        err = loads_in_opencv(original)
        info["sface_original_file"] = str(original)
        info["sface_original_opencv_error"] = err
        if err is None:
            sface = original
            info.update(sface_file=str(original), sface_variant="original int8 file, unmodified")
        else:
            sface = tmp / "sface_int8_unused_inputs_removed.onnx"
            dropped = strip_unused_inputs(original, sface)
            err2 = loads_in_opencv(sface)
            if err2:
                raise SystemExit(f"OpenCV cannot run SFace, even with unused inputs removed: {err2}")
            info.update(sface_file=str(sface), sface_variant=f"original int8 file with {dropped} unused graph inputs "
                        "removed (nothing else changed); OpenCV cannot load the original")
    info["sface_sha256"] = sha256(sface)
    return yunet, sface, info


# -- the faceatlas path ------------------------------------------------------------------------------------------


def fa_stages(fa: FaceAtlas, path: Path) -> Timings:
    """The faceatlas path timed stage by stage (ms), using the library's own stage functions."""
    det, emb = fa.detector, fa.embedder
    # the embedder's own alignment where the library has one (as FaceAtlas uses it), else the ArcFace 112 crop
    align = getattr(emb, "align", None) or (lambda rgb, lm: align_face(rgb, lm, emb.size[0]))
    t0 = time.perf_counter()
    loaded = fa.load(path)
    t1 = time.perf_counter()
    dets = det.detect(loaded)
    if not dets:
        raise RuntimeError(f"faceatlas found no face in {path}")
    i = select_face(dets, loaded.width, loaded.height, "largest")
    t2 = time.perf_counter()
    crop = align(loaded.rgb, dets[i].landmarks)
    t3 = time.perf_counter()
    emb.embed_crops(crop[None])
    t4 = time.perf_counter()
    return _stage_dict(t0, t1, t2, t3, t4)


def fa_template(fa: FaceAtlas, path: Path) -> npt.NDArray[np.float32] | None:
    """End to end through the public API: file → template of the largest face."""
    faces = fa.embed(path, faces="one", select="largest")
    if not faces or faces[0].template is None:
        return None
    return np.asarray(faces[0].template.vector, np.float32)


# -- measurement -------------------------------------------------------------------------------------------------


def _stage_dict(t0: float, t1: float, t2: float, t3: float, t4: float) -> Timings:
    """Stage durations in ms from five timestamps."""
    return {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3, "align": (t3 - t2) * 1e3,
            "embed": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}


def timed(fn: Callable[[], Any]) -> Timings:
    """Wall time of one call as ``{'total': ms}``."""
    t0 = time.perf_counter()
    fn()
    return {"total": (time.perf_counter() - t0) * 1e3}


def abba(a: Callable[[], Timings], b: Callable[[], Timings], runs: int, warmup: int) -> tuple[list[Timings],
                                                                                                 list[Timings]]:
    """Warm both up, then time them in the order A×⌊n/2⌋, B×⌊n/2⌋, B×⌈n/2⌉, A×⌈n/2⌉."""
    for _ in range(warmup):
        a()
        b()
    h1 = runs // 2
    h2 = runs - h1
    ra = [a() for _ in range(h1)]
    rb = [b() for _ in range(h1)]
    rb += [b() for _ in range(h2)]
    ra += [a() for _ in range(h2)]
    return ra, rb


def stats(samples: list[Timings]) -> dict[str, dict[str, float]]:
    """Per-stage summary statistics."""
    keys = [k for k in STAGES if samples and k in samples[0]]
    return {k: summarize_ms([s[k] for s in samples]) for k in keys}


def cosine(a: npt.NDArray[np.float32] | None, b: npt.NDArray[np.float32] | None) -> float:
    """Cosine of two unit vectors (NaN when either is missing or the dimensions differ)."""
    if a is None or b is None or a.shape != b.shape:
        return float("nan")
    return float(np.dot(a, b))


# -- cases -------------------------------------------------------------------------------------------------------


def make_640x480(src: Path, dest: Path) -> dict[str, Any]:
    """Paste the image, unscaled, into the centre of a mid-grey 640×480 canvas and save it as JPEG (quality 95)."""
    import cv2

    img = cv2.imread(str(src))
    if img is None:
        raise SystemExit(f"cannot read {src}")
    h, w = img.shape[:2]
    if w > 640 or h > 480:
        raise SystemExit(f"{src} is {w}x{h}; it must fit in 640x480")
    canvas = np.full((480, 640, 3), 128, np.uint8)
    x0, y0 = (640 - w) // 2, (480 - h) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = img
    cv2.imwrite(str(dest), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return {"made_from": str(src), "how": f"pasted unscaled at ({x0}, {y0}) on a mid-grey (128) 640x480 canvas, "
            "JPEG quality 95", "file": str(dest)}


def single_case(fa: FaceAtlas, cv: OpenCvPipeline, path: Path, runs: int, warmup: int) -> dict[str, Any]:
    """End-to-end and per-stage latency of both paths on one image."""
    fa_vec, cv_vec = fa_template(fa, path), cv.template(path)
    if fa_vec is None or cv_vec is None:
        raise SystemExit(f"no face in {path} (faceatlas: {fa_vec is not None}, OpenCV: {cv_vec is not None})")
    fa_e2e, cv_e2e = abba(lambda: timed(lambda: fa_template(fa, path)), lambda: timed(lambda: cv.template(path)),
                          runs, warmup)
    fa_st, cv_st = abba(lambda: fa_stages(fa, path), lambda: cv_stages_for(cv, path), runs, warmup)
    out: dict[str, Any] = {
        "image": str(path),
        "faceatlas_end_to_end_ms": stats(fa_e2e)["total"],
        "opencv_end_to_end_ms": stats(cv_e2e)["total"],
        "faceatlas_stages_ms": stats(fa_st),
        "opencv_stages_ms": stats(cv_st),
        "template_cosine_faceatlas_vs_opencv": cosine(fa_vec, cv_vec),
    }
    out["ratio_end_to_end"] = {q: out["faceatlas_end_to_end_ms"][q] / out["opencv_end_to_end_ms"][q]
                               for q in ("median", "p90")}
    out["ratio_stages"] = {k: {q: out["faceatlas_stages_ms"][k][q] / out["opencv_stages_ms"][k][q]
                               for q in ("median", "p90")} for k in STAGES}
    return out


def cv_stages_for(cv: OpenCvPipeline, path: Path) -> Timings:
    """Stage timings of the OpenCV path (a named function keeps the lambdas above short)."""
    return cv.stages(path)


def batch_case(fa: FaceAtlas, cv: OpenCvPipeline, paths: list[Path], repeats: int) -> dict[str, Any]:
    """Throughput over many images: embed_many against the OpenCV loop, alternating which goes first."""
    fa_rows = fa.embed_many(paths, faces="one", select="largest")  # warm-up and reference output
    cv_vecs = [cv.template(p) for p in paths]
    fa_ms: list[float] = []
    cv_ms: list[float] = []
    for r in range(repeats):
        order = ("fa", "cv") if r % 2 == 0 else ("cv", "fa")
        for who in order:
            t0 = time.perf_counter()
            if who == "fa":
                fa.embed_many(paths, faces="one", select="largest")
                fa_ms.append((time.perf_counter() - t0) * 1e3)
            else:
                for p in paths:
                    cv.template(p)
                cv_ms.append((time.perf_counter() - t0) * 1e3)
        progress(f"  batch repeat {r + 1}/{repeats}: faceatlas {fa_ms[-1]:.0f} ms, OpenCV {cv_ms[-1]:.0f} ms")
    fa_vecs = [np.asarray(row[0].template.vector, np.float32) if row and row[0].template is not None else None
               for row in fa_rows]
    cos = np.array([cosine(a, b) for a, b in zip(fa_vecs, cv_vecs, strict=True)])
    n = len(paths)
    fa_total, cv_total = float(np.median(fa_ms)), float(np.median(cv_ms))
    return {
        "images": n,
        "faceatlas_total_ms": summarize_ms(fa_ms),
        "opencv_total_ms": summarize_ms(cv_ms),
        "faceatlas_ms_per_image": fa_total / n,
        "opencv_ms_per_image": cv_total / n,
        "faceatlas_images_per_s": n / fa_total * 1e3,
        "opencv_images_per_s": n / cv_total * 1e3,
        "ratio": fa_total / cv_total,
        "faces_found": {"faceatlas": sum(v is not None for v in fa_vecs), "opencv": sum(v is not None for v in cv_vecs)},
        "template_cosine_faceatlas_vs_opencv": {
            "median": float(np.nanmedian(cos)) if np.isfinite(cos).any() else None,
            "min": float(np.nanmin(cos)) if np.isfinite(cos).any() else None,
        },
    }


# -- main --------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads for BOTH paths (default 2)")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per single-image measurement (default 100)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs per path (default 10)")
    ap.add_argument("--batch", type=int, default=64, help="images in the throughput case (default 64)")
    ap.add_argument("--batch-repeats", type=int, default=3, help="timed repeats of the throughput case (default 3)")
    ap.add_argument("--detector", choices=("yunet", "yunet-fp32"), default="yunet",
                    help="faceatlas detector (default yunet = int8 2023mar); OpenCV runs the same file")
    ap.add_argument("--image", default=None,
                    help="LFW image for cases (a)/(b), relative to lfw/images or absolute "
                         "(default: the first image of pairs.txt)")
    ap.add_argument("--opencv-yunet", default=None, help="override the YuNet file OpenCV runs")
    ap.add_argument("--opencv-sface", default=None, help="override the SFace file OpenCV runs")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="extra model files folder")
    ap.add_argument("--out", type=Path, default=default_out("speed"), help="JSON results path")
    args = ap.parse_args()
    for name in ("threads", "runs", "batch", "batch_repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    return args


def main() -> None:
    """Measure, print, save."""
    import cv2

    args = parse_args()
    t_start = time.perf_counter()
    lfw = args.data_dir / "lfw"
    _, _, pairs = read_lfw_pairs(lfw / "pairs.txt")
    rels = distinct_images(pairs)
    image = Path(args.image) if args.image else Path(rels[0])
    if not image.is_absolute():
        image = lfw / "images" / image
    batch_paths = [lfw / "images" / r for r in rels[: args.batch]]

    cv2.setNumThreads(args.threads)
    fa = FaceAtlas(detector=args.detector, embedder="sface", models_dir=args.models_dir, threads=args.threads,
                   select="largest")
    fa.warmup()
    det = fa.detector
    results: dict[str, Any] = {"benchmark": "speed"}
    with tempfile.TemporaryDirectory(prefix="faceatlas-speed-") as tmpname:
        tmp = Path(tmpname)
        yunet, sface, baseline = choose_baseline(args, fa, tmp)
        cv = OpenCvPipeline(yunet, sface, det.score_threshold, det.nms_threshold)
        baseline.update(
            score_threshold=det.score_threshold, nms_threshold=det.nms_threshold, top_k=OPENCV_TOP_K,
            cv2_threads=cv2.getNumThreads(), pipeline="cv2.imread -> FaceDetectorYN.detect (input size = image "
            "size) -> largest face -> FaceRecognizerSF.alignCrop -> feature -> L2 normalise",
        )
        photo = tmp / "photo_640x480.jpg"
        photo_info = make_640x480(image, photo)

        progress(f"case (a): 250x250 LFW image {image.name}, {args.runs} runs per path")
        case_a = single_case(fa, cv, image, args.runs, args.warmup)
        progress(f"case (b): 640x480 photo, {args.runs} runs per path")
        case_b = single_case(fa, cv, photo, args.runs, args.warmup)
        case_b.update(photo_info)
        case_b["image"] = "640x480 photo (temporary file; see 'how')"
        progress(f"case (c): {len(batch_paths)} LFW images, {args.batch_repeats} repeats")
        case_c = batch_case(fa, cv, batch_paths, args.batch_repeats)

    results.update(
        config={
            "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "batch": len(batch_paths),
            "batch_repeats": args.batch_repeats, "detector": args.detector, "embedder": "sface",
            "faceatlas_detector_input": "dynamic" if det.dynamic else f"{det.canvas}x{det.canvas} letterbox",
            "faceatlas_multiscale": det.multiscale,
            "ratio": "faceatlas_ms / opencv_ms (below 1 = faceatlas faster)",
            "order": "A-B-B-A halves per measurement; batch repeats alternate which path goes first",
        },
        baseline=baseline,
        environment=environment(),
        case_a_lfw_250=case_a,
        case_b_photo_640x480=case_b,
        case_c_batch=case_c,
        wall_s=time.perf_counter() - t_start,
    )

    rows: list[list[Any]] = []
    for label, case in (("(a) 250x250", case_a), ("(b) 640x480", case_b)):
        fe, ce = case["faceatlas_end_to_end_ms"], case["opencv_end_to_end_ms"]
        rows.append([label, "end to end", fe["median"], fe["p90"], ce["median"], ce["p90"],
                     case["ratio_end_to_end"]["median"], case["ratio_end_to_end"]["p90"]])
        for st in STAGES:
            fs, cs = case["faceatlas_stages_ms"][st], case["opencv_stages_ms"][st]
            rows.append(["", f"stage: {st}" if st != "total" else "stages summed", fs["median"], fs["p90"],
                         cs["median"], cs["p90"], case["ratio_stages"][st]["median"], case["ratio_stages"][st]["p90"]])
    print_table(["case", "measure", "fa med ms", "fa p90 ms", "cv med ms", "cv p90 ms", "ratio med", "ratio p90"],
                rows, title=f"Single-image latency, {args.threads} thread(s), {args.runs} runs "
                f"(ratio = faceatlas / OpenCV)")
    print_table(
        ["case", "images", "fa ms/img", "cv ms/img", "fa img/s", "cv img/s", "ratio", "faces fa/cv"],
        [["(c) embed_many vs loop", case_c["images"], case_c["faceatlas_ms_per_image"], case_c["opencv_ms_per_image"],
          case_c["faceatlas_images_per_s"], case_c["opencv_images_per_s"], case_c["ratio"],
          f"{case_c['faces_found']['faceatlas']}/{case_c['faces_found']['opencv']}"]],
        title=f"Batched throughput (median of {args.batch_repeats} repeats)",
    )
    print_table(
        ["check", "value"],
        [
            ["template cosine fa vs cv, (a)", _f4(case_a["template_cosine_faceatlas_vs_opencv"])],
            ["template cosine fa vs cv, (b)", _f4(case_b["template_cosine_faceatlas_vs_opencv"])],
            ["template cosine fa vs cv, (c) median", _f4(case_c["template_cosine_faceatlas_vs_opencv"]["median"])],
            ["template cosine fa vs cv, (c) min", _f4(case_c["template_cosine_faceatlas_vs_opencv"]["min"])],
            ["faceatlas detector input", results["config"]["faceatlas_detector_input"]],
            ["OpenCV YuNet file", Path(baseline["yunet_file"]).name],
            ["OpenCV SFace file", baseline["sface_variant"]],
            ["wall time s", f"{results['wall_s']:.1f}"],
        ],
        title="Baseline and sanity checks",
    )
    if baseline.get("sface_original_opencv_error"):
        print(f"\nOpenCV's error on the original SFace file: {baseline['sface_original_opencv_error']}")
    write_json(args.out, results)


def _f4(x: float | None) -> str:
    """Four decimals, or '-' for a missing value."""
    return "-" if x is None or x != x else f"{x:.4f}"


if __name__ == "__main__":
    main()
