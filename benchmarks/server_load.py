"""Load test of the REST server on loopback: identify requests against a 10,000-person collection.

Builds a gallery with the Gallery API (real LFW templates for ``--real`` people, random unit vectors for the rest),
starts ``faceatlas serve`` on a free loopback port, and runs a closed-loop asyncio/httpx client with
``--connections`` concurrent connections for ``--duration`` seconds, each sending identify requests (multipart LFW
photos: ~80 % of enrolled people, ~20 % of people not enrolled). Reports sustained requests/s, latency percentiles,
status counts, rank-1 accuracy on the known probes, and the server's RSS (all its processes) sampled every second.

    python benchmarks/server_load.py                      # 150 s run after a 15 s warm-up
    python benchmarks/server_load.py --duration 600       # the 10-minute run
    python benchmarks/server_load.py --workers 2 --concurrency 1

The client runs on the same 2-core machine as the server and takes some of its CPU; numbers are for this machine
and are noisy when other jobs run (the load average at start and end is recorded).
Results go to ``benchmarks/results/server_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, default_models_dir, default_out, environment, print_table, write_json  # noqa: E402

COLLECTION = "load"


def lfw_people(lfw: Path) -> list[tuple[str, list[Path]]]:
    """LFW people with their image paths, sorted by name."""
    out = []
    for d in sorted(lfw.iterdir()):
        if d.is_dir():
            out.append((d.name, sorted(d.glob("*.jpg"))))
    return out


def build_gallery(home: Path, lfw: Path, persons: int, real: int,
                  seed: int) -> tuple[list[tuple[str, Path]], list[Path], dict[str, Any]]:
    """Fill the gallery; return known probes (person, image), unknown probes and build facts."""
    from faceatlas.facade import FaceAtlas
    from faceatlas.gallery import Gallery
    from faceatlas.recognition import Recognizer

    rng = random.Random(seed)
    people = lfw_people(lfw)
    multi = [p for p in people if len(p[1]) >= 2]
    rng.shuffle(multi)
    enrolled = multi[:real]
    enrolled_names = {n for n, _ in enrolled}
    unknown = [imgs[0] for n, imgs in people if n not in enrolled_names][: max(50, real // 4)]
    t0 = time.perf_counter()
    atlas = FaceAtlas()
    gallery = Gallery.open(home / "gallery.db")
    rec = Recognizer(atlas, gallery)
    coll = rec.ensure_collection(COLLECTION)
    dim = coll.contract.dim
    model_id = coll.contract.model_id
    from faceatlas.types import Template

    known_probes: list[tuple[str, Path]] = []
    batch = 32
    real_added = 0
    for i in range(0, len(enrolled), batch):
        chunk = enrolled[i:i + batch]
        faces = atlas.embed_many([imgs[0] for _, imgs in chunk], faces="one", select="central")
        for (name, imgs), found in zip(chunk, faces, strict=True):
            if not found or found[0].template is None:
                continue
            p = gallery.add_person(COLLECTION, name, name=name.replace("_", " "))
            gallery.add_samples(COLLECTION, p.id, found[0].template)
            real_added += 1
            known_probes.extend((name, img) for img in imgs[1:3])
    t_real = time.perf_counter() - t0
    vec_rng = np.random.default_rng(seed)
    synthetic = persons - real_added
    for j in range(synthetic):
        v = vec_rng.standard_normal(dim).astype(np.float32)
        p = gallery.add_person(COLLECTION, f"synthetic-{j:05d}")
        gallery.add_samples(COLLECTION, p.id, Template(v, model_id))
        if j % 2000 == 0:
            print(f"  synthetic people: {j}/{synthetic}", file=sys.stderr, flush=True)
    stats = gallery.get_collection(COLLECTION)
    gallery.close()
    facts = {"persons": stats.persons, "samples": stats.samples, "real_people": real_added, "synthetic_people": synthetic,
             "seconds_real_templates": round(t_real, 1), "seconds_total": round(time.perf_counter() - t0, 1)}
    return known_probes, unknown, facts


class RssSampler:
    """Samples the server's resident memory once a second in a background thread."""

    def __init__(self, server: Any, every: float = 1.0) -> None:
        self.server = server
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, self.server.rss_bytes()))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def load(url: str, key: str, probes: list[tuple[str | None, bytes]], connections: int, warmup: float,
               duration: float, seed: int) -> dict[str, Any]:
    """Closed-loop identify load; latency and outcome of every request after the warm-up."""
    import httpx

    rng = random.Random(seed)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60.0,
                                 limits=limits) as client:

        async def worker(wid: int) -> None:
            local = random.Random(rng.random() + wid)
            while time.perf_counter() < stop_at:
                expected, data = local.choice(probes)
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"/v1/collections/{COLLECTION}/identify",
                                          files={"image": ("p.jpg", data, "image/jpeg")})
                except httpx.HTTPError as exc:
                    if t0 >= measure_from:
                        errors[type(exc).__name__] += 1
                    continue
                t1 = time.perf_counter()
                if t0 < measure_from:
                    continue
                latencies.append((t1 - t0) * 1000.0)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    faces = r.json()["faces"]
                    who = faces[0]["person"] if faces else "<no face>"
                    if expected is None:
                        outcomes["unknown probe: rejected" if who is None else "unknown probe: false accept"] += 1
                    elif who == expected:
                        outcomes["known probe: correct"] += 1
                    elif who is None:
                        outcomes["known probe: missed (below threshold)"] += 1
                    else:
                        outcomes["known probe: wrong person"] += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
    lat = np.asarray(latencies)
    measured = min(duration, time.perf_counter() - measure_from)
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: float("nan"))
    return {
        "requests": int(lat.size), "seconds": round(measured, 1), "requests_per_s": round(lat.size / measured, 2),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": round(float(lat.max()), 1) if lat.size else None,
                       "mean": round(float(lat.mean()), 1) if lat.size else None},
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "outcomes": dict(outcomes), "client_errors": dict(errors),
    }


def main() -> None:
    """Build the gallery, start the server, load it, report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=150.0, help="measured seconds (600 for the 10-minute run)")
    ap.add_argument("--warmup", type=float, default=15.0, help="unmeasured seconds before")
    ap.add_argument("--connections", type=int, default=8, help="concurrent client connections")
    ap.add_argument("--persons", type=int, default=10_000, help="people in the collection")
    ap.add_argument("--real", type=int, default=300, help="of which with real LFW templates")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--concurrency", type=int, default=0, help="images processed at once per server process (0: one per core)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or default_out(f"server_load_w{args.workers}c{args.concurrency or 'auto'}_{int(args.duration)}s")

    os.environ.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    os.environ.setdefault("FACEATLAS_OFFLINE", "1")
    lfw = default_data_dir() / "lfw" / "images"
    if not lfw.is_dir():
        raise SystemExit(f"LFW not found at {lfw}")
    from faceatlas.server.keys import KeyStore
    from faceatlas.server.launcher import ServerProcess

    env_info = environment()
    with tempfile.TemporaryDirectory(prefix="faceatlas-load-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["FACEATLAS_HOME"] = str(home)
        print(f"building a {args.persons}-person gallery…", file=sys.stderr, flush=True)
        known, unknown, facts = build_gallery(home, lfw, args.persons, args.real, args.seed)
        probes: list[tuple[str | None, bytes]] = [(n, p.read_bytes()) for n, p in known]
        n_unknown = max(1, len(probes) // 4)
        probes += [(None, p.read_bytes()) for p in unknown[:n_unknown]]
        _, key = KeyStore(home / "keys.db").create("read", [COLLECTION], name="load")
        server = ServerProcess(home, ["--rate-limit", "0", "--workers", str(args.workers), "--concurrency",
                                      str(args.concurrency), "--max-queue", "256", "--log-level", "warning"])
        t0 = time.perf_counter()
        server.start()
        startup = time.perf_counter() - t0
        try:
            rss_idle = server.rss_bytes()
            print(f"server up in {startup:.1f} s (RSS {rss_idle / 2**20:.0f} MiB); loading for "
                  f"{args.warmup:.0f}+{args.duration:.0f} s with {args.connections} connections…", file=sys.stderr, flush=True)
            with RssSampler(server) as rss:
                result = asyncio.run(load(server.url, key, probes, args.connections, args.warmup, args.duration, args.seed))
            alive = server.alive()
            errors_logged = server.stderr_path.read_text(errors="replace").count("Traceback")
        finally:
            server.stop()
    mib = [b / 2**20 for _, b in rss.samples if b]
    measured = [b / 2**20 for t, b in rss.samples if b and t >= args.warmup]
    rss_out = {
        "idle_after_start_mib": round(rss_idle / 2**20, 1),
        "min_mib": round(min(mib), 1), "max_mib": round(max(mib), 1), "mean_mib": round(float(np.mean(mib)), 1),
        "first_minute_mean_mib": round(float(np.mean(measured[:60])), 1) if measured else None,
        "last_minute_mean_mib": round(float(np.mean(measured[-60:])), 1) if measured else None,
        "samples": len(mib),
    }
    known_n = sum(v for k, v in result["outcomes"].items() if k.startswith("known"))
    unknown_n = sum(v for k, v in result["outcomes"].items() if k.startswith("unknown"))
    summary = {
        "gallery": facts, "server_startup_s": round(startup, 1), "server_alive_after": alive,
        "tracebacks_in_server_log": errors_logged, **result, "rss": rss_out,
        "rank1_known": round(result["outcomes"].get("known probe: correct", 0) / known_n, 4) if known_n else None,
        "unknown_rejected": round(result["outcomes"].get("unknown probe: rejected", 0) / unknown_n, 4) if unknown_n else None,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    print_table(
        ["metric", "value"],
        [["people in collection", facts["persons"]], ["workers × concurrency", f"{args.workers} × {args.concurrency or 'auto'}"],
         ["client connections", args.connections], ["measured seconds", result["seconds"]],
         ["requests", result["requests"]], ["requests/s", result["requests_per_s"]],
         ["p50 ms", result["latency_ms"]["p50"]], ["p90 ms", result["latency_ms"]["p90"]],
         ["p99 ms", result["latency_ms"]["p99"]], ["max ms", result["latency_ms"]["max"]],
         ["non-200", sum(v for k, v in result["status_counts"].items() if k != "200")],
         ["rank-1 on known probes", summary["rank1_known"]], ["unknown probes rejected", summary["unknown_rejected"]],
         ["RSS idle MiB", rss_out["idle_after_start_mib"]], ["RSS max MiB", rss_out["max_mib"]],
         ["RSS first/last minute MiB", f"{rss_out['first_minute_mean_mib']} / {rss_out['last_minute_mean_mib']}"],
         ["load average start/end", f"{env_info.get('loadavg_at_start')} / {summary['loadavg_at_end']}"]],
        title="faceatlas server load: identify against a 10,000-person collection",
    )
    write_json(out, {"benchmark": "server_load", "args": vars(args) | {"out": str(out)}, "environment": env_info,
                     "results": summary, "rss_samples_mib": [[round(t, 1), round(b / 2**20, 1)] for t, b in rss.samples]})


if __name__ == "__main__":
    main()
