"""A Milvus *server* gallery with a million templates: bulk insert, HNSW build, search latency, recall, rank-1, deletes.

Needs a running Milvus 2.3+ server (e.g. ``milvus-server --data DIR`` from the PyPI package ``milvus==2.3.5`` in its
own virtual environment) and LFW under ``<data-dir>/lfw/images``.

Data (all 128-d SFace templates, unit length):

* Real: SFace templates of every LFW image (central face; computed through faceatlas' evaluation pipeline and cached
  in ``<cache>/eval`` like ``benchmarks/search.py``). People with >= 2 found images: their first image (sorted) is
  the enrolled sample, the other images are the probes. People with one image are enrolled as real distractors.
* Synthetic distractors up to ``--n`` samples in all, one per person: a Gaussian is fitted to the templates of the
  single-image LFW people (mean and full 128x128 covariance; none of them is a probe), each distractor is a draw
  ``mean + L z`` (``L`` the covariance's Cholesky factor, ``z`` standard normal, seed ``--seed``) re-normalised to unit
  length. Their cosine statistics against the probes are printed next to those of real other-person templates.

Writes (collection ``--collection`` in ``milvus://HOST:PORT?meta=<work>/meta.sqlite``, opened with ``--index``
(``hnsw``: HNSW with ``--hnsw M:efConstruction:ef``; ``exact``: FLAT)):

1. the first ``--per-person`` real identities one ``Gallery.add_person_with_samples`` call (one transaction) each;
2. everything else through ``Gallery.add_people``, ``--sql-batch`` persons per call: one SQLite transaction, and
   inside it the backend's 1,000-row upserts of templates and centroids (nothing is read back from Milvus);
3. ``flush``, then the wait until the server reports every row indexed (``describe_index``: indexed_rows == total_rows,
   no pending rows) = the index build time, then ``release`` + ``load`` (timed).

Searches: exact ground truth is numpy float32 brute force over the same N vectors. Raw Milvus (samples collection,
Bounded consistency, ``--ef-sweep``, on ``--recall-queries`` random probes): recall@1 / recall@10 of sample ids vs exact
and single-query p50/p99 at k=1 and k=10. faceatlas ``Gallery.search`` (the backend's Session consistency and its
``ef``): single-query p50/p99 at k=1 and k=10, and rank-1 identification of every probe (batched), against exact
rank-1 over the same gallery and over the real LFW persons alone. Deletes: persons are deleted with
``Gallery.delete_person``; the very next faceatlas search and a raw Strong Milvus search with the deleted template
must not return them, and again 5 s later.

    python benchmarks/milvus_scale.py --milvus 127.0.0.1:19530 --keep          # 1,000,000 templates (~65 min, 2 busy cores)
    python benchmarks/milvus_scale.py --milvus 127.0.0.1:19530 --resume --ef-sweep 512,1024   # measure again (no deletes)
    python benchmarks/milvus_scale.py --milvus 127.0.0.1:19530 --n 50000 --latency-queries 50   # smoke run
Results: ``benchmarks/results/milvus_scale.json`` (``--out``), a table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import default_data_dir, default_models_dir, default_out, environment, print_table, progress, write_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
T0 = time.monotonic()


def say(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    progress(f"[{time.monotonic() - T0:6.0f} s] {message}")


@dataclass(frozen=True)
class LfwSplit:
    """Real LFW templates split into enrolled identities, probes and single-image distractors."""

    names: list[str]  # external id of every enrolled real person (gallery identities first, then singles)
    vectors: F32  # their one enrolled template each, same order
    identities: int  # how many of ``names`` have probes (the first ones)
    probes: F32
    probe_person: I64  # index into ``names`` of each probe's person
    singles: F32  # templates of single-image people (also the last rows of ``vectors``)


# -- data ------------------------------------------------------------------------------------------------------


def lfw_split(images: Path, cache: Path) -> LfwSplit:
    """SFace templates of every LFW image (cached), split into gallery identities, probes and singles."""
    from faceatlas.evaluate.runner import embed_images
    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore

    keys = sorted(str(p.relative_to(images)) for p in images.glob("*/*.jpg"))
    atlas = FaceAtlas(embedder="sface", store=ModelStore(models_dir=default_models_dir()))
    say(f"SFace templates of {len(keys)} LFW images (cache {cache}) ...")
    ts = embed_images(atlas, [images / k for k in keys], keys=keys, select="central", cache_dir=cache)
    by_person: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if ts.found[i]:
            by_person.setdefault(k.split("/")[0], []).append(i)
    multi = [p for p in sorted(by_person) if len(by_person[p]) >= 2]
    single = [p for p in sorted(by_person) if len(by_person[p]) == 1]
    probes = [(j, r) for j, p in enumerate(multi) for r in by_person[p][1:]]
    vectors = ts.vectors[[by_person[p][0] for p in multi + single]].astype(np.float32)
    return LfwSplit(
        names=multi + single,
        vectors=vectors,
        identities=len(multi),
        probes=ts.vectors[[r for _, r in probes]].astype(np.float32),
        probe_person=np.array([j for j, _ in probes], np.int64),
        singles=vectors[len(multi) :],
    )


def synthetic_distractors(fit: F32, n: int, seed: int, chunk: int = 100_000) -> Iterator[F32]:
    """Unit vectors drawn from a Gaussian fitted to ``fit`` (mean, full covariance), in chunks."""
    mean = fit.astype(np.float64).mean(axis=0)
    cov = np.cov(fit.astype(np.float64), rowvar=False) + 1e-6 * np.eye(fit.shape[1])
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        z = rng.standard_normal((min(chunk, n - start), fit.shape[1]))
        x = (mean + z @ chol.T).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine_stats(a: F32, b: F32) -> dict[str, float]:
    """Mean, standard deviation, p99 and max of all cosines between rows of ``a`` and ``b``."""
    s = (a @ b.T).ravel()
    return {"mean": round(float(s.mean()), 4), "std": round(float(s.std()), 4),
            "p99": round(float(np.percentile(s, 99)), 4), "max": round(float(s.max()), 4)}


def exact_topk(base: F32, queries: F32, k: int, block: int = 128) -> tuple[I64, F32]:
    """Exact top-``k`` rows of ``base`` by inner product for each query (numpy float32, blocked)."""
    idx = np.empty((len(queries), k), np.int64)
    val = np.empty((len(queries), k), np.float32)
    for s in range(0, len(queries), block):
        sims = queries[s : s + block] @ base.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        pv = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-pv, axis=1)
        idx[s : s + block] = np.take_along_axis(part, order, axis=1)
        val[s : s + block] = np.take_along_axis(pv, order, axis=1)
    return idx, val


def pct(ms: list[float]) -> dict[str, float]:
    """p50 / p99 / mean of timings in ms."""
    a = np.asarray(ms)
    return {"n": int(a.size), **{f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 99)},
            "mean_ms": round(float(a.mean()), 2)}


def server_rss_mib() -> float | None:
    """Resident memory of the local ``milvus run standalone`` process, MiB (None if not found)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"milvus\x00run\x00standalone" in (proc / "cmdline").read_bytes():
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            continue
    return None


# -- writes ----------------------------------------------------------------------------------------------------


class BulkLoader:
    """Enrols one-sample persons through ``Gallery.add_people`` (one transaction per call); keeps the raw client."""

    def __init__(self, gallery: Any, collection: str) -> None:
        self.gallery = gallery
        self.client = gallery._backend._client  # for the raw index searches only
        self.cid = gallery.get_collection(collection).id
        self.collection = collection
        self.samples, self.centroids = gallery._backend._names(self.cid)
        self.rows = 0
        self.row_index: I64 | None = None  # enrolment position of each stored sample (None: all, in order)

    def add(self, names: list[str], vectors: F32) -> list[int]:
        """One ``add_people`` call: persons ``names`` with one template each; returns their sample ids."""
        from faceatlas.gallery import NewPerson
        from faceatlas.types import Template

        people = [NewPerson(n, Template(v, "sface")) for n, v in zip(names, vectors, strict=True)]
        added = self.gallery.add_people(self.collection, people, actor="milvus_scale")
        self.rows += len(names)
        return [ids[0] for _, ids in added]


def enrol_public(gallery: Any, collection: str, names: list[str], vectors: F32) -> tuple[list[int], list[float]]:
    """Enrol persons one ``add_person_with_samples`` call each; their sample ids and per-call seconds."""
    from faceatlas.types import Template

    sids: list[int] = []
    took: list[float] = []
    for name, v in zip(names, vectors, strict=True):
        t0 = time.perf_counter()
        _, ids = gallery.add_person_with_samples(collection, name, [Template(v, "sface")])
        took.append(time.perf_counter() - t0)
        sids.extend(ids)
    return sids, took


def wait_indexed(client: Any, name: str, timeout_s: float) -> dict[str, Any]:
    """Poll until every row of ``name`` is in an indexed segment; the last ``describe_index`` answer.

    Rows that compaction has merged into new segments are re-indexed in the background (``pending_index_rows``);
    the old indexed segments serve searches meanwhile, so that wait is not part of the build time.
    """
    t0 = time.perf_counter()
    last = -1
    while True:
        info = client.describe_index(name, "vector")
        done, total, pending = (int(info.get(k, 0)) for k in ("indexed_rows", "total_rows", "pending_index_rows"))
        if done != last:
            say(f"  {name}: {done:,}/{total:,} indexed, {pending:,} pending ({time.perf_counter() - t0:.0f} s)")
            last = done
        if total and done >= total:
            return dict(info)
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(f"index of {name} not built within {timeout_s} s: {info}")
        time.sleep(2.0)


# -- searches --------------------------------------------------------------------------------------------------


def raw_search(client: Any, name: str, q: F32, k: int, ef: int, level: str = "Bounded") -> list[list[int]]:
    """Sample ids of the raw Milvus HNSW search of ``name``."""
    res = client.search(name, data=[row for row in q], limit=k, anns_field="vector", output_fields=["sample_id"],
                        search_params={"metric_type": "COSINE", "params": {"ef": max(ef, k)}},
                        consistency_level=level)
    return [[int(h["sample_id"]) for h in row] for row in res]


def raw_sweep(client: Any, name: str, q: F32, gt: I64, ids: I64, efs: list[int], n_lat: int) -> list[dict[str, Any]]:
    """Recall@1/@10 vs exact and single-query latency of the raw HNSW search, per ``ef``."""
    rows = []
    for ef in efs:
        got: list[list[int]] = []
        for s in range(0, len(q), 200):
            got += raw_search(client, name, q[s : s + 200], 10, ef)
        top1 = np.array([g[0] if g else -1 for g in got])
        r1 = float(np.mean(top1 == ids[gt[:, 0]]))
        r10 = float(np.mean([len(set(g) & set(ids[gt[i]].tolist())) / 10 for i, g in enumerate(got)]))
        lat: dict[str, Any] = {}
        for k in (1, 10):
            ms = []
            for v in q[:n_lat]:
                t0 = time.perf_counter()
                raw_search(client, name, v[None], k, ef)
                ms.append((time.perf_counter() - t0) * 1000)
            lat[f"k{k}"] = pct(ms)
        rows.append({"ef": ef, "recall_at_1": round(r1, 5), "recall_at_10": round(r10, 5), **lat})
        say(f"  raw ef={ef}: recall@1 {r1:.4f} recall@10 {r10:.4f} p50 k=1 {lat['k1']['p50_ms']} ms")
    return rows


def gallery_latency(gallery: Any, collection: str, q: F32, n: int) -> dict[str, Any]:
    """Single-query ``Gallery.search`` p50/p99 at k=1 and k=10."""
    out = {}
    for k in (1, 10):
        ms = []
        for v in q[:n]:
            t0 = time.perf_counter()
            gallery.search(collection, v, k=k, model_id="sface")
            ms.append((time.perf_counter() - t0) * 1000)
        out[f"k{k}"] = pct(ms)
    return out


def gallery_rank1(gallery: Any, collection: str, q: F32) -> list[str | None]:
    """Top-1 external id of ``Gallery.search`` for every query (batches of 200)."""
    top: list[str | None] = []
    for s in range(0, len(q), 200):
        for cands in gallery.search(collection, q[s : s + 200], k=1, model_id="sface"):
            top.append(cands[0].external_id if cands else None)
    return top


def check_deletes(gallery: Any, loader: BulkLoader, victims: list[tuple[str, int, F32]]) -> dict[str, Any]:
    """Delete persons one by one; the next faceatlas and raw Strong searches must not return them."""
    q = np.stack([v for _, _, v in victims])
    before = [c[0].external_id if c else None for c in gallery.search(loader.collection, q, k=1, model_id="sface")]
    found_before = sum(b == name for b, (name, _, _) in zip(before, victims, strict=True))
    ms, back_gallery, back_raw = [], 0, 0
    for name, sid, v in victims:
        t0 = time.perf_counter()
        gallery.delete_person(loader.collection, name)
        ms.append((time.perf_counter() - t0) * 1000)
        hits = gallery.search(loader.collection, v, k=10, model_id="sface")[0]
        back_gallery += any(c.external_id == name for c in hits)
        back_raw += sid in raw_search(loader.client, loader.samples, v[None], 10, 512, "Strong")[0]
    return {"persons_deleted": len(victims), "top1_before_delete": found_before, "delete_ms": pct(ms),
            "returned_by_next_gallery_search": back_gallery, "returned_by_next_raw_strong_search": back_raw}


def recheck_deletes(gallery: Any, loader: BulkLoader, victims: list[tuple[str, int, F32]]) -> dict[str, int]:
    """Search the deleted templates again (k=10): faceatlas and raw Strong."""
    q = np.stack([v for _, _, v in victims])
    hits = gallery.search(loader.collection, q, k=10, model_id="sface")
    raw = raw_search(loader.client, loader.samples, q, 10, 512, "Strong")
    names = [n for n, _, _ in victims]
    return {"returned_by_gallery": sum(any(c.external_id == n for c in h) for h, n in zip(hits, names, strict=True)),
            "returned_by_raw": sum(s in r for r, (_, s, _) in zip(raw, victims, strict=True))}


# -- main ------------------------------------------------------------------------------------------------------


def build(args: argparse.Namespace, gallery: Any, data: LfwSplit) -> tuple[BulkLoader, I64, F32, dict[str, Any]]:
    """Enrol the real persons and the distractors; return the loader, sample ids and vectors (same order)."""
    from faceatlas.facade import FaceAtlas
    from faceatlas.models import ModelStore
    from faceatlas.models.manifest import PREPROCESSING_VERSION

    emb = FaceAtlas(embedder="sface", store=ModelStore(models_dir=default_models_dir())).embedder
    gallery.create_collection(args.collection, "sface", emb.model_sha256, emb.dim, PREPROCESSING_VERSION)
    loader = BulkLoader(gallery, args.collection)
    n_pub = min(args.per_person, data.identities)
    say(f"public API: {n_pub} persons, one add_person_with_samples each ...")
    t0 = time.perf_counter()
    pub_ids, took = enrol_public(gallery, args.collection, data.names[:n_pub], data.vectors[:n_pub])
    pub_s = time.perf_counter() - t0
    ids, vecs = [pub_ids], [data.vectors[:n_pub]]
    n_syn = args.n - len(data.names)
    chunks = synthetic_distractors(data.singles, max(n_syn, 0), args.seed)
    pending_names, pending_vecs = data.names[n_pub:], data.vectors[n_pub:]
    syn_done, t_bulk = 0, time.perf_counter()
    say(f"bulk: {len(pending_names)} real + {n_syn:,} synthetic persons, {args.sql_batch:,} per transaction ...")
    while len(pending_names) or syn_done < n_syn:
        while len(pending_names) < args.sql_batch and syn_done < n_syn:
            more = next(chunks)
            pending_names = pending_names + [f"synthetic_{syn_done + i:07d}" for i in range(len(more))]
            pending_vecs = np.concatenate([pending_vecs, more])
            syn_done += len(more)
        take = min(args.sql_batch, len(pending_names))
        sids = loader.add(pending_names[:take], pending_vecs[:take])
        ids.append(sids)
        vecs.append(pending_vecs[:take])
        pending_names, pending_vecs = pending_names[take:], pending_vecs[take:]
        total = n_pub + loader.rows
        if total % 100_000 < take or not len(pending_names):
            el = time.perf_counter() - t_bulk
            say(f"  {total:,} templates, add_people {loader.rows / el:,.0f} persons/s")
    bulk_s = time.perf_counter() - t_bulk
    info = {
        "public_api": {"persons": n_pub, "seconds": round(pub_s, 1), "per_person": pct([t * 1000 for t in took]),
                       "persons_per_s": round(n_pub / pub_s, 2),
                       "projected_hours_for_n": round(args.n * pub_s / max(n_pub, 1) / 3600, 1)},
        "add_people": {"persons": loader.rows, "seconds": round(bulk_s, 1), "persons_per_s": round(loader.rows / bulk_s),
                       "persons_per_call": args.sql_batch,
                       "note": "one sample per person; each also writes its centroid row (1,000-row upserts)"},
        "synthetic": max(n_syn, 0),
    }
    return loader, np.concatenate([np.asarray(i, np.int64) for i in ids]), np.concatenate(vecs), info


def index_and_load(loader: BulkLoader, timeout_s: float) -> dict[str, Any]:
    """Flush both collections, wait for their HNSW indexes, then release and load them (all timed)."""
    c = loader.client
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in (loader.samples, loader.centroids):
        c.flush(name)
    out["flush_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    for name, key in ((loader.samples, "samples"), (loader.centroids, "centroids")):
        info = wait_indexed(c, name, timeout_s)
        out[f"indexed_{key}_after_s"] = round(time.perf_counter() - t1, 1)
        out[f"index_{key}"] = {k: info.get(k) for k in ("index_type", "metric_type", "M", "efConstruction",
                                                       "total_rows", "indexed_rows", "pending_index_rows")}
    out.update(release_load(loader))
    return out


def release_load(loader: BulkLoader) -> dict[str, Any]:
    """Release and load both collections (what a restarted server does), timed; server memory afterwards."""
    c = loader.client
    out: dict[str, Any] = {}
    t2 = time.perf_counter()
    for name in (loader.samples, loader.centroids):
        c.release_collection(name)
        c.load_collection(name)
    out["release_load_s"] = round(time.perf_counter() - t2, 1)
    out["server_rss_mib_after_load"] = server_rss_mib()
    return out


def reopen(args: argparse.Namespace, gallery: Any, data: LfwSplit) -> tuple[BulkLoader, I64, F32, dict[str, Any]]:
    """A gallery built by an earlier run (``--resume``; persons deleted since are left out): sample ids, vectors."""
    loader = BulkLoader(gallery, args.collection)
    with gallery.store._read() as cur:
        rows = cur.execute("SELECT s.id, p.external_id FROM samples s JOIN persons p ON p.id = s.person_id "
                           "WHERE s.collection_id = ? ORDER BY s.id", (loader.cid,)).fetchall()
    expected = {_name_of(i, data, len(data.names)): i for i in range(args.n)}
    loader.row_index = np.array([expected.get(str(r[1]), -1) for r in rows], np.int64)
    if (loader.row_index < 0).any() or (np.diff(loader.row_index) <= 0).any():
        raise SystemExit(f"{args.work / 'meta.sqlite'} does not hold the gallery of --n {args.n} --seed {args.seed}")
    vecs = np.concatenate([data.vectors, *synthetic_distractors(data.singles, args.n - len(data.names), args.seed)])
    infos = {n: loader.client.describe_index(n, "vector") for n in (loader.samples, loader.centroids)}
    state = {n: {k: i.get(k) for k in ("total_rows", "indexed_rows", "pending_index_rows")} for n, i in infos.items()}
    say(f"resumed: {len(rows):,} samples; {state}")
    return loader, np.array([int(r[0]) for r in rows], np.int64), vecs[loader.row_index], {
        "resumed_index_state": state, **release_load(loader)}


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--milvus", default="127.0.0.1:19530", help="host:port of a running Milvus server")
    ap.add_argument("--n", type=int, default=1_000_000, help="templates in the gallery in all")
    ap.add_argument("--collection", default="lfw_scale")
    ap.add_argument("--per-person", type=int, default=300, help="real persons enrolled through the public API")
    ap.add_argument("--sql-batch", type=int, default=10_000, help="persons per add_people call (one transaction)")
    ap.add_argument("--index", choices=("hnsw", "exact"), default="hnsw", help="the gallery's index (exact = FLAT)")
    ap.add_argument("--hnsw", default="16:64:512", help="M:efConstruction:ef of the HNSW index (HnswParams)")
    ap.add_argument("--ef-sweep", default="64,128,256,512,1024", help="raw HNSW ef values (faceatlas uses 512)")
    ap.add_argument("--recall-queries", type=int, default=2_000, help="random probes for the raw sweep's recall")
    ap.add_argument("--latency-queries", type=int, default=300, help="single queries timed per setting")
    ap.add_argument("--deletes", type=int, default=20, help="real and as many synthetic persons to delete")
    ap.add_argument("--index-timeout", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/faceatlas_milvus_scale"))
    ap.add_argument("--cache", type=Path, default=None, help="template cache folder (default: faceatlas' cache/eval)")
    ap.add_argument("--keep", action="store_true", help="keep the collection on the server afterwards")
    ap.add_argument("--resume", action="store_true", help="measure the gallery an earlier (--keep) run left in --work")
    ap.add_argument("--out", type=Path, default=default_out("milvus_scale"))
    return ap.parse_args()


def main() -> None:
    """Build the gallery, measure, print, write the JSON."""
    args = parse_args()
    from faceatlas import config
    from faceatlas.gallery import Gallery, HnswParams

    t_start = time.perf_counter()
    data = lfw_split(default_data_dir() / "lfw" / "images", args.cache or config.cache_dir() / "eval")
    if args.n < len(data.names):
        raise SystemExit(f"--n must be at least the {len(data.names)} real persons")
    others = data.vectors[data.identities :]
    probe_cos = {"probe_vs_real_other_person": cosine_stats(data.probes[:2000], others[:2000]),
                 "probe_vs_synthetic": cosine_stats(data.probes[:2000], next(synthetic_distractors(data.singles, 2000, 99))),
                 "probe_vs_own_enrolled": round(float(np.mean(np.sum(
                     data.probes * data.vectors[data.probe_person], axis=1))), 4)}
    say(f"cosine check: {json.dumps(probe_cos)}")
    args.work.mkdir(parents=True, exist_ok=True)
    meta = args.work / "meta.sqlite"
    for leftover in [] if args.resume else args.work.glob("meta.sqlite*"):
        leftover.unlink()
    m, efc, ef = (int(x) for x in args.hnsw.split(":"))
    hnsw = HnswParams(connectivity=m, expansion_add=efc, expansion_search=ef)
    gallery = Gallery.open(f"milvus://{args.milvus}?meta={meta}", index=args.index, hnsw=hnsw, create=not args.resume)
    result: dict[str, Any] = {"n": args.n, "milvus": args.milvus, "environment": environment(),
                              "real": {"gallery_identities": data.identities, "single_image_people": len(data.singles),
                                       "probes": len(data.probes)},
                              "distractor_method": "Gaussian fitted to single-image LFW templates, re-normalised",
                              "cosine_check": probe_cos, "index": args.index,
                              "hnsw": {"M": m, "efConstruction": efc, "ef_faceatlas": ef}}
    try:
        if args.resume:
            loader, ids, vecs, result["index"] = reopen(args, gallery, data)
        else:
            loader, ids, vecs, result["insert"] = build(args, gallery, data)
            say("flush + HNSW build ...")
            result["index"] = index_and_load(loader, args.index_timeout)
        say(f"index: {result['index']}")
        result["index_info"] = str(gallery.stats().collections)
        say("exact ground truth (numpy) ...")
        t0 = time.perf_counter()
        gt, gt_val = exact_topk(vecs, data.probes, 10)
        result["exact_s"] = round(time.perf_counter() - t0, 1)
        result["near_ties_1e-3"] = int(np.sum(gt_val[:, 0] - gt_val[:, 1] < 1e-3))
        pick = np.random.default_rng(args.seed).permutation(len(data.probes))[: args.recall_queries]
        say(f"raw Milvus sweep ({len(pick)} random probes) ...")
        result["raw_milvus"] = raw_sweep(loader.client, loader.samples, data.probes[pick], gt[pick], ids,
                                         [int(e) for e in args.ef_sweep.split(",")], args.latency_queries)
        say("Gallery.search latency and rank-1 ...")
        result["gallery_search"] = gallery_latency(gallery, args.collection, data.probes[pick], args.latency_queries)
        top = gallery_rank1(gallery, args.collection, data.probes)
        truth = [data.names[j] for j in data.probe_person]
        where = loader.row_index if loader.row_index is not None else np.arange(len(ids))
        exact_owner_name = [_name_of(int(where[g]), data, len(data.names)) for g in gt[:, 0]]
        real_top = np.argmax(data.probes @ data.vectors.T, axis=1)
        result["rank1"] = {
            "gallery_search": round(float(np.mean([a == b for a, b in zip(top, truth, strict=True)])), 5),
            "exact_same_gallery": round(float(np.mean([a == b for a, b in zip(exact_owner_name, truth, strict=True)])), 5),
            "exact_real_lfw_only": round(float(np.mean(real_top == data.probe_person)), 5),
            "gallery_search_equals_exact_top1_person": round(
                float(np.mean([a == b for a, b in zip(top, exact_owner_name, strict=True)])), 5),
        }
        say(f"rank-1: {result['rank1']}")
        n_del = min(args.deletes, data.identities) if loader.row_index is None else 0  # a resumed one may lack them
        victims = [(data.names[i], int(ids[i]), data.vectors[i]) for i in range(n_del)]
        syn_rows = range(len(data.names), len(data.names) + n_del)
        victims += [(f"synthetic_{r - len(data.names):07d}", int(ids[r]), vecs[r]) for r in syn_rows]
        if victims:
            result["deletes"] = check_deletes(gallery, loader, victims)
            time.sleep(5.0)
            result["deletes"]["after_5s"] = recheck_deletes(gallery, loader, victims)
        result["server_rss_mib_end"] = server_rss_mib()
    finally:
        if not args.keep:
            try:
                gallery.delete_collection(args.collection)
            except Exception as exc:  # noqa: BLE001 - report and go on closing
                say(f"could not drop the collection: {exc}")
        gallery.close()
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    report(result)
    write_json(args.out, result)


def _name_of(row: int, data: LfwSplit, n_real: int) -> str:
    """External id of the person owning gallery row ``row`` (rows follow enrolment order)."""
    return data.names[row] if row < n_real else f"synthetic_{row - n_real:07d}"


def report(r: dict[str, Any]) -> None:
    """Print the results table."""
    idx = r["index"]
    rows: list[list[Any]] = []
    if "insert" in r:
        ins = r["insert"]
        rows += [
            ["templates (real + synthetic)", f"{r['n']:,} ({r['n'] - ins['synthetic']:,} + {ins['synthetic']:,})"],
            ["public API enrol, per person p50 / p99", f"{ins['public_api']['per_person']['p50_ms']} / "
                                                       f"{ins['public_api']['per_person']['p99_ms']} ms"],
            ["Gallery.add_people, persons per second",
             f"{ins['add_people']['persons_per_s']:,} ({ins['add_people']['seconds']} s)"],
            ["flush; every row indexed (samples, centroids)", f"{idx['flush_s']} s; {idx['indexed_samples_after_s']} s, "
                                                              f"{idx['indexed_centroids_after_s']} s"],
        ]
    else:
        rows.append(["templates (resumed gallery)", f"{r['n']:,}"])
    rows.append(["release + load", f"{idx['release_load_s']} s, server RSS {idx['server_rss_mib_after_load']} MiB"])
    for row in r["raw_milvus"]:
        kind = "FLAT" if r.get("index") == "exact" else f"HNSW ef={row['ef']}"
        rows.append([f"raw {kind}: recall@1 / @10, p50/p99 k=1, k=10",
                     f"{row['recall_at_1']:.4f} / {row['recall_at_10']:.4f}, {row['k1']['p50_ms']}/"
                     f"{row['k1']['p99_ms']} ms, {row['k10']['p50_ms']}/{row['k10']['p99_ms']} ms"])
    gs = r["gallery_search"]
    rows.append(["Gallery.search p50/p99 k=1, k=10", f"{gs['k1']['p50_ms']}/{gs['k1']['p99_ms']} ms, "
                                                            f"{gs['k10']['p50_ms']}/{gs['k10']['p99_ms']} ms"])
    rk = r["rank1"]
    rows.append(["rank-1: Gallery.search / exact same gallery / exact LFW only",
                 f"{rk['gallery_search']:.4f} / {rk['exact_same_gallery']:.4f} / {rk['exact_real_lfw_only']:.4f}"])
    d = r.get("deletes")
    if d:
        rows.append(["deletes: returned by next search (gallery, raw Strong), after 5 s",
                     f"{d['returned_by_next_gallery_search']}, {d['returned_by_next_raw_strong_search']} of "
                     f"{d['persons_deleted']}; {d['after_5s']}"])
    print_table(["measure", "value"], rows, title=f"Milvus server gallery, {r['n']:,} templates")


if __name__ == "__main__":
    main()
