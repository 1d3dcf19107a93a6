"""SFace alone on each CPU runtime at hand, same input tensors: where the end-to-end ratio against OpenCV comes from.

Runtimes: ONNX Runtime running faceatlas' own SFace session (the graph after its one-time rewrites, faceatlas' session
options), OpenCV's DNN engine running the file OpenCV's ``FaceRecognizerSF`` loads (``cv2.dnn.readNet``),
OpenVINO on faceatlas' rewritten graph when the ``openvino`` package is installed, and PyTorch (a frozen,
``optimize_for_inference`` TorchScript trace of the original graph, PReLU kept native) when ``torch`` is installed
(neither is a dependency). Inputs are
real aligned crops of ``--images`` LFW photos, turned into the network's tensor once (RGB, no scaling: what both
faceatlas and ``FaceRecognizerSF`` feed SFace). Calls are interleaved runtime by runtime, the order rotating every
call, so load changes land on every side. Per runtime: median wall and CPU ms per call, the median of paired ratios
to ONNX Runtime with p25/p75, and the cosine of its outputs to ONNX Runtime's (min over the crops).

    python benchmarks/sface_runtimes.py                       # 1 and 2 threads, 200 rounds each
    pip install openvino && python benchmarks/sface_runtimes.py --threads 2
    pip install torch==2.13.0 && python benchmarks/sface_runtimes.py --threads 2
Results: ``benchmarks/results/sface_runtimes.json`` (``--out``), a table on stdout.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_models_dir, default_out, environment, print_table, write_json
from speed import opencv_sface

Run = Callable[[np.ndarray], np.ndarray]


def crops_and_tensors(atlas: Any, images: list[Path]) -> list[np.ndarray]:
    """The network input tensor (1, 3, 112, 112) of the largest face of each image."""
    out = []
    for path in images:
        faces = atlas.detect(path)
        if faces:
            face = max(faces, key=lambda f: f.box.width * f.box.height)
            crop = atlas.align(path, face)
            out.append(atlas.embedder._normalised(crop[None], atlas.embedder.spec.input.layout))
    return out


def runtimes(atlas: Any, threads: int, models: Path, work: Path) -> dict[str, Run]:
    """One callable per runtime: input tensor -> raw output row."""
    import cv2

    session, name = atlas.embedder.session, atlas.embedder.input_name
    found: dict[str, Run] = {"onnxruntime": lambda x: session.run(None, {name: x})[0][0]}
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNet(str(opencv_sface(models / "sface" / "face_recognition_sface_2021dec_int8bq.onnx",
                                           work / "sface_opencv.onnx")))

    def opencv(x: np.ndarray) -> np.ndarray:
        """OpenCV's engine on the same tensor."""
        net.setInput(x)
        return np.asarray(net.forward()).reshape(-1)

    found["opencv"] = opencv
    path = atlas.store.resolve("sface", "recognition").runtime_path
    try:
        import openvino as ov
    except ImportError:
        pass
    else:
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
        request = compiled.create_infer_request()
        found["openvino"] = lambda x: np.asarray(request.infer({0: x})[0]).reshape(-1)
    try:
        import torch
    except ImportError:
        return found
    found["torch-script"] = torch_sface(torch, models / "sface" / "face_recognition_sface_2021dec_int8bq.onnx", threads)
    return found


def torch_sface(torch: Any, original: Path, threads: int) -> Run:
    """SFace as a frozen, inference-optimised TorchScript graph with native PReLU (oneDNN convolutions)."""
    import onnx
    from onnx import numpy_helper

    from faceatlas.models.transforms import apply_transforms

    model = onnx.load_from_string(apply_transforms(original.read_bytes(),
                                                   ("strip_initializer_inputs", "fold_constants", "dynamic_batch")))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    fn = torch.nn.functional

    def node_out(n: Any, get: Callable[[str], Any]) -> Any:
        """One ONNX node of the SFace graph in torch."""
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        x = get(n.input[0])
        if n.op_type in ("Sub", "Mul"):
            return x - get(n.input[1]) if n.op_type == "Sub" else x * get(n.input[1])
        if n.op_type == "Conv":
            bias = get(n.input[2]) if len(n.input) > 2 else None
            return fn.conv2d(x, get(n.input[1]), bias, stride=a.get("strides", [1, 1]),
                             padding=a.get("pads", [0, 0])[:2], groups=a.get("group", 1))
        if n.op_type == "BatchNormalization":
            return fn.batch_norm(x, get(n.input[3]), get(n.input[4]), get(n.input[1]), get(n.input[2]), False, 0.0,
                                 a.get("epsilon", 1e-5))
        if n.op_type == "PRelu":
            return fn.prelu(x, get(n.input[1]).reshape(-1))
        if n.op_type == "Flatten":
            return torch.flatten(x, 1)
        if n.op_type == "Gemm":
            w = get(n.input[1])
            return fn.linear(x, w if a.get("transB", 0) else w.t(), get(n.input[2]))
        if n.op_type == "Dropout":
            return x
        raise ValueError(f"no torch mapping for {n.op_type}")

    class Net(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: Any) -> Any:
            env = {model.graph.input[0].name: x}
            for n in model.graph.node:
                env[n.output[0]] = node_out(n, lambda k: env[k] if k in env else weights[k])
            return env[model.graph.output[0].name]

    torch.set_num_threads(threads)
    example = torch.zeros(1, 3, 112, 112)
    with torch.no_grad():
        net = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(Net().eval(), example)))

    def run(x: np.ndarray) -> np.ndarray:
        """TorchScript on the same tensor."""
        with torch.no_grad():
            return np.asarray(net(torch.from_numpy(x)).numpy()).reshape(-1)

    return run


def measure(found: dict[str, Run], tensors: list[np.ndarray], rounds: int) -> dict[str, dict[str, float]]:
    """Interleaved timing and output agreement of every runtime against ONNX Runtime."""
    names = list(found)
    ref = [found["onnxruntime"](x) for x in tensors]
    cos = {n: min(float(np.dot(found[n](x), r) / np.linalg.norm(found[n](x)) / np.linalg.norm(r))
                  for x, r in zip(tensors, ref, strict=True)) for n in names}
    for x in tensors[:5]:
        for n in names:
            found[n](x)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        x = tensors[i % len(tensors)]
        for n in names[i % len(names):] + names[: i % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            found[n](x)
            wall[n].append((time.perf_counter() - t0) * 1000)
            cpu[n].append((time.process_time() - c0) * 1000)
    out = {}
    for n in names:
        r = np.asarray(wall[n]) / np.asarray(wall["onnxruntime"])
        out[n] = {"wall_ms": round(float(np.median(wall[n])), 2), "cpu_ms": round(float(np.median(cpu[n])), 2),
                  "ratio": round(float(np.median(r)), 3), "p25": round(float(np.percentile(r, 25)), 3),
                  "p75": round(float(np.percentile(r, 75)), 3), "min_cosine": round(cos[n], 7)}
    return out


def main() -> None:
    """Measure each thread count, print and save."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (all runtimes alike)")
    ap.add_argument("--images", type=int, default=20, help="LFW photos (one crop each)")
    ap.add_argument("--rounds", type=int, default=200, help="interleaved calls per runtime")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path, default=default_out("sface_runtimes"))
    args = ap.parse_args()
    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore

    lfw = default_data_dir() / "lfw" / "images"
    images = sorted(lfw.glob("*/*_0001.jpg"))[: args.images]
    result: dict[str, Any] = {"environment": environment(), "load_before": os.getloadavg()[0], "threads": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (int(t) for t in args.threads.split(",")):
            atlas = FaceAtlas(embedder="sface", store=ModelStore(models_dir=args.models_dir), threads=threads)
            tensors = crops_and_tensors(atlas, images)
            res = measure(runtimes(atlas, threads, args.models_dir, Path(tmp)), tensors, args.rounds)
            result["threads"][threads] = res
            rows += [[threads, n, r["wall_ms"], r["cpu_ms"], f"{r['ratio']:.3f} [{r['p25']:.3f}, {r['p75']:.3f}]",
                      r["min_cosine"]] for n, r in res.items()]
    result["load_after"] = os.getloadavg()[0]
    print_table(["threads", "runtime", "wall ms", "CPU ms", "÷ onnxruntime [p25, p75]", "min cosine"], rows,
                title=f"SFace per call, {len(tensors)} LFW crops; load {result['load_before']:.2f} → "
                      f"{result['load_after']:.2f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
