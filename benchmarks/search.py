"""1:N search over large galleries: build time, memory, single-query latency and recall@1 of faceatlas's indexes
against FAISS and a per-row Python loop, at 100,000 and 1,000,000 templates of dimension 128 (SFace's).

Methods, all answering top-1 for one query at a time (batch = 1) with ``--threads`` threads (default 2; BLAS via
threadpoolctl, FAISS via OpenMP; usearch always uses every core the process may run on, because ``HnswIndex`` passes
no thread count):

(a) ``ExactIndex`` float32 (faceatlas, BLAS matrix product + ``argpartition``);
(b) ``ExactIndex`` float16 (same, rows stored as float16 and widened chunk by chunk per query);
(c) ``PqIndex`` (faceatlas; the approximate index ``index="auto"`` switches to when FAISS is installed) with the
    library's default ``PqParams``: a 4-bit product-quantised fast scan (FAISS ``IndexPQFastScan``, 4 dimensions per
    sub-quantiser) proposes ``rerank`` candidates that are re-scored exactly. Its ``rerank`` depth is also swept over
    ``--rerank-sweep`` on all queries (recall and latency per depth);
(c') ``HnswIndex`` (faceatlas on usearch; the fallback without FAISS). At the smallest size every ``--hnsw-configs`` entry
    (``connectivity:expansion_add:dtype``, default 16:64 in float16 and float32) is built and swept over ``--ef-sweep``
    values of ``expansion_search``; the configuration with the shortest build that reaches ``--recall-target`` is then
    the one built at larger sizes. At each size the reported ``expansion_search`` is the smallest swept value reaching
    the target there. The graph is added in chunks (progress, build-rate curve); a build that cannot finish within
    ``--hnsw-build-limit-s`` is stopped and reported with its rate curve and projected full build time;
(d) FAISS ``IndexFlatIP`` on the same unit vectors (baseline: exact, SIMD/BLAS in C++);
(e) a per-row Python loop computing cosine distance row by row with norms recomputed each time (the pattern of
    deepface's ``find``). It is slow, so it runs on only ``--loop-queries`` queries (default 5).

Data. Gallery = real templates + random unit vectors for bulk. By default the real templates are SFace templates of
all 13,233 LFW images (``<data-dir>/lfw/images``, central face, computed through faceatlas and cached in the
evaluation suite's template cache). ``--templates NPZ`` (keys ``vectors`` float32 (N, dim), ``labels`` optional) uses
a file instead. With ``--generated``, or without LFW, they are GENERATED: clustered unit
vectors with LFW's identity structure (5,749 identities, 13,233 samples; per-identity counts are read from
``<data-dir>/lfw/images`` when present, else drawn from a heavy-tailed distribution), each sample
``rho*centre + sqrt(1-rho^2)*noise`` with ``rho^2`` drawn in ``--intra-cos`` (default 0.6-0.8, so two samples of one
identity have cosine ~0.6-0.8, different identities ~0 +- 0.09). The output says which. Real rows sit at random
positions among the first (smallest size) rows, so every size contains them all and larger galleries are supersets.
Uniform random bulk has the full intrinsic dimension (128), the hardest case for a graph index: HNSW build cost per
vector and the ``expansion_search`` needed grow much faster with size than on real embeddings, so HNSW numbers here
are pessimistic.

Queries: ``--queries`` (1,000) noisy copies of gallery members, ``cos(query, member)`` uniform in ``--query-cos``
(default 0.70-0.90); ``--bulk-query-fraction`` (0.2) of them copy random bulk rows, the rest real rows. The same
queries are used at every size. Ground truth is the exact top-1 by cosine computed independently here (numpy float32,
blocked); recall@1 = share of queries whose returned id is the ground-truth id. Queries whose best and second-best
exact scores differ by < 1e-3 are counted as near-ties (float16 rounding can legitimately flip those).

Latency: each method is timed in two rounds (round 1 in method order, round 2 in reverse order, on disjoint halves of
the queries) after a few untimed warm-up queries; a round stops after ``--round-budget-s`` seconds (at least
``--min-timed`` queries) or its half of ``--timed-queries``. p50/p99 are over both rounds; the two rounds' p50s and
the CPU used by other processes during each method's timing are reported as the noise estimate. ``cpu`` is this
process's CPU time per query over all threads. Memory: RSS change across the build (after it), the peak RSS change
during it (VmHWM reset through /proc/self/clear_refs where allowed), and the index's own size (matrix bytes;
usearch's ``memory_usage``; FAISS ``ntotal*d*4``).

Targets (PASS/FAIL): approximate at 1M: p50 <= 5 ms at recall@1 >= 99.5 % (recall over all queries), judged on
``PqIndex`` with its defaults and reported for ``HnswIndex`` at its chosen setting as ``approximate_hnsw``; exact
(ExactIndex float32) at 1M: p50 <= 60 ms.

Run from anywhere (default ~20 min on 2 busy cores, dominated by HNSW builds; progress on stderr; JSON to
``benchmarks/results/search.json``):

    python benchmarks/search.py
    python benchmarks/search.py --sizes 100000                     # ~10 min
    python benchmarks/search.py --sizes 1000000 --methods exact_f32,faiss_flat --threads 1     # exact only, 1 thread
    python benchmarks/search.py --sizes 20000 --queries 200 --hnsw-configs 16:64:float16 --round-budget-s 2   # smoke
    python benchmarks/search.py --templates lfw_sface.npz          # real LFW templates instead of generated ones
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import default_data_dir, default_models_dir, default_out, environment, print_table, progress, write_json

from faceatlas.gallery import ExactIndex, HnswIndex, HnswParams, PqIndex, PqParams

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
SearchFn = Callable[[F32], int]

LFW_IDENTITIES = 5749
LFW_SAMPLES = 13233
NEAR_TIE = 1e-3
APPROX_P50_TARGET_MS = 5.0
EXACT_P50_TARGET_MS = 60.0
TARGET_SIZE = 1_000_000
MB = 1024 * 1024
METHODS = ("exact_f32", "exact_f16", "pq", "hnsw", "faiss_flat", "python_loop")


# -- process / machine measurements ---------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    """A ``kB`` field of /proc/self/status (0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    """Current resident set size."""
    return _status_kb("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); tell whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last reset."""
    return _status_kb("VmHWM") * 1024


class CpuWatch:
    """Wall time, this process's CPU time and the whole machine's busy CPU time between start and ``stop()``."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float]:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
            ticks = float(os.sysconf("SC_CLK_TCK"))
            total, idle = sum(vals) / ticks, (vals[3] + vals[4]) / ticks
        except (OSError, ValueError):
            total = idle = float("nan")
        return total, idle, time.process_time(), time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Wall seconds, own CPU seconds, average cores used by this process and by everything else."""
        t1, i1, p1, w1 = self._read()
        t0, i0, p0, w0 = self._start
        wall = max(w1 - w0, 1e-9)
        busy = ((t1 - t0) - (i1 - i0)) / wall
        own = (p1 - p0) / wall
        return {"wall_s": wall, "cpu_s": p1 - p0, "own_cores": own, "other_cores": max(0.0, busy - own)}


def loadavg() -> list[float]:
    """1/5/15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


# -- data -----------------------------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 262_144) -> F32:
    """``n`` random unit vectors (uniform on the sphere), generated in chunks to bound temporaries."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + block.shape[0]] = block
    return out


def noisy_copies(rng: np.random.Generator, base: F32, cos_lo: float, cos_hi: float) -> F32:
    """Unit vectors at cosine uniform in [cos_lo, cos_hi] from each (unit) row of ``base``, in a random direction."""
    noise = rng.standard_normal(base.shape, dtype=np.float32)
    noise -= np.sum(noise * base, axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    rho = rng.uniform(cos_lo, cos_hi, size=(base.shape[0], 1)).astype(np.float32)
    out = rho * base + np.sqrt(1.0 - rho * rho) * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def lfw_identity_counts(data_dir: Path, rng: np.random.Generator) -> tuple[I64, str]:
    """Samples per identity: from ``lfw/images`` folders when present, else a heavy-tailed draw of LFW's size."""
    images = data_dir / "lfw" / "images"
    if images.is_dir():
        counts = []
        for entry in sorted(os.scandir(images), key=lambda e: e.name):
            if entry.is_dir():
                n = sum(1 for f in os.scandir(entry.path) if f.name.lower().endswith(".jpg"))
                if n:
                    counts.append(n)
        if counts:
            return np.asarray(counts, dtype=np.int64), f"per-identity counts of {images}"
    counts = np.minimum(rng.zipf(2.2, size=LFW_IDENTITIES), 530).astype(np.int64)
    counts = np.maximum(1, np.round(counts * LFW_SAMPLES / counts.sum())).astype(np.int64)
    return counts, "heavy-tailed (Zipf 2.2) counts scaled to LFW's 13,233 samples (lfw/images not found)"


def clustered_templates(
    rng: np.random.Generator, counts: I64, dim: int, intra_lo: float, intra_hi: float
) -> tuple[F32, I64]:
    """Unit vectors clustered by identity: cos(sample, centre)^2 uniform in [intra_lo, intra_hi]."""
    centres = unit_rows(rng, counts.shape[0], dim)
    labels = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    rho_lo, rho_hi = math.sqrt(intra_lo), math.sqrt(intra_hi)
    return noisy_copies(rng, centres[labels], rho_lo, rho_hi), labels


def pair_stats(rng: np.random.Generator, vectors: F32, labels: I64 | None, n_pairs: int = 20_000) -> dict[str, Any]:
    """Cosine statistics of random same-label and different-label pairs (sanity check of the data)."""
    out: dict[str, Any] = {}
    if labels is None or vectors.shape[0] < 2:
        return out
    a = rng.integers(0, vectors.shape[0], size=n_pairs * 4)
    b = rng.integers(0, vectors.shape[0], size=n_pairs * 4)
    keep = a != b
    a, b = a[keep], b[keep]
    same = labels[a] == labels[b]
    # Same-label pairs are rare under uniform sampling; add pairs drawn within identities.
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    last = np.searchsorted(sorted_labels, sorted_labels, side="right")
    multi = np.flatnonzero(last - first > 1)
    if multi.size:
        pick = rng.choice(multi, size=min(n_pairs, multi.size * 4))
        partner = first[pick] + rng.integers(0, (last - first)[pick])
        ok = partner != pick
        ga, gb = order[pick[ok]], order[partner[ok]]
        cos_same = np.sum(vectors[ga] * vectors[gb], axis=1)
        out["same_identity_cos"] = _describe(cos_same)
    diff = ~same
    cos_diff = np.sum(vectors[a[diff][:n_pairs]] * vectors[b[diff][:n_pairs]], axis=1)
    out["different_identity_cos"] = _describe(cos_diff)
    return out


def _describe(x: npt.NDArray[Any]) -> dict[str, float]:
    """Mean, std and 5/50/95th percentiles."""
    x = np.asarray(x, dtype=np.float64)
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "p5": float(np.percentile(x, 5)),
        "p50": float(np.percentile(x, 50)),
        "p95": float(np.percentile(x, 95)),
    }


@dataclass
class Dataset:
    """The largest gallery (smaller sizes are prefixes), which rows are real, and the queries."""

    gallery: F32
    real_rows: I64
    labels: I64 | None
    queries: F32
    query_source: I64
    query_is_real: npt.NDArray[np.bool_]
    info: dict[str, Any]


def lfw_templates(images: Path, dim: int) -> tuple[F32, I64]:
    """Real SFace templates of every LFW image (the evaluation suite's cache) and their person labels."""
    from faceatlas import config
    from faceatlas.evaluate.runner import embed_images
    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore

    keys = sorted(str(p.relative_to(images)) for p in images.glob("*/*.jpg"))
    atlas = FaceAtlas(embedder="sface", store=ModelStore(models_dir=config.models_dir() or default_models_dir()))
    if atlas.embedder.dim != dim:
        raise SystemExit(f"--dim {dim} does not match SFace's {atlas.embedder.dim}")
    progress(f"embedding {len(keys)} LFW images with SFace (cached in {config.cache_dir() / 'eval'}) ...")
    ts = embed_images(atlas, [images / k for k in keys], keys=keys, select="central", cache_dir=config.cache_dir() / "eval")
    people = sorted({k.split("/")[0] for k in keys})
    pid = {p: i for i, p in enumerate(people)}
    keep = np.flatnonzero(ts.found)
    labels = np.array([pid[keys[i].split("/")[0]] for i in keep], np.int64)
    return ts.vectors[keep].astype(np.float32), labels


def build_dataset(args: argparse.Namespace, rng: np.random.Generator) -> Dataset:
    """Real (file or generated) templates scattered among random unit vectors, plus noisy-copy queries."""
    sizes = sorted(args.sizes)
    info: dict[str, Any] = {}
    real: F32
    labels: I64 | None
    lfw_images = args.data_dir / "lfw" / "images"
    if args.templates is None and not args.generated and lfw_images.is_dir():
        real, labels = lfw_templates(lfw_images, args.dim)
        info["real_source"] = f"SFace templates of all {len(real)} LFW images ({lfw_images}; central face, cached)"
    elif args.templates is not None and args.templates.is_file():
        with np.load(args.templates) as npz:
            real = np.asarray(npz["vectors"], dtype=np.float32)
            labels = np.asarray(npz["labels"]).astype(np.int64) if "labels" in npz.files else None
        if real.ndim != 2 or real.shape[1] != args.dim:
            raise SystemExit(f"{args.templates}: vectors have shape {real.shape}, expected (N, {args.dim}) (see --dim)")
        real = real / np.linalg.norm(real, axis=1, keepdims=True)
        info["real_source"] = f"templates file {args.templates}"
    else:
        if args.templates is not None:
            progress(f"warning: --templates {args.templates} not found; generating clustered templates instead")
        counts, counts_src = lfw_identity_counts(args.data_dir, rng)
        real, labels = clustered_templates(rng, counts, args.dim, *args.intra_cos)
        info["real_source"] = (
            f"GENERATED clustered unit vectors: {counts.shape[0]} identities, {int(counts.sum())} samples ({counts_src}); "
            f"cos(sample, identity centre)^2 uniform in [{args.intra_cos[0]}, {args.intra_cos[1]}]"
        )
    n_real = min(real.shape[0], sizes[0])
    if n_real < real.shape[0]:
        progress(f"note: using {n_real} of {real.shape[0]} real templates (smallest size is {sizes[0]})")
        real, labels = real[:n_real], (labels[:n_real] if labels is not None else None)
    info["real_templates"] = n_real
    info["real_pair_cos"] = pair_stats(rng, real, labels)
    n_max = sizes[-1]
    progress(f"generating {n_max - n_real:,} random unit vectors (dim {args.dim}) ...")
    gallery = unit_rows(rng, n_max, args.dim)
    real_rows = np.sort(rng.choice(sizes[0], size=n_real, replace=False)).astype(np.int64)
    gallery[real_rows] = real
    info["bulk"] = "random unit vectors, uniform on the sphere"
    info["real_rows_within_first"] = sizes[0]

    n_bulk_q = int(round(args.queries * args.bulk_query_fraction))
    bulk_pool = np.setdiff1d(np.arange(sizes[0], dtype=np.int64), real_rows)
    if bulk_pool.size == 0:
        n_bulk_q = 0
    n_real_q = args.queries - n_bulk_q
    src_real = rng.choice(real_rows, size=n_real_q, replace=n_real_q > real_rows.size)
    src_bulk = rng.choice(bulk_pool, size=n_bulk_q, replace=False) if n_bulk_q else np.zeros(0, dtype=np.int64)
    source = np.concatenate([src_real, src_bulk]).astype(np.int64)
    is_real = np.concatenate([np.ones(n_real_q, dtype=bool), np.zeros(n_bulk_q, dtype=bool)])
    perm = rng.permutation(source.shape[0])
    source, is_real = source[perm], is_real[perm]
    queries = noisy_copies(rng, gallery[source], *args.query_cos)
    info["queries"] = {
        "n": int(queries.shape[0]),
        "from_real": n_real_q,
        "from_bulk": n_bulk_q,
        "cos_to_source": list(args.query_cos),
    }
    return Dataset(gallery, real_rows, labels, queries, source, is_real, info)


def ground_truth(gallery: F32, queries: F32, block: int = 65_536) -> tuple[I64, F32, F32]:
    """Exact top-1 id, top-1 score and top-2 score per query (numpy float32, gallery in row blocks)."""
    nq = queries.shape[0]
    best_id = np.full(nq, -1, dtype=np.int64)
    best = np.full(nq, -np.inf, dtype=np.float32)
    second = np.full(nq, -np.inf, dtype=np.float32)
    rows = np.arange(nq)
    for start in range(0, gallery.shape[0], block):
        scores = queries @ gallery[start : start + block].T
        top2 = np.argpartition(-scores, 1, axis=1)[:, :2] if scores.shape[1] > 1 else np.zeros((nq, 1), dtype=np.int64)
        vals = scores[rows[:, None], top2]
        order = np.argsort(-vals, axis=1)
        top2, vals = np.take_along_axis(top2, order, axis=1), np.take_along_axis(vals, order, axis=1)
        for j in range(vals.shape[1]):
            v, ids = vals[:, j], top2[:, j] + start
            better = v > best
            second = np.where(better, best, np.maximum(second, v))
            best_id = np.where(better, ids, best_id)
            best = np.where(better, v, best)
    return best_id, best, second


# -- methods --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HnswConfig:
    """An HnswIndex construction setting."""

    connectivity: int
    expansion_add: int
    dtype: str

    @property
    def label(self) -> str:
        return f"M={self.connectivity} ef_add={self.expansion_add} {self.dtype}"

    @staticmethod
    def parse(text: str) -> HnswConfig:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"expected connectivity:expansion_add[:dtype], got {text!r}")
        dtype = parts[2] if len(parts) == 3 else "float32"
        if dtype not in ("float32", "float16"):
            raise argparse.ArgumentTypeError(f"dtype must be float32 or float16, got {dtype!r}")
        return HnswConfig(int(parts[0]), int(parts[1]), dtype)


@dataclass
class Built:
    """A built index and what building it cost."""

    name: str
    search: SearchFn
    handle: Any
    build: dict[str, Any]


def measure_build(name: str, make: Callable[[], Any], index_bytes: Callable[[Any], int]) -> tuple[Any, dict[str, Any]]:
    """Run ``make()`` recording wall/CPU time, RSS change and peak RSS change."""
    gc.collect()
    rss0 = rss_bytes()
    peak_ok = reset_peak_rss()
    watch = CpuWatch()
    handle = make()
    cpu = watch.stop()
    gc.collect()
    rss1 = rss_bytes()
    build = {
        "seconds": cpu["wall_s"],
        "cpu_seconds": cpu["cpu_s"],
        "other_cores": cpu["other_cores"],
        "rss_delta_mb": (rss1 - rss0) / MB,
        "peak_rss_delta_mb": (peak_rss_bytes() - rss0) / MB if peak_ok else None,
        "index_mb": index_bytes(handle) / MB,
    }
    progress(f"  built {name}: {build['seconds']:.1f} s, RSS +{build['rss_delta_mb']:.0f} MB, index {build['index_mb']:.0f} MB")
    return handle, build


def build_exact(gallery: F32, ids: I64, dtype: str) -> Built:
    """ExactIndex sized for the gallery (as the gallery facade does with its size hint), one ``add`` call."""

    def make() -> ExactIndex:
        idx = ExactIndex(gallery.shape[1], metric="cos", dtype=dtype, initial_capacity=gallery.shape[0])  # type: ignore[arg-type]
        idx.add(ids, gallery)
        return idx

    def size(idx: ExactIndex) -> int:
        mat = getattr(idx, "_mat", None)
        return int(mat.nbytes) + int(getattr(idx, "_ids", np.zeros(0)).nbytes) if mat is not None else len(idx) * idx.dim * 4

    idx, build = measure_build(f"ExactIndex {dtype}", make, size)
    return Built(f"ExactIndex {dtype}", lambda q: int(idx.search(q, 1)[0][0, 0]), idx, build)


def build_faiss(gallery: F32, threads: int) -> Built:
    """FAISS IndexFlatIP over the (unit) gallery rows; ids are row numbers."""
    import faiss

    def make() -> Any:
        idx = faiss.IndexFlatIP(gallery.shape[1])
        idx.add(gallery)
        return idx

    idx, build = measure_build("FAISS IndexFlatIP", make, lambda i: int(i.ntotal) * int(i.d) * 4)

    def search(q: F32) -> int:
        faiss.omp_set_num_threads(threads)  # faceatlas's indexes set this thread's OpenMP team to 1 when they search
        return int(idx.search(q, 1)[1][0, 0])

    return Built("FAISS IndexFlatIP", search, idx, build)


def build_pq(gallery: F32, ids: I64) -> Built:
    """PqIndex with the library's default parameters (what ``index="auto"`` builds past its threshold), one ``add``."""

    def make() -> PqIndex:
        idx = PqIndex(gallery.shape[1], metric="cos", initial_capacity=gallery.shape[0])
        idx.add(ids, gallery)
        return idx

    def size(idx: PqIndex) -> int:
        code_bytes = idx.code_count() * (int(idx._quantizer.code_size) + 8)  # code + its row number
        return int(idx._mat.nbytes) + int(idx._row_ids.nbytes) + int(idx._row_seg.nbytes) + code_bytes

    label = f"PqIndex sub_dim={PqParams().sub_dim} rerank={PqParams().rerank}"
    idx, build = measure_build(label, make, size)
    return Built(label, lambda q: int(idx.search(q, 1)[0][0, 0]), idx, build)


def time_pq_removals(idx: PqIndex, gallery: F32, n: int, count: int = 9) -> dict[str, float]:
    """Milliseconds to remove one id (its row and code), for ids spread over the index; each is added back after."""
    times = []
    for key in np.linspace(0, n - 1, count).astype(np.int64).tolist():
        t = time.perf_counter()
        idx.remove([key])
        times.append((time.perf_counter() - t) * 1e3)
        idx.add([key], gallery[key : key + 1])
    progress(f"  PqIndex remove one id: median {float(np.median(times)):.1f} ms, max {max(times):.1f} ms")
    return {"median": float(np.median(times)), "max": float(max(times)), "n": float(count)}


def set_rerank(idx: PqIndex, rerank: int) -> None:
    """Change the PqIndex's re-rank depth (read from ``params`` on every search)."""
    idx.params = dataclasses.replace(idx.params, rerank=rerank)


def hnsw_index_bytes(idx: HnswIndex) -> int:
    """usearch's own memory accounting of the graph and vectors."""
    inner = getattr(idx, "_index", None)
    try:
        return int(inner.memory_usage) if inner is not None else 0
    except (AttributeError, TypeError):
        return 0


def project_build_seconds(curve: list[dict[str, float]], n: int) -> float | None:
    """Full-build time extrapolated from the measured chunks: per-vector cost fitted as ``a * size^b`` (log-log least
    squares over chunk midpoints, first chunk skipped when there are >= 3), integrated from 0 to ``n``."""
    if len(curve) < 2:
        return None
    pts = curve[1:] if len(curve) >= 3 else curve
    mid = np.asarray([c["size_after"] - c["added"] / 2 for c in pts], dtype=np.float64)
    cost = np.asarray([c["seconds"] / c["added"] for c in pts], dtype=np.float64)
    b, log_a = np.polyfit(np.log(mid), np.log(cost), 1)
    b = max(float(b), 0.0)  # cost per vector does not fall as the graph grows
    done = float(curve[-1]["size_after"])
    spent = float(sum(c["seconds"] for c in curve))
    rest = math.exp(log_a) * (n ** (b + 1) - done ** (b + 1)) / (b + 1)
    return spent + rest


def build_hnsw(gallery: F32, ids: I64, cfg: HnswConfig, chunk: int, limit_s: float) -> tuple[HnswIndex | None, dict[str, Any]]:
    """HnswIndex built in chunks (for progress and a rate curve). Gives up once ``limit_s`` has passed, or earlier
    (after a quarter of it) once even the current rate, which only falls as the graph grows, would overrun it."""
    n = gallery.shape[0]
    curve: list[dict[str, float]] = []
    state: dict[str, Any] = {"aborted_at": None}

    def make() -> HnswIndex:
        idx = HnswIndex(gallery.shape[1], metric="cos", dtype=cfg.dtype,  # type: ignore[arg-type]
                        params=HnswParams(cfg.connectivity, cfg.expansion_add, 64))
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            t = time.perf_counter()
            idx.add(ids[start:end], gallery[start:end])
            dt = time.perf_counter() - t
            elapsed = time.perf_counter() - t0
            curve.append({"size_after": end, "added": end - start, "seconds": dt, "vectors_per_s": (end - start) / dt})
            lower = elapsed + (n - end) * dt / (end - start)
            progress(f"    HNSW {cfg.label}: {end:,}/{n:,} in {elapsed:.0f} s ({(end - start) / dt:,.0f} vec/s now; "
                     f"full build >= {lower:.0f} s)")
            if end < n and (elapsed > limit_s or (elapsed > limit_s / 4 and lower > limit_s)):
                state["aborted_at"] = end
                progress(f"    HNSW build cannot finish within --hnsw-build-limit-s {limit_s:.0f} s: stopped at {end:,}")
                break
        return idx

    idx, build = measure_build(f"HnswIndex {cfg.label}", make, hnsw_index_bytes)
    build["config"] = dataclasses.asdict(cfg)
    build["rate_curve"] = curve
    if state["aborted_at"] is not None:
        added = state["aborted_at"]
        build["aborted_at"] = added
        build["projected_seconds_lower_bound"] = build["seconds"] + (n - added) * curve[-1]["seconds"] / curve[-1]["added"]
        build["projected_seconds_power_law"] = project_build_seconds(curve, n)
        del idx
        gc.collect()
        return None, build
    return idx, build


def hnsw_search_fn(idx: HnswIndex) -> SearchFn:
    """Top-1 through HnswIndex.search with whatever expansion_search its params hold."""
    return lambda q: int(idx.search(q, 1)[0][0, 0])


def set_expansion_search(idx: HnswIndex, ef: int) -> None:
    """Change the HnswIndex's search expansion (read from ``params`` on every search)."""
    idx.params = dataclasses.replace(idx.params, expansion_search=ef)


def deepface_style_search(rows: list[F32], q: F32) -> int:
    """Per-row Python loop: cosine distance with both norms recomputed for every row, then the smallest distance."""
    source = q.reshape(-1)
    distances = []
    for row in rows:
        a = np.matmul(np.transpose(source), row)
        b = np.sum(np.multiply(source, source))
        c = np.sum(np.multiply(row, row))
        distances.append(1 - (a / (np.sqrt(b) * np.sqrt(c))))
    return int(np.argmin(np.asarray(distances)))


# -- timing ---------------------------------------------------------------------------------------------------


def time_queries(
    search: SearchFn, queries: F32, order: npt.NDArray[np.int64], budget_s: float, min_n: int, warmup: int
) -> dict[str, Any]:
    """Time single queries (batch 1) in ``order`` until the budget is spent; returns samples and answers."""
    for i in order[:warmup]:
        search(queries[i : i + 1])
    gc.collect()
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    answers: dict[int, int] = {}
    watch = CpuWatch()
    start = time.perf_counter()
    for count, i in enumerate(order.tolist()):
        if count >= min_n and time.perf_counter() - start > budget_s:
            break
        q = queries[i : i + 1]
        c0 = time.process_time()
        t0 = time.perf_counter()
        answers[i] = search(q)
        t1 = time.perf_counter()
        c1 = time.process_time()
        wall_ms.append((t1 - t0) * 1e3)
        cpu_ms.append((c1 - c0) * 1e3)
    return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "answers": answers, "load": watch.stop()}


def latency_summary(wall_ms: list[float], cpu_ms: list[float]) -> dict[str, float]:
    """p50/p99/min/mean of wall time and p50 of CPU time, in ms."""
    w = np.asarray(wall_ms, dtype=np.float64)
    c = np.asarray(cpu_ms, dtype=np.float64)
    if w.size == 0:
        return {"n": 0}
    return {
        "n": int(w.size),
        "p50": float(np.percentile(w, 50)),
        "p99": float(np.percentile(w, 99)),
        "min": float(w.min()),
        "mean": float(w.mean()),
        "max": float(w.max()),
        "cpu_p50": float(np.percentile(c, 50)),
    }


def recall_of(answers: dict[int, int], gt_id: I64, near_tie: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """recall@1 of answers against the ground truth, and how many misses were near-ties."""
    if not answers:
        return {"n": 0, "recall_at_1": float("nan")}
    q = np.fromiter(answers.keys(), dtype=np.int64)
    got = np.fromiter(answers.values(), dtype=np.int64)
    hit = got == gt_id[q]
    return {
        "n": int(q.size),
        "recall_at_1": float(hit.mean()),
        "misses": int((~hit).sum()),
        "misses_near_tie": int((~hit & near_tie[q]).sum()),
    }


# -- one gallery size -----------------------------------------------------------------------------------------


def sweep_row(search: SearchFn, data: Dataset, gt_id: I64, near_tie: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Recall@1 (all queries, and real / bulk ones apart) and single-query latency of one setting."""
    order = np.arange(data.queries.shape[0], dtype=np.int64)
    t = time_queries(search, data.queries, order, budget_s=float("inf"), min_n=0, warmup=5)
    answers: dict[int, int] = t["answers"]
    row = {**recall_of(answers, gt_id, near_tie), **latency_summary(t["wall_ms"], t["cpu_ms"]),
           "other_cores": t["load"]["other_cores"]}
    for part, mask in (("real", data.query_is_real), ("bulk", ~data.query_is_real)):
        sub = {k: v for k, v in answers.items() if mask[k]}
        row[f"recall_at_1_{part}_queries"] = recall_of(sub, gt_id, near_tie)["recall_at_1"] if sub else None
    return row


def hnsw_sweep(
    idx: HnswIndex, data: Dataset, gt_id: I64, near_tie: npt.NDArray[np.bool_], efs: list[int], target: float, full: bool
) -> list[dict[str, Any]]:
    """Recall@1 and single-query latency over all queries for each expansion_search value (ascending); unless
    ``full``, stops one value after the first that reaches the recall target."""
    rows: list[dict[str, Any]] = []
    reached = 0
    for ef in sorted(efs):
        if reached >= 2 and not full:
            break
        set_expansion_search(idx, ef)
        row = {"expansion_search": ef, **sweep_row(hnsw_search_fn(idx), data, gt_id, near_tie)}
        reached += 1 if (reached or row["recall_at_1"] >= target) else 0
        progress(f"    ef_search={ef}: recall@1 {row['recall_at_1'] * 100:.2f} %, p50 {row['p50']:.2f} ms, "
                 f"p99 {row['p99']:.2f} ms")
        rows.append(row)
    return rows


def pq_sweep(
    idx: PqIndex, data: Dataset, gt_id: I64, near_tie: npt.NDArray[np.bool_], reranks: list[int]
) -> list[dict[str, Any]]:
    """Recall@1 and single-query latency over all queries for each re-rank depth; the index keeps its default."""
    default = idx.params.rerank
    rows: list[dict[str, Any]] = []
    for depth in sorted(set(reranks) | {default}):
        set_rerank(idx, depth)
        row = {"rerank": depth, "default": depth == default,
               **sweep_row(lambda q: int(idx.search(q, 1)[0][0, 0]), data, gt_id, near_tie)}
        progress(f"    rerank={depth}: recall@1 {row['recall_at_1'] * 100:.2f} %, p50 {row['p50']:.2f} ms, "
                 f"p99 {row['p99']:.2f} ms")
        rows.append(row)
    set_rerank(idx, default)
    return rows


def pick_ef(sweep: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """Smallest swept expansion_search reaching the recall target."""
    ok = [r for r in sweep if r["recall_at_1"] >= target]
    return min(ok, key=lambda r: r["expansion_search"]) if ok else None


def run_size(
    args: argparse.Namespace, data: Dataset, n: int, hnsw_choice: HnswConfig | None
) -> tuple[dict[str, Any], HnswConfig | None]:
    """Everything for one gallery size; returns its results and the HNSW configuration chosen (at the first size)."""
    gallery = data.gallery[:n]
    ids = np.arange(n, dtype=np.int64)
    queries = data.queries
    out: dict[str, Any] = {"size": n, "loadavg_at_start": loadavg(), "methods_requested": list(args.methods)}
    progress(f"\n== gallery size {n:,} ==")

    progress("  exact ground truth (numpy float32) ...")
    t = time.perf_counter()
    gt_id, gt_best, gt_second = ground_truth(gallery, queries)
    near_tie = (gt_best - gt_second) < NEAR_TIE
    out["ground_truth"] = {
        "seconds": time.perf_counter() - t,
        "nn_is_query_source": float((gt_id == data.query_source).mean()),
        "nn_is_query_source_real_queries": float((gt_id == data.query_source)[data.query_is_real].mean())
        if data.query_is_real.any() else None,
        "top1_cos": _describe(gt_best),
        "top1_minus_top2": _describe(gt_best - gt_second),
        "near_ties": int(near_tie.sum()),
    }

    methods: dict[str, Built] = {}
    if "exact_f32" in args.methods:
        methods["exact_f32"] = build_exact(gallery, ids, "float32")
    if "exact_f16" in args.methods:
        methods["exact_f16"] = build_exact(gallery, ids, "float16")
    if "faiss_flat" in args.methods:
        methods["faiss_flat"] = build_faiss(gallery, args.threads)
    pq_default_row: dict[str, Any] | None = None
    if "pq" in args.methods:
        methods["pq"] = build_pq(gallery, ids)
        progress("  PqIndex re-rank sweep over all queries ...")
        out["pq_sweep"] = pq_sweep(methods["pq"].handle, data, gt_id, near_tie, args.rerank_sweep)
        pq_default_row = next(r for r in out["pq_sweep"] if r["default"])

    # HNSW: tune (first size) or build the chosen configuration.
    configs = [] if "hnsw" not in args.methods else args.hnsw_configs if hnsw_choice is None else [hnsw_choice]
    chunk = args.hnsw_chunk or max(10_000, n // 50)
    tuning: list[dict[str, Any]] = []
    best: tuple[float, HnswConfig, HnswIndex, dict[str, Any], dict[str, Any]] | None = None
    for cfg in configs:
        progress(f"  HNSW {cfg.label}: building ...")
        idx, build = build_hnsw(gallery, ids, cfg, chunk, args.hnsw_build_limit_s)
        entry: dict[str, Any] = {"config": dataclasses.asdict(cfg), "label": cfg.label, "build": build}
        if idx is None:
            tuning.append(entry)
            continue
        entry["sweep"] = hnsw_sweep(idx, data, gt_id, near_tie, args.ef_sweep, args.recall_target, args.full_sweep)
        chosen = pick_ef(entry["sweep"], args.recall_target)
        entry["chosen_expansion_search"] = chosen["expansion_search"] if chosen else None
        tuning.append(entry)
        # Rank: reaches the target first, then shortest build; otherwise best recall.
        key = build["seconds"] if chosen else 1e12 - max(r["recall_at_1"] for r in entry["sweep"])
        if best is None or key < best[0]:
            if best is not None:
                del best
                gc.collect()
            best = (key, cfg, idx, build, chosen or max(entry["sweep"], key=lambda r: r["recall_at_1"]))
        else:
            del idx
            gc.collect()
    out["hnsw_tuning"] = tuning
    chosen_cfg: HnswConfig | None = None
    if best is not None:
        _, chosen_cfg, hidx, hbuild, ef_row = best
        set_expansion_search(hidx, int(ef_row["expansion_search"]))
        methods["hnsw"] = Built(f"HnswIndex {chosen_cfg.label} ef_search={ef_row['expansion_search']}",
                                hnsw_search_fn(hidx), hidx, hbuild)
        out["hnsw_chosen"] = {"config": dataclasses.asdict(chosen_cfg), "expansion_search": ef_row["expansion_search"],
                              "reaches_target": ef_row["recall_at_1"] >= args.recall_target}
    else:
        out["hnsw_chosen"] = None
    best = None

    # Timing rounds: forward then reverse method order, on the even / odd queries.
    progress("  timing single queries (two rounds) ...")
    per_round: dict[str, list[dict[str, Any]]] = {k: [] for k in methods}
    names = list(methods)
    half_cap = max(1, args.timed_queries // 2)
    for rnd, order_names in enumerate((names, names[::-1])):
        qorder = np.arange(rnd, queries.shape[0], 2, dtype=np.int64)[:half_cap]
        for key in order_names:
            m = methods[key]
            res = time_queries(m.search, queries, qorder, args.round_budget_s, args.min_timed, args.warmup)
            per_round[key].append(res)
            lat = latency_summary(res["wall_ms"], res["cpu_ms"])
            progress(f"    round {rnd + 1} {m.name}: n={lat['n']} p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms "
                     f"(others used {res['load']['other_cores']:.2f} cores)")

    results: dict[str, Any] = {}
    for key, m in methods.items():
        rounds = per_round[key]
        wall = [x for r in rounds for x in r["wall_ms"]]
        cpu = [x for r in rounds for x in r["cpu_ms"]]
        answers = {k: v for r in rounds for k, v in r["answers"].items()}
        r_p50 = [latency_summary(r["wall_ms"], r["cpu_ms"]).get("p50", float("nan")) for r in rounds]
        results[key] = {
            "name": m.name,
            "build": m.build,
            "latency_ms": latency_summary(wall, cpu),
            "round_p50_ms": r_p50,
            "round_other_cores": [r["load"]["other_cores"] for r in rounds],
            "recall": recall_of(answers, gt_id, near_tie),
        }
    if "pq" in methods:
        results["pq"]["remove_one_ms"] = time_pq_removals(methods["pq"].handle, gallery, n)
    # Recall of the approximate indexes' settings over all queries comes from their sweep rows.
    if "hnsw" in methods:
        results["hnsw"]["recall_all_queries"] = {k: ef_row[k] for k in ("n", "recall_at_1", "misses", "misses_near_tie")}
    if "pq" in methods and pq_default_row is not None:
        results["pq"]["recall_all_queries"] = {
            k: pq_default_row[k] for k in ("n", "recall_at_1", "misses", "misses_near_tie")
        }
    methods.clear()
    gc.collect()

    # (e) per-row Python loop on a few queries.
    if args.loop_queries > 0 and "python_loop" in args.methods:
        progress(f"  per-row Python loop on {args.loop_queries} queries ...")
        rows, build = measure_build("python row list", lambda: list(gallery), lambda r: len(r) * gallery.shape[1] * 4)
        res = time_queries(lambda q: deepface_style_search(rows, q), queries, np.arange(args.loop_queries, dtype=np.int64),
                           budget_s=float("inf"), min_n=0, warmup=0)
        results["python_loop"] = {
            "name": "per-row Python loop (deepface-style)",
            "build": build,
            "latency_ms": latency_summary(res["wall_ms"], res["cpu_ms"]),
            "round_p50_ms": [],
            "round_other_cores": [res["load"]["other_cores"]],
            "recall": recall_of(res["answers"], gt_id, near_tie),
        }
        lat = results["python_loop"]["latency_ms"]
        progress(f"    python loop: p50 {lat['p50']:.0f} ms over {lat['n']} queries")
        del rows
        gc.collect()
    out["methods"] = results
    out["loadavg_at_end"] = loadavg()
    return out, chosen_cfg


# -- report ---------------------------------------------------------------------------------------------------


def _f(x: Any) -> float:
    """Float or NaN (for table cells)."""
    return float(x) if isinstance(x, (int, float)) and x is not None else float("nan")


def print_size(res: dict[str, Any]) -> None:
    """Main table, HNSW tuning and noise for one size."""
    n = res["size"]
    headers = ["method", "build s", "RSS +MB", "peak +MB", "index MB", "timed", "p50 ms", "p99 ms", "min ms", "cpu p50 ms",
               "recall@1", "round p50s ms", "others' cores"]
    rows = []
    for m in res["methods"].values():
        b, lat, rec = m["build"], m["latency_ms"], m.get("recall_all_queries", m["recall"])
        rows.append([
            m["name"], _f(b["seconds"]), _f(b["rss_delta_mb"]), _f(b["peak_rss_delta_mb"]), _f(b["index_mb"]), lat.get("n", 0),
            _f(lat.get("p50")), _f(lat.get("p99")), _f(lat.get("min")), _f(lat.get("cpu_p50")),
            f"{rec['recall_at_1'] * 100:.2f} % ({rec['n']})",
            " / ".join(f"{p:.2f}" for p in m["round_p50_ms"]) or "-",
            " / ".join(f"{c:.2f}" for c in m["round_other_cores"]),
        ])
    print_table(headers, rows, title=f"Gallery of {n:,} templates, top-1, batch 1")
    gt = res["ground_truth"]
    print(f"ground truth: exact NN is the query's source for {gt['nn_is_query_source'] * 100:.1f} % of queries; "
          f"median top1-top2 gap {gt['top1_minus_top2']['p50']:.3f}; near-ties (< {NEAR_TIE}) {gt['near_ties']}")
    trows = []
    for t in res["hnsw_tuning"]:
        b = t["build"]
        if "sweep" not in t:
            trows.append([t["label"], _f(b["seconds"]), _f(b["index_mb"]), "-", f"STOPPED at {b['aborted_at']:,}", "-", "-", "-"])
            continue
        for r in t["sweep"]:
            mark = " <- chosen" if r["expansion_search"] == t.get("chosen_expansion_search") else ""
            parts = [r.get(f"recall_at_1_{k}_queries") for k in ("real", "bulk")]
            trows.append([t["label"], _f(b["seconds"]), _f(b["index_mb"]), r["expansion_search"],
                          f"{r['recall_at_1'] * 100:.2f} %{mark}",
                          " / ".join("-" if x is None else f"{x * 100:.2f}" for x in parts), _f(r["p50"]), _f(r["p99"])])
    if trows:
        print_table(["HNSW config", "build s", "index MB", "ef_search", "recall@1 (all queries)", "real / bulk queries %",
                     "p50 ms", "p99 ms"], trows, title=f"HnswIndex settings at {n:,}")
    prows = [[r["rerank"], f"{r['recall_at_1'] * 100:.2f} %" + (" <- default" if r["default"] else ""),
              " / ".join("-" if r.get(f"recall_at_1_{k}_queries") is None else f"{r[f'recall_at_1_{k}_queries'] * 100:.2f}"
                         for k in ("real", "bulk")), _f(r["p50"]), _f(r["p99"])] for r in res.get("pq_sweep", [])]
    rm = res["methods"].get("pq", {}).get("remove_one_ms")
    if rm:
        print(f"PqIndex: removing one id (row zeroed, code dropped) takes {rm['median']:.1f} ms median, "
              f"{rm['max']:.1f} ms max over {int(rm['n'])} ids spread over the index")
    if prows:
        print_table(["PqIndex rerank", "recall@1 (all queries)", "real / bulk queries %", "p50 ms", "p99 ms"], prows,
                    title=f"PqIndex re-rank depth at {n:,}")
    for t in res["hnsw_tuning"]:
        curve = t["build"].get("rate_curve") or []
        if curve:
            pts = ", ".join(f"{c['size_after'] // 1000}k: {c['vectors_per_s']:,.0f}" for c in curve)
            print(f"HNSW build rate (vectors/s, 2 cores) {t['label']}: {pts}")
        if "aborted_at" in t["build"]:
            b = t["build"]
            fit = b.get("projected_seconds_power_law")
            print(f"  {t['label']}: build STOPPED at {b['aborted_at']:,} vectors after {b['seconds']:.0f} s; full build would "
                  f"take >= {b['projected_seconds_lower_bound']:.0f} s at the last chunk's rate"
                  + (f", ~{fit:.0f} s ({fit / 3600:.1f} h) extrapolating the falling rate (power-law fit)" if fit else ""))


def _no_hnsw_why(res: dict[str, Any]) -> str:
    """Why no HNSW index was timed at this size."""
    why = "no HNSW index could be built at 1M within --hnsw-build-limit-s"
    for t in res.get("hnsw_tuning", []):
        b = t["build"]
        if "aborted_at" in b:
            fit = b.get("projected_seconds_power_law")
            why = (f"no HNSW index at 1M: {t['label']} build stopped at {b['aborted_at']:,} vectors after "
                   f"{b['seconds']:.0f} s; full build >= {b['projected_seconds_lower_bound']:.0f} s at the last chunk's rate"
                   + (f", ~{fit / 3600:.1f} h extrapolated" if fit else ""))
    return why


def evaluate_targets(by_size: dict[int, dict[str, Any]], target: float) -> dict[str, Any]:
    """PASS/FAIL against the 1M targets (n/a when 1M was not run)."""
    out: dict[str, Any] = {}
    res = by_size.get(TARGET_SIZE)
    if res is None:
        return {k: "n/a (1,000,000 not in --sizes)" for k in ("approximate", "approximate_hnsw", "exact")}
    goal = f"p50 <= {APPROX_P50_TARGET_MS} ms at recall@1 >= {target * 100:.1f} %"
    for key, label in (("pq", "approximate"), ("hnsw", "approximate_hnsw")):
        m = res["methods"].get(key)
        if key not in res.get("methods_requested", []):
            out[label] = f"n/a ({key} not in --methods)"
        elif m is None:
            out[label] = {"verdict": "FAIL", "why": _no_hnsw_why(res), "target": goal}
        else:
            rec = m["recall_all_queries"]["recall_at_1"]
            p50 = m["latency_ms"]["p50"]
            ok = rec >= target and p50 <= APPROX_P50_TARGET_MS
            out[label] = {"verdict": "PASS" if ok else "FAIL", "method": m["name"], "p50_ms": p50, "recall_at_1": rec,
                          "target": goal}
    e = res["methods"].get("exact_f32")
    if e is None:
        return out | {"exact": "n/a (exact_f32 not in --methods)"}
    p50 = e["latency_ms"]["p50"]
    out["exact"] = {"verdict": "PASS" if p50 <= EXACT_P50_TARGET_MS else "FAIL", "method": e["name"], "p50_ms": p50,
                    "target": f"p50 <= {EXACT_P50_TARGET_MS} ms"}
    for key in ("exact_f16", "faiss_flat"):
        m = res["methods"].get(key)
        if m:
            out[f"exact_reference_{key}"] = {"method": m["name"], "p50_ms": m["latency_ms"]["p50"],
                                             "would_pass": m["latency_ms"]["p50"] <= EXACT_P50_TARGET_MS}
    return out


# -- main -----------------------------------------------------------------------------------------------------


def _float_pair(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(","))
    if not 0 < lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 < LOW <= HIGH <= 1, got {text!r}")
    return lo, hi


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100_000, 1_000_000],
                    help="comma-separated gallery sizes (default 100000,1000000)")
    ap.add_argument("--dim", type=int, default=128, help="template dimension (default 128, SFace)")
    ap.add_argument("--templates", type=Path, default=None,
                    help="NPZ of real templates (keys: vectors (N,dim) float32, labels optional); generated if absent")
    ap.add_argument("--generated", action="store_true",
                    help="generated clustered templates even when LFW is present (default: real SFace LFW templates)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data folder holding lfw/ (identity counts)")
    ap.add_argument("--intra-cos", type=_float_pair, default=(0.6, 0.8),
                    help="generated data: range of same-identity cosine, LOW,HIGH (default 0.6,0.8)")
    ap.add_argument("--queries", type=int, default=1000, help="number of queries (default 1000)")
    ap.add_argument("--query-cos", type=_float_pair, default=(0.70, 0.90),
                    help="cosine between a query and the member it copies, LOW,HIGH (default 0.70,0.90)")
    ap.add_argument("--bulk-query-fraction", type=float, default=0.2,
                    help="share of queries copying random bulk rows instead of real templates (default 0.2)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / FAISS threads (default 2)")
    ap.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    ap.add_argument("--hnsw-configs", type=lambda s: [HnswConfig.parse(x) for x in s.split(",")],
                    default=[HnswConfig(16, 64, "float16"), HnswConfig(16, 64, "float32")],
                    help="HNSW settings tried at the smallest size, connectivity:expansion_add[:dtype] comma-separated "
                         "(default 16:64:float16,16:64:float32; the library default is 32:128:float32, ~2.5x slower to build)")
    ap.add_argument("--ef-sweep", type=lambda s: [int(x) for x in s.split(",")],
                    default=[16, 32, 48, 64, 96, 128, 192, 256, 384, 512],
                    help="expansion_search values swept (default 16,32,48,64,96,128,192,256,384,512)")
    ap.add_argument("--rerank-sweep", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16, 32, 64, 256],
                    help="PqIndex re-rank depths swept besides the default (default 8,16,32,64,256)")
    ap.add_argument("--full-sweep", action="store_true",
                    help="sweep every value (default: stop one value after the first reaching --recall-target)")
    ap.add_argument("--recall-target", type=float, default=0.995, help="recall@1 the HNSW setting must reach (default 0.995)")
    ap.add_argument("--hnsw-chunk", type=int, default=0, help="vectors per HnswIndex.add call (default size/50, >= 10000)")
    ap.add_argument("--hnsw-build-limit-s", type=float, default=420.0,
                    help="give up an HNSW build after this many seconds, or after a quarter of them once even the current "
                         "rate would overrun them (default 420); the JSON keeps the rate curve and a projection")
    ap.add_argument("--timed-queries", type=int, default=1000, help="most single queries timed per method (default 1000)")
    ap.add_argument("--round-budget-s", type=float, default=20.0,
                    help="time budget per method per timing round (default 20 s); at least --min-timed queries run")
    ap.add_argument("--min-timed", type=int, default=10, help="fewest queries timed per method per round (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed queries before each round (default 3)")
    ap.add_argument("--loop-queries", type=int, default=5, help="queries for the per-row Python loop (default 5; 0 skips)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=default_out("search"),
                    help="JSON output (default benchmarks/results/search.json)")
    args = ap.parse_args(argv)
    if not args.sizes or min(args.sizes) <= 0:
        ap.error("--sizes must be positive")
    if args.queries < 2:
        ap.error("--queries must be >= 2")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown --methods {sorted(unknown)} (choose from {', '.join(METHODS)})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        raise SystemExit("faiss-cpu is needed for the baseline (pip install faiss-cpu)") from None
    import usearch

    env = environment()
    env.update({"faiss": faiss.__version__, "usearch": usearch.__version__, "threads": args.threads})
    progress(f"load average at start: {env.get('loadavg_at_start')} on {env.get('usable_cpus', os.cpu_count())} usable CPUs")
    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    with threadpool_limits(limits=args.threads):
        data = build_dataset(args, rng)
        progress(f"real templates: {data.info['real_source']}")
        by_size: dict[int, dict[str, Any]] = {}
        choice: HnswConfig | None = None
        for n in sorted(set(args.sizes)):
            res, picked = run_size(args, data, n, choice)
            choice = choice or picked
            by_size[n] = res
    total_s = time.perf_counter() - t_start

    print(f"\nReal templates: {data.info['real_source']}")
    stats = data.info.get("real_pair_cos", {})
    if stats:
        s, d = stats.get("same_identity_cos", {}), stats.get("different_identity_cos", {})
        print(f"  same-identity cos mean {s.get('mean', float('nan')):.3f} (p5 {s.get('p5', float('nan')):.3f}, "
              f"p95 {s.get('p95', float('nan')):.3f}); different-identity cos mean {d.get('mean', float('nan')):.3f} "
              f"(p95 {d.get('p95', float('nan')):.3f})")
    print(f"Queries: {data.info['queries']}; bulk: {data.info['bulk']}; threads {args.threads}")
    for res in by_size.values():
        print_size(res)
    targets = evaluate_targets(by_size, args.recall_target)
    print("\nTargets (at 1,000,000):")
    for key, val in targets.items():
        if isinstance(val, dict) and "verdict" in val:
            if "why" in val:
                detail = val["why"]
            else:
                detail = f"{val['method']}: p50 {val['p50_ms']:.2f} ms"
                if "recall_at_1" in val:
                    detail += f", recall@1 {val['recall_at_1'] * 100:.2f} %"
            print(f"  {key:<16} {val['verdict']:<5} {detail}  (target {val['target']})")
        elif isinstance(val, dict):
            print(f"  {'':<16} info  {val['method']}: p50 {val['p50_ms']:.2f} ms "
                  f"({'would pass' if val['would_pass'] else 'would fail'} the exact target)")
        else:
            print(f"  {key:<16} {val}")
    print(f"\nTotal run time {total_s / 60:.1f} min; load average at end {loadavg()} "
          f"(others' cores = average CPU cores used by other processes while that method was timed)")
    write_json(args.out, {
        "benchmark": "search",
        "environment": env,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "hnsw_configs"}
        | {"hnsw_configs": [dataclasses.asdict(c) for c in args.hnsw_configs]},
        "data": data.info,
        "sizes": {str(n): r for n, r in by_size.items()},
        "targets": targets,
        "total_seconds": total_s,
    })


if __name__ == "__main__":
    sys.exit(main())
