"""faceatlas against OpenCV's own face pipeline (``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF``) on the same model
files, measured so that a machine shared with other work still gives meaningful ratios.

Every measurement interleaves the two paths call by call (A B, B A, A B, ...: the first of each pair alternates), so a
load change lands on both sides of a pair; the figure reported is the **median of the paired ratios**
``faceatlas / OpenCV`` (below 1 = faceatlas faster) with its p25 and p75, for wall time and for CPU time
(``time.process_time`` in process, ``resource.getrusage(RUSAGE_CHILDREN)`` for whole processes). The load average
(``os.getloadavg()``) is recorded before and after each case.

Cases:

* ``250``: one 250×250 LFW image, file → largest face → template (``--threads`` threads on both sides, default 2);
* ``640``: that image pasted, unscaled, in the centre of a mid-grey 640×480 JPEG (quality 95);
* ``1080p``: a 1920×1080 group photo (JPEG quality 95) of 10 LFW images pasted unscaled on a grey canvas, every
  face embedded;
* ``cold``: whole processes alternated: ``import faceatlas; faceatlas.FaceAtlas().embed(IMG)`` against the
  equivalent OpenCV script (import cv2, imread, create both models, detect, alignCrop, feature), default threads;
* ``bulk``: ``--bulk`` LFW images (default 500) split over two worker processes per path, one thread each, both
  paths in turn (order alternating over ``--bulk-repeats``); CPU per image counts only the workers' loops.

OpenCV cannot load the shipped SFace file as is (OpenCV 5 rejects unused weight tensors declared as graph inputs), so
its baseline is a copy with just those inputs removed (weights, quantisation and graph otherwise untouched).

    python benchmarks/speed.py                                 # all cases, a few minutes
    python benchmarks/speed.py --cases 250,640 --pairs 300
    python benchmarks/speed.py --pairs 20 --cold 4 --bulk 40 --bulk-repeats 1     # smoke test
    python benchmarks/speed.py --profile fast --cases 250,640,1080p                 # the fast profile
    python benchmarks/speed.py --cases 250,640 --hog 1         # with one core kept busy by another process
    FACEATLAS_SPIN=1 python benchmarks/speed.py --cases 250,640   # ONNX Runtime threads spinning inside runs

``--profile`` runs faceatlas with that profile (``FaceAtlas(profile=...)``) in every case; OpenCV's side stays
YuNet + SFace, so the ratio says how much faster the profile is than OpenCV's own pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
    write_json,
)

CASES = ("250", "640", "1080p", "cold", "bulk")
OPENCV_TOP_K = 5000
Vector = npt.NDArray[np.float32]

# The two cold-start scripts: argv = image, YuNet file, SFace file (the faceatlas one ignores the model paths and
# resolves its own copies of the same files).
COLD_FA = "import sys, faceatlas; faceatlas.FaceAtlas().embed(sys.argv[1])"
COLD_FA_PROFILE = ("import sys, faceatlas; "
                   "faceatlas.FaceAtlas(profile=sys.argv[2], models_dir=sys.argv[3]).embed(sys.argv[1])")
COLD_CV = """import sys, cv2, numpy as np
img = cv2.imread(sys.argv[1])
det = cv2.FaceDetectorYN.create(sys.argv[2], "", (img.shape[1], img.shape[0]), 0.6, 0.3, 5000)
rec = cv2.FaceRecognizerSF.create(sys.argv[3], "")
_, faces = det.detect(img)
face = faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]
feat = rec.feature(rec.alignCrop(img, face))
"""


# -- the two paths ----------------------------------------------------------------------------------------------


class OpenCvPath:
    """imread → FaceDetectorYN (input size = image size) → alignCrop → feature → L2 normalise."""

    def __init__(self, yunet: Path, sface: Path, score: float, nms: float) -> None:
        import cv2

        self.cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), score, nms, OPENCV_TOP_K)
        self.recognizer = cv2.FaceRecognizerSF.create(str(sface), "")
        self.size = (320, 320)

    def templates(self, path: Path, every_face: bool = False) -> list[Vector]:
        """Unit templates of the largest face (or of every face)."""
        bgr = self.cv2.imread(str(path))
        h, w = bgr.shape[:2]
        if (w, h) != self.size:
            self.detector.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return []
        rows = faces if every_face else [faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]]
        out = []
        for face in rows:
            feat = np.asarray(self.recognizer.feature(self.recognizer.alignCrop(bgr, face)), np.float32).reshape(-1)
            out.append(feat / max(float(np.linalg.norm(feat)), 1e-12))
        return out


def fa_templates(fa: Any, path: Path, every_face: bool = False) -> list[Vector]:
    """Unit templates of the largest face (or of every face) through the public API."""
    faces = fa.embed(path, faces="all" if every_face else "one", select="largest")
    return [np.asarray(f.template.vector, np.float32) for f in faces if f.template is not None]


def opencv_sface(original: Path, dest: Path) -> Path:
    """The SFace file OpenCV can load: the original, or a copy without the unused graph inputs."""
    import cv2
    import onnx

    try:
        cv2.FaceRecognizerSF.create(str(original), "").feature(np.zeros((112, 112, 3), np.uint8))
        return original
    except cv2.error:
        model = onnx.load(str(original))
        used = {n for node in model.graph.node for n in node.input} | {o.name for o in model.graph.output}
        keep = [i for i in model.graph.input if i.name in used]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        onnx.save(model, str(dest))
        return dest


# -- statistics ---------------------------------------------------------------------------------------------------


def paired(fa: list[float], cv: list[float]) -> dict[str, float]:
    """Median and p25/p75 of per-pair ratios, plus the medians of each side."""
    r = np.asarray(fa, np.float64) / np.maximum(np.asarray(cv, np.float64), 1e-12)
    return {"ratio_median": float(np.median(r)), "ratio_p25": float(np.percentile(r, 25)),
            "ratio_p75": float(np.percentile(r, 75)), "fa_median": float(np.median(fa)),
            "cv_median": float(np.median(cv)), "pairs": len(r)}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def interleave(a: Callable[[], Any], b: Callable[[], Any], pairs: int, warmup: int) -> dict[str, Any]:
    """Time ``a`` and ``b`` call by call, alternating which goes first; wall and CPU per call (ms)."""
    for _ in range(warmup):
        a()
        b()
    wall: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    before = load()
    for i in range(pairs):
        for who in (("a", "b") if i % 2 == 0 else ("b", "a")):
            fn = a if who == "a" else b
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[who].append((time.perf_counter() - t0) * 1e3)
            cpu[who].append((time.process_time() - c0) * 1e3)
    return {"wall_ms": paired(wall["a"], wall["b"]), "cpu_ms": paired(cpu["a"], cpu["b"]),
            "cpu_total_ratio": sum(cpu["a"]) / max(sum(cpu["b"]), 1e-12), "load_before": before, "load_after": load()}


def cosines(a: list[Vector], b: list[Vector]) -> list[float]:
    """Best-match cosine of each faceatlas template against the OpenCV ones (none when the models differ)."""
    if not a or not b or a[0].shape != b[0].shape:
        return []
    return [max(float(np.dot(x, y)) for y in b) for x in a]


# -- images -------------------------------------------------------------------------------------------------------


def paste(sources: list[Path], size: tuple[int, int], dest: Path) -> Path:
    """Paste LFW images unscaled on a mid-grey canvas in a grid and save as JPEG quality 95."""
    import cv2

    w, h = size
    canvas = np.full((h, w, 3), 128, np.uint8)
    if len(sources) == 1:
        img = cv2.imread(str(sources[0]))
        y0, x0 = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
        canvas[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
    else:
        cols = 5
        for i, src in enumerate(sources):
            img = cv2.imread(str(src))
            y0 = 150 + (i // cols) * 420 + (i % 2) * 40
            x0 = 60 + (i % cols) * 370
            canvas[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
    cv2.imwrite(str(dest), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dest


# -- cases ----------------------------------------------------------------------------------------------------------


def in_process(fa: Any, cv: OpenCvPath, path: Path, pairs: int, warmup: int, every_face: bool) -> dict[str, Any]:
    """One image end to end, interleaved."""
    fa_vecs, cv_vecs = fa_templates(fa, path, every_face), cv.templates(path, every_face)
    out = interleave(lambda: fa_templates(fa, path, every_face), lambda: cv.templates(path, every_face), pairs, warmup)
    cos = cosines(fa_vecs, cv_vecs)
    out.update(image=str(path), faces={"faceatlas": len(fa_vecs), "opencv": len(cv_vecs)},
               cosine_fa_vs_cv_min=min(cos) if cos else None)
    return out


@contextlib.contextmanager
def cpu_hogs(n: int) -> Iterator[None]:
    """``n`` processes spinning on a core each while the block runs (both paths see the same load)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(0.5)  # let them reach the scheduler's steady state
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run_process(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a process to completion; its wall time and CPU time (user + system, children) in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_case(image: Path, yunet: Path, sface: Path, rounds: int, profile: str | None = None,
              models_dir: Path | None = None) -> dict[str, Any]:
    """Whole processes, alternated: faceatlas's cold start against OpenCV's."""
    fa_cmd = [sys.executable, "-c", COLD_FA, str(image)]
    if profile is not None:
        fa_cmd = [sys.executable, "-c", COLD_FA_PROFILE, str(image), profile, str(models_dir)]
    cv_cmd = [sys.executable, "-c", COLD_CV, str(image), str(yunet), str(sface)]
    # Both run like a user's Python, which keeps compiled bytecode (an installed wheel ships it): with
    # PYTHONDONTWRITEBYTECODE, as some dev shells set, an editable checkout would recompile faceatlas' ~30 modules
    # from source on every start (~40 ms), while numpy and cv2 load their installed bytecode.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run_process(fa_cmd, env)  # the transformed models and the bytecode are cached once, like any first use
    run_process(cv_cmd, env)
    res: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in ("fa", "cv")}
    before = load()
    for i in range(rounds):
        for who in (("fa", "cv") if i % 2 == 0 else ("cv", "fa")):
            wall, cpu = run_process(fa_cmd if who == "fa" else cv_cmd, env)
            res[who]["wall"].append(wall * 1e3)
            res[who]["cpu"].append(cpu * 1e3)
    return {"wall_ms": paired(res["fa"]["wall"], res["cv"]["wall"]), "cpu_ms": paired(res["fa"]["cpu"], res["cv"]["cpu"]),
            "load_before": before, "load_after": load(), "faceatlas_script": fa_cmd[2], "opencv_script": COLD_CV}


def bulk_case(paths: list[Path], yunet: Path, sface: Path, models_dir: Path, repeats: int,
              profile: str | None = None) -> dict[str, Any]:
    """Two single-thread worker processes per path over the same images; CPU per image from the workers' loops."""
    rows: dict[str, list[dict[str, float]]] = {"fa": [], "cv": []}
    with tempfile.TemporaryDirectory(prefix="faceatlas-bulk-") as tmp:
        lists = []
        for k in range(2):
            f = Path(tmp) / f"part{k}.txt"
            f.write_text("\n".join(str(p) for p in paths[k::2]))
            lists.append(f)
        before = load()
        for r in range(repeats):
            for who in (("fa", "cv") if r % 2 == 0 else ("cv", "fa")):
                procs = [subprocess.Popen([sys.executable, __file__, "--worker", who, "--worker-list", str(f),
                                           "--opencv-yunet", str(yunet), "--opencv-sface", str(sface),
                                           "--models-dir", str(models_dir)] + (["--profile", profile] if profile else []),
                                          stdout=subprocess.PIPE, text=True)
                         for f in lists]
                outs = [json.loads(p.communicate()[0]) for p in procs]
                images = sum(o["images"] for o in outs)
                rows[who].append({"cpu_ms_per_image": sum(o["cpu_s"] for o in outs) * 1e3 / images,
                                  "wall_s": max(o["wall_s"] for o in outs), "faces": sum(o["faces"] for o in outs)})
                progress(f"  bulk {who}: {rows[who][-1]['cpu_ms_per_image']:.1f} ms CPU per image")
    fa_cpu = [x["cpu_ms_per_image"] for x in rows["fa"]]
    cv_cpu = [x["cpu_ms_per_image"] for x in rows["cv"]]
    return {"images": len(paths), "processes": 2, "threads_per_process": 1, "runs": rows,
            "cpu_per_image": paired(fa_cpu, cv_cpu), "load_before": before, "load_after": load()}


def worker(args: argparse.Namespace) -> None:
    """Bulk worker: embed the listed images with one thread, print CPU and wall time of the loop as JSON."""
    paths = [Path(p) for p in Path(args.worker_list).read_text().split("\n") if p]
    if args.worker == "fa":
        from faceatlas import FaceAtlas

        fa = FaceAtlas(models_dir=args.models_dir, threads=1, profile=args.profile)
        fa.embed(paths[0])
        c0, t0 = time.process_time(), time.perf_counter()
        faces = sum(len(r) for r in fa.embed_many(paths, faces="one", select="largest"))
    else:
        import cv2

        cv2.setNumThreads(1)
        cv = OpenCvPath(Path(args.opencv_yunet), Path(args.opencv_sface), 0.6, 0.3)
        cv.templates(paths[0])
        c0, t0 = time.process_time(), time.perf_counter()
        faces = sum(len(cv.templates(p)) for p in paths)
    print(json.dumps({"images": len(paths), "faces": faces, "cpu_s": time.process_time() - c0,
                      "wall_s": time.perf_counter() - t0}))


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--threads", type=int, default=2, help="threads on both sides for 250/640/1080p (default 2)")
    ap.add_argument("--pairs", type=int, default=200, help="interleaved pairs for 250 and 640 (default 200)")
    ap.add_argument("--pairs-1080p", type=int, default=30, help="interleaved pairs for 1080p (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per path first (default 5)")
    ap.add_argument("--cold", type=int, default=20, help="alternated process pairs for cold start (default 20)")
    ap.add_argument("--bulk", type=int, default=500, help="LFW images in the bulk case (default 500)")
    ap.add_argument("--bulk-repeats", type=int, default=2, help="bulk runs per path, order alternating (default 2)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="extra model files folder")
    ap.add_argument("--out", type=Path, default=default_out("speed"), help="JSON results path")
    ap.add_argument("--profile", help="faceatlas profile to measure (e.g. fast; default: the default models)")
    ap.add_argument("--hog", type=int, default=0,
                    help="busy-loop processes running during the 250/640/1080p cases (a loaded machine; default 0)")
    ap.add_argument("--worker", choices=("fa", "cv"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-list", help=argparse.SUPPRESS)
    ap.add_argument("--opencv-yunet", help=argparse.SUPPRESS)
    ap.add_argument("--opencv-sface", help=argparse.SUPPRESS)
    args = ap.parse_args()
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; choose from {CASES}")
    return args


def main() -> None:
    """Measure, print, save."""
    args = parse_args()
    if args.worker:
        worker(args)
        return
    import cv2

    from faceatlas import FaceAtlas

    cases = args.cases.split(",")
    t_start = time.perf_counter()
    lfw = args.data_dir / "lfw"
    rels = distinct_images(read_lfw_pairs(lfw / "pairs.txt")[2])
    image = lfw / "images" / rels[0]
    cv2.setNumThreads(args.threads)
    fa = FaceAtlas(models_dir=args.models_dir, threads=args.threads, select="largest", profile=args.profile)
    fa.warmup()
    results: dict[str, Any] = {"benchmark": "speed", "environment": environment(),
                               "ratio": "faceatlas / OpenCV, median of paired ratios [p25, p75]",
                               "profile": args.profile, "faceatlas_models": [fa.detector_name, fa.model_id]}
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="faceatlas-speed-") as tmpname:
        tmp = Path(tmpname)
        yunet = fa.store.resolve("yunet", "detection").original
        sface = opencv_sface(fa.store.resolve("sface", "recognition").original, tmp / "sface_opencv.onnx")
        det = fa.detector
        cv = OpenCvPath(yunet, sface, det.score_threshold, det.nms_threshold)
        results["baseline"] = {"yunet": str(yunet), "sface": str(sface), "cv2_threads": cv2.getNumThreads(),
                               "cv2": cv2.__version__}
        photos = {"250": image, "640": paste([image], (640, 480), tmp / "photo_640x480.jpg"),
                  "1080p": paste([lfw / "images" / r for r in rels[1:11]], (1920, 1080), tmp / "group_1080p.jpg")}
        results["hog"] = args.hog
        for case in ("250", "640", "1080p"):
            if case not in cases:
                continue
            n = args.pairs_1080p if case == "1080p" else args.pairs
            progress(f"case {case}: {n} interleaved pairs" + (f", {args.hog} busy process(es)" if args.hog else ""))
            with cpu_hogs(args.hog):
                r = in_process(fa, cv, photos[case], n, args.warmup, every_face=case == "1080p")
            results[case] = r
            rows.append([case, r["wall_ms"]["fa_median"], r["wall_ms"]["cv_median"], r["wall_ms"]["ratio_median"],
                         f"[{r['wall_ms']['ratio_p25']:.3f}, {r['wall_ms']['ratio_p75']:.3f}]",
                         r["cpu_ms"]["ratio_median"], f"{r['faces']['faceatlas']}/{r['faces']['opencv']}",
                         f"{r['load_before'][0]}→{r['load_after'][0]}"])
        if "cold" in cases:
            progress(f"case cold: {args.cold} alternated process pairs")
            r = cold_case(image, yunet, sface, args.cold, args.profile, args.models_dir)
            results["cold"] = r
            rows.append(["cold start", r["wall_ms"]["fa_median"], r["wall_ms"]["cv_median"], r["wall_ms"]["ratio_median"],
                         f"[{r['wall_ms']['ratio_p25']:.3f}, {r['wall_ms']['ratio_p75']:.3f}]",
                         r["cpu_ms"]["ratio_median"], "1/1", f"{r['load_before'][0]}→{r['load_after'][0]}"])
        if "bulk" in cases:
            progress(f"case bulk: {args.bulk} images, 2 processes per path, {args.bulk_repeats} run(s) each")
            r = bulk_case([lfw / "images" / x for x in rels[: args.bulk]], yunet, sface, args.models_dir,
                          args.bulk_repeats, args.profile)
            results["bulk"] = r
            c = r["cpu_per_image"]
            rows.append(["bulk CPU/image", c["fa_median"], c["cv_median"], c["ratio_median"],
                         f"[{c['ratio_p25']:.3f}, {c['ratio_p75']:.3f}]", c["ratio_median"],
                         f"{r['runs']['fa'][0]['faces']}/{r['runs']['cv'][0]['faces']}",
                         f"{r['load_before'][0]}→{r['load_after'][0]}"])
    results["wall_s"] = time.perf_counter() - t_start
    print_table(["case", "fa ms", "cv ms", "ratio", "[p25, p75]", "CPU ratio", "faces fa/cv", "load 1 min"], rows,
                title="faceatlas vs OpenCV (same model files; ratio < 1 = faceatlas faster; ms are medians)")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
