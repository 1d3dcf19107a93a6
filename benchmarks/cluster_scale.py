"""How far does the graph step of ``faceatlas cluster`` go on one machine? Driver time and memory by number of faces.

``faceatlas cluster DIR [--ray ADDRESS]`` embeds the photos (on Ray with ``--ray``) and then clusters every template
in the driver process: ``add_faces`` (all-pairs cosine similarities block by block → edges >= threshold → chinese
whispers) and ``summarize`` (clusters, representatives, cohesion). This script times that step and measures the
driver's peak resident memory for it, each size in a fresh process:

* **real** templates from a Parquet file written by ``faceatlas embed-dir`` (e.g. every face of LFW);
* **synthetic** 128-d unit templates: identities with LFW-like sizes (1 photo for most people, a few with hundreds),
  each face its identity's direction plus Gaussian noise ``--spread`` times as large.

Peak memory is the growth of the process' peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` once the
templates and face records are in memory), so it is what the clustering step adds on top of holding the faces.

    python benchmarks/cluster_scale.py --templates /tmp/lfw.parquet --sizes 13233 100000 300000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_out, environment, print_table, progress, write_json

import faceatlas.cluster.algorithms as algorithms
from faceatlas.cluster import ClusterFace, ClusterState, add_faces, summarize
from faceatlas.types import Box


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", type=Path, default=None, help="Parquet file from 'faceatlas embed-dir' (real run)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[13233, 100000, 300000], help="synthetic sizes")
    ap.add_argument("--threshold", type=float, default=0.50, help="cosine threshold (sface's clustering default)")
    ap.add_argument("--spread", type=float, default=1.1, help="synthetic noise per face (relative to the identity)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--block", type=int, default=0, help="rows per similarity block (0 = the library's default)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default: benchmarks/results/cluster_scale.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def rss_kib(field: str) -> int:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def synthetic(n: int, dim: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit templates of identities with LFW-like sizes, and their identity labels."""
    rng = np.random.default_rng(seed)
    # LFW: 5,749 people, 4,069 with one photo, a long tail up to 530 photos; a Zipf-like law with a cap matches it
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(min(530, rng.zipf(2.2))))
    labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centres = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, 65536):
        lab = labels[a:a + 65536]
        block = centres[lab] + spread * rng.standard_normal((len(lab), dim)).astype(np.float32)
        out[a:a + len(lab)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, labels


def mean_cosines(vecs: np.ndarray, labels: np.ndarray, pairs: int = 200_000) -> tuple[float, float]:
    """Mean cosine of same-identity pairs (neighbours in label order) and of random pairs of different identities."""
    order = np.argsort(labels, kind="stable")
    a, b = order[:-1], order[1:]
    same = labels[a] == labels[b]
    a, b = a[same][:pairs], b[same][:pairs]
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, len(vecs), pairs), rng.integers(0, len(vecs), pairs)
    other = labels[x] != labels[y]
    return (float(np.einsum("ij,ij->i", vecs[a], vecs[b]).mean()),
            float(np.einsum("ij,ij->i", vecs[x[other]], vecs[y[other]]).mean()))


def real(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Templates of a Parquet file from embed-dir, labelled by the folder above each image (LFW: the person)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["path", "template"])
    vecs = np.asarray(table.column("template").combine_chunks().values, np.float32).reshape(table.num_rows, -1)
    people = [Path(p).parent.name for p in table.column("path").to_pylist()]
    _, labels = np.unique(people, return_inverse=True)
    return vecs, labels


class Timed:
    """Wraps a module function to add up its wall time."""

    def __init__(self, name: str, **extra: Any) -> None:
        self.name = name
        self.extra = extra
        self.fn = getattr(algorithms, name)
        self.seconds = 0.0
        self.result: Any = None
        setattr(algorithms, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped function, timing it and keeping its result."""
        t0 = time.perf_counter()
        self.result = self.fn(*args, **kwargs, **self.extra)
        self.seconds += time.perf_counter() - t0
        return self.result


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Cluster one set of templates the way ``cluster_folder`` does; times, memory, edges and clusters."""
    if spec["kind"] == "real":
        vecs, labels = real(Path(spec["path"]))
    else:
        vecs, labels = synthetic(spec["n"], spec["dim"], spec["spread"])
    n = len(vecs)
    same_cos, other_cos = mean_cosines(vecs, labels)
    faces = [ClusterFace(f"/photos/{k:08d}.jpg", Box(0, 0, 100, 100), 0.9, 0.9) for k in range(n)]
    state = ClusterState("sface", "-", vecs.shape[1], "chinese_whispers", spec["threshold"])
    edges = Timed("similarity_edges", **({"block": spec["block"]} if spec.get("block") else {}))
    whispers = Timed("chinese_whispers")
    base = rss_kib("VmRSS")
    reset_peak()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    add_faces(state, faces, vecs)
    t1 = time.perf_counter()
    result = summarize(state)
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    peak = rss_kib("VmHWM")
    return {
        "kind": spec["kind"], "faces": n, "block": spec.get("block") or "default", "identities": int(len(np.unique(labels))),
        "same_person_cos_mean": round(same_cos, 3), "other_person_cos_mean": round(other_cos, 3),
        "edges": int(len(edges.result[0])), "edges_per_face": round(len(edges.result[0]) / n, 2),
        "clusters": len(result.clusters), "noise": len(result.noise),
        "edges_s": round(edges.seconds, 2), "whispers_s": round(whispers.seconds, 2),
        "add_faces_s": round(t1 - t0, 2), "summarize_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
        "cpu_s": round(cpu, 2),
        "rss_before_mib": round(base / 1024), "peak_growth_mib": round((peak - base) / 1024),
    }


def main() -> None:
    """Run each size in a child process; print and save the table."""
    args = parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    specs: list[dict[str, Any]] = []
    if args.templates:
        specs.append({"kind": "real", "path": str(args.templates), "threshold": args.threshold, "block": args.block})
    specs += [{"kind": "synthetic", "n": n, "dim": args.dim, "spread": args.spread, "threshold": args.threshold,
               "block": args.block} for n in args.sizes]
    rows, results = [], []
    for spec in specs:
        progress(f"clustering {spec.get('n', spec.get('path'))} ({spec['kind']}) in a fresh process")
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            progress(proc.stderr[-2000:])
            raise SystemExit(proc.returncode)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        progress(f"  {res}")
        rows.append([res["kind"], res["faces"], res["edges_per_face"], res["clusters"], res["edges_s"],
                     res["whispers_s"], res["summarize_s"], res["total_s"], res["cpu_s"], res["rss_before_mib"],
                     res["peak_growth_mib"]])
    print_table(["templates", "faces", "edges/face", "clusters", "edges s", "whispers s", "summarize s", "total s",
                 "CPU s", "RSS before MiB", "peak growth MiB"], rows, title=f"graph step, threshold {args.threshold}")
    write_json(args.out or default_out("cluster_scale"), {"environment": environment(), "threshold": args.threshold,
                                                          "spread": args.spread, "results": results})


if __name__ == "__main__":
    main()
