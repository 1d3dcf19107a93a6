"""Static int8 quantisation of SFace: what each variant does to templates, to LFW accuracy and to CPU time.

The issue behind ``profile="fast"`` asked for a per-channel static int8 SFace, calibrated on aligned face crops that
are not LFW View 2 test material, QOperator against QDQ, with the PRelu rewrite applied first; a naive attempt had been
1.74x slower than float32 with cosine 0.94. This script rebuilds every variant from faceatlas's own derived float32
SFace (shipped file → stripped inputs, folded weights, PRelu rewrite) with ``onnxruntime.quantization`` and measures:

* ``cosine``: template cosine to float32 on ``--check`` aligned crops of LFW people who appear in ``pairs.txt``;
* ``CPU ms``: ``time.process_time`` per crop, one crop per call, calls interleaved across all variants (so load changes
  hit all of them alike), ``--threads`` threads;
* ``LFW``: 10-fold View 2 accuracy (``faceatlas.evaluate.metrics.kfold_accuracy``) on the central face of every pair
  image, aligned once by faceatlas (``--lfw``; a few minutes per variant).

Calibration crops: the first image of ``--calib`` people drawn (seed 0) from the 1,468 LFW people who appear nowhere in
``pairs.txt``. Variants (``--variants``, comma-separated):

* ``minmax``: QDQ, per-channel int8 weights, uint8 activations with min/max ranges (the straightforward recipe);
* ``minmax-rr``: the same with ``reduce_range`` (7-bit weights);
* ``minmax-u8u8``: uint8 weights and activations;
* ``pct-conv-rr``: only Conv/Gemm quantised, ranges at the 99.99th percentile, reduce_range;
* ``pct-rr``: every op quantised, 99.99th percentile ranges, reduce_range;
* ``qop-pct-rr``: as ``pct-rr`` in QOperator format (QLinearConv, QLinearMul, ...);
* ``prelu-pct-rr``: as ``pct-rr`` but quantised from the graph *without* the PRelu rewrite (PRelu has no int8
  kernel, so it runs in float32 between DequantizeLinear and QuantizeLinear).

    python benchmarks/int8_sface.py                       # cosine + CPU time, all variants (~5 min)
    python benchmarks/int8_sface.py --lfw --variants minmax-rr,pct-rr
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_models_dir, default_out, print_table, progress, read_lfw_pairs, write_json

VARIANTS = ("minmax", "minmax-rr", "minmax-u8u8", "pct-conv-rr", "pct-rr", "qop-pct-rr", "prelu-pct-rr")


def quant_options(name: str) -> dict[str, Any]:
    """``quantize_static`` keyword arguments for a variant."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    base: dict[str, Any] = {"quant_format": QuantFormat.QDQ, "per_channel": True,
                            "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8}
    pct = {"calibrate_method": CalibrationMethod.Percentile, "extra_options": {"CalibPercentile": 99.99}}
    return {
        "minmax": base,
        "minmax-rr": {**base, "reduce_range": True},
        "minmax-u8u8": {**base, "weight_type": QuantType.QUInt8},
        "pct-conv-rr": {**base, **pct, "reduce_range": True, "op_types_to_quantize": ["Conv", "Gemm"]},
        "pct-rr": {**base, **pct, "reduce_range": True},
        "qop-pct-rr": {**base, **pct, "reduce_range": True, "quant_format": QuantFormat.QOperator},
        "prelu-pct-rr": {**base, **pct, "reduce_range": True},
    }[name]


def without_prelu_rewrite(spec_file: Path, dest: Path) -> Path:
    """The derived SFace graph with its PRelus left as they are (the variant that shows what the rewrite costs)."""
    from faceatlas.models.transforms import apply_transforms

    dest.write_bytes(apply_transforms(spec_file.read_bytes(), ("strip_initializer_inputs", "fold_constants",
                                                                "dynamic_batch")))
    return dest


def pair_people(lfw: Path) -> set[str]:
    """Every person named in ``pairs.txt``."""
    names: set[str] = set()
    for line in (lfw / "pairs.txt").read_text(encoding="utf-8").splitlines()[1:]:
        tok = line.split()
        names.update([tok[0]] if len(tok) == 3 else [tok[0], tok[2]] if len(tok) == 4 else [])
    return names


def aligned(fa: Any, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The central face of each image aligned to 112×112 RGB (zeros and ok=False where none is found)."""
    crops = np.zeros((len(paths), 112, 112, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        img = fa.load(path)
        faces = fa.detect(img)
        if not faces:
            continue
        h, w = img.rgb.shape[:2]
        face = min(faces, key=lambda f: ((f.box.x1 + f.box.x2) / 2 - w / 2) ** 2 + ((f.box.y1 + f.box.y2) / 2 - h / 2) ** 2)
        crops[i], ok[i] = fa.align(img, face), True
    return crops, ok


def nchw(crops: np.ndarray) -> np.ndarray:
    """RGB uint8 NHWC crops as SFace's float32 NCHW input (0–255, no normalisation)."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)


class Reader:
    """A calibration data reader over single crops."""

    def __init__(self, x: np.ndarray, name: str) -> None:
        self.items = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next calibration input, or None at the end."""
        return next(self.items, None)


def session(path: Path, threads: int) -> Any:
    """A CPU session like faceatlas's (no spinning)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def embed(sess: Any, x: np.ndarray) -> np.ndarray:
    """Unit-length templates, one crop per call (quantised graphs keep a fixed batch of 1)."""
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0].reshape(1, -1) for i in range(len(x))])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def cpu_times(sessions: dict[str, Any], x: np.ndarray, calls: int) -> dict[str, float]:
    """Median CPU ms per crop of each session, calls interleaved (order reversed every other round)."""
    name = next(iter(sessions.values())).get_inputs()[0].name
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, {name: x[:1]})
    for i in range(calls):
        order = list(sessions) if i % 2 == 0 else list(sessions)[::-1]
        for k in order:
            c0 = time.process_time()
            sessions[k].run(None, {name: x[i % len(x) : i % len(x) + 1]})
            times[k].append((time.process_time() - c0) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def lfw_accuracy(sess: Any, crops: np.ndarray, ok: np.ndarray, index: list[tuple[int, int, bool, int]]) -> float:
    """10-fold View 2 accuracy (%) from one template per pair image; a pair with a missing face scores -1."""
    from faceatlas.evaluate.metrics import kfold_accuracy

    e = embed(sess, nchw(crops))
    a, b, same, fold = (np.array(c) for c in zip(*index, strict=True))
    scores = np.where(ok[a] & ok[b], (e[a] * e[b]).sum(1), -1.0)
    return float(kfold_accuracy(scores, same.astype(bool), fold).mean * 100)


def main() -> None:
    """Quantise, measure, print, save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--calib", type=int, default=100, help="calibration crops (people outside pairs.txt)")
    ap.add_argument("--check", type=int, default=300, help="crops of pair people for the cosine check")
    ap.add_argument("--calls", type=int, default=60, help="timed calls per variant")
    ap.add_argument("--threads", type=int, default=1, help="threads per session for the timing (default 1)")
    ap.add_argument("--lfw", action="store_true", help="also LFW View 2 10-fold accuracy per variant (slow)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(), help="model files folder")
    ap.add_argument("--out", type=Path, default=default_out("int8_sface"), help="JSON results path")
    args = ap.parse_args()
    from onnxruntime.quantization import quantize_static

    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore

    lfw = args.data_dir / "lfw"
    resolved = ModelStore(models_dir=args.models_dir).resolve("sface", "recognition")
    fp32 = resolved.runtime_path
    fa = FaceAtlas(models_dir=args.models_dir, threads=2)
    in_pairs = pair_people(lfw)
    people = sorted(p.name for p in (lfw / "images").iterdir())
    rng = random.Random(0)
    outside = rng.sample([p for p in people if p not in in_pairs], args.calib)
    inside = rng.sample(sorted(in_pairs), args.check)
    progress(f"aligning {args.calib} calibration + {args.check} check crops")
    first = [sorted((lfw / "images" / p).glob("*.jpg"))[0] for p in outside + inside]
    crops, ok = aligned(fa, first)
    calib, check = nchw(crops[: args.calib][ok[: args.calib]]), nchw(crops[args.calib :][ok[args.calib :]])
    names = [v for v in args.variants.split(",") if v]
    work = Path(tempfile.mkdtemp(prefix="int8_sface_"))
    paths = {"float32": fp32}
    for name in names:
        progress(f"quantising {name}")
        t0 = time.perf_counter()
        paths[name] = work / f"{name}.onnx"
        source = without_prelu_rewrite(resolved.original, work / "prelu.onnx") if name.startswith("prelu") else fp32
        quantize_static(str(source), str(paths[name]), Reader(calib, "data"), **quant_options(name))
        progress(f"  {time.perf_counter() - t0:.0f} s")
    sessions = {k: session(p, args.threads) for k, p in paths.items()}
    ref = embed(sessions["float32"], check)
    rows: dict[str, dict[str, Any]] = {}
    for k, s in sessions.items():
        cos = (embed(s, check) * ref).sum(1)
        rows[k] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    progress("timing")
    for k, ms in cpu_times(sessions, check, args.calls).items():
        rows[k]["cpu_ms"] = ms
    print_table(["variant", "cos mean", "cos min", "CPU ms/crop"],
                [[k, r["cosine_mean"], r["cosine_min"], r["cpu_ms"]] for k, r in rows.items()], title="before LFW")
    if args.lfw:
        _, _, pairs = read_lfw_pairs(lfw / "pairs.txt")
        images = sorted({p.a for p in pairs} | {p.b for p in pairs})
        pos = {p: i for i, p in enumerate(images)}
        progress(f"aligning {len(images)} LFW pair images")
        pcrops, pok = aligned(fa, [lfw / "images" / p for p in images])
        index = [(pos[p.a], pos[p.b], p.same, p.fold) for p in pairs]
        for k, s in sessions.items():
            progress(f"LFW {k}")
            rows[k]["lfw_accuracy"] = lfw_accuracy(s, pcrops, pok, index)
    fp_ms = rows["float32"]["cpu_ms"]
    for r in rows.values():
        r["speedup_vs_float32"] = fp_ms / r["cpu_ms"]
    print_table(["variant", "cos mean", "cos min", "CPU ms/crop", "speed-up", "LFW %"],
                [[k, r["cosine_mean"], r["cosine_min"], r["cpu_ms"], r["speedup_vs_float32"], r.get("lfw_accuracy", "-")]
                 for k, r in rows.items()],
                title=f"SFace int8 variants ({args.threads} thread(s); cosine to float32 on {len(check)} crops)")
    write_json(args.out, {"benchmark": "int8_sface", "threads": args.threads, "calibration_crops": len(calib),
                          "check_crops": len(check), "variants": rows})


if __name__ == "__main__":
    main()
