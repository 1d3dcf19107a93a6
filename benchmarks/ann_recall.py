"""Why a million-template gallery on Milvus defaults to FLAT: approximate indexes on realistic distractors.

The gallery of ``benchmarks/milvus_scale.py`` (same data, same seed): one real SFace template for each of LFW's 5,749
people plus synthetic distractors drawn from a Gaussian fitted to real single-image templates, up to ``--n`` rows;
the 7,484 other LFW images are the probes. Each index is built offline with FAISS (the library Milvus' knowhere wraps
for IVF; its HNSW is the same algorithm as knowhere's) over all ``--n`` rows as one segment, which is what Milvus
compaction converges to, and searched with every probe. Reported per index and search setting: build seconds,
batched search ms per query, recall@1 against exact search, and identification rank-1 (top hit is the probe's person)
next to exact rank-1.

Index specs, ``;``-separated: ``ivf:NLIST:NPROBE,NPROBE,...`` (IVF_FLAT), ``hnsw:M:EFC:EF,EF,...``, and
``pq[:RERANK]`` (faceatlas' ``PqIndex``, the in-process gallery's index for big collections; default ``PqParams``).

    python benchmarks/ann_recall.py                                         # 1 M rows, ~15 min on 2 cores
    python benchmarks/ann_recall.py --n 200000 --specs "hnsw:16:64:128,512"  # one segment-sized gallery
Results: ``benchmarks/results/ann_recall.json`` (``--out``), a table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_out, environment, print_table, progress, write_json
from milvus_scale import exact_topk, lfw_split, synthetic_distractors

DEFAULT_SPECS = "pq;pq:1024;ivf:1024:16,64,128;ivf:4096:64,256;hnsw:16:64:128,512,1024"


def build_index(kind: str, params: list[str], base: np.ndarray) -> tuple[Any, list[int]]:
    """A FAISS index over ``base`` (inner product) and the search settings to sweep."""
    import faiss

    dim = base.shape[1]
    if kind == "ivf":
        nlist = int(params[0])
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = base[np.random.default_rng(0).permutation(len(base))[: max(nlist * 39, 100_000)]]
        ivf.train(sample)
        ivf.add(base)
        return ivf, [int(x) for x in params[1].split(",")]
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, int(params[0]), faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = int(params[1])
        graph.add(base)
        return graph, [int(x) for x in params[2].split(",")]
    if kind == "pq":  # faceatlas' own default for big in-process collections: a PQ scan of every row + exact re-rank
        from faceatlas.gallery.index import IndexConfig, PqParams, make_index

        rerank = int(params[0]) if params else PqParams().rerank
        pq = make_index(dim, IndexConfig(kind="pq", pq=PqParams(rerank=rerank)), size_hint=len(base))
        pq.add(np.arange(len(base)), base)
        return pq, [rerank]
    raise SystemExit(f"unknown index spec {kind!r} (ivf, hnsw or pq)")


def main() -> None:
    """Build the gallery, the exact ground truth, each index; print and save the sweep."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery rows in all (real + synthetic)")
    ap.add_argument("--specs", default=DEFAULT_SPECS, help="indexes to build (see above)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="distractor seed (milvus_scale.py's --seed)")
    ap.add_argument("--cache", type=Path, default=None, help="template cache folder (default: faceatlas' cache/eval)")
    ap.add_argument("--out", type=Path, default=default_out("ann_recall"))
    args = ap.parse_args()
    import faiss

    from faceatlas import config

    faiss.omp_set_num_threads(args.threads)
    data = lfw_split(default_data_dir() / "lfw" / "images", args.cache or config.cache_dir() / "eval")
    syn = list(synthetic_distractors(data.singles, max(args.n - len(data.names), 0), args.seed))
    base = np.ascontiguousarray(np.concatenate([data.vectors, *syn]).astype(np.float32))
    t0 = time.perf_counter()
    gt, _ = exact_topk(base, data.probes, 1)
    exact_rank1 = float(np.mean(gt[:, 0] == data.probe_person))
    result: dict[str, Any] = {"n": len(base), "probes": len(data.probes), "exact_rank1": round(exact_rank1, 4),
                              "exact_s": round(time.perf_counter() - t0, 1), "environment": environment(), "rows": []}
    progress(f"exact: rank-1 {exact_rank1:.4f} ({result['exact_s']} s)")
    for spec in args.specs.split(";"):
        kind, *params = spec.split(":")
        t0 = time.perf_counter()
        index, sweep = build_index(kind, params, base)
        built = round(time.perf_counter() - t0, 1)
        for setting in sweep:
            if kind == "ivf":
                index.nprobe = setting
            elif kind == "hnsw":
                index.hnsw.efSearch = setting
            t0 = time.perf_counter()
            top = index.search(data.probes, 1)[0 if kind == "pq" else 1]
            ms = (time.perf_counter() - t0) / len(data.probes) * 1000
            how = {"ivf": f"nprobe={setting}", "hnsw": f"ef={setting}"}.get(kind, f"rerank={setting}")
            row = {"index": spec.rsplit(":", 1)[0], "search": how,
                   "build_s": built, "ms_per_query": round(ms, 3),
                   "recall_at_1": round(float(np.mean(top[:, 0] == gt[:, 0])), 4),
                   "rank1": round(float(np.mean(top[:, 0] == data.probe_person)), 4)}
            result["rows"].append(row)
            progress(str(row))
        del index
    print_table(["index", "search", "build s", "ms/query (batched)", "recall@1", "rank-1"],
                [[r["index"], r["search"], r["build_s"], r["ms_per_query"], r["recall_at_1"], r["rank1"]]
                 for r in result["rows"]],
                title=f"{result['n']:,} templates, {result['probes']:,} LFW probes; exact rank-1 {exact_rank1:.4f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
