"""Bulk enrolment on Ray vs the local ``enroll-dir``: same samples, throughput, crash safety, two nodes.

Every run is the real command (``faceatlas enroll-dir ... [--ray ...]``) in a subprocess on a folder of symlinks to
the first N LFW people (0 = all 5,749 people, 13,233 images). Galleries are compared by image hash: the same set of
source images enrolled, one sample per hash, and bit-identical templates.

    python benchmarks/ray_enroll.py compare --people 0 --actors 2,1      # local vs Ray, scaling 1 -> 2 actors
    python benchmarks/ray_enroll.py fault --people 150 --trials 10        # kill one Ray worker by pid mid-run
    python benchmarks/ray_enroll.py resume --people 150                   # kill the driver, run again
    python benchmarks/ray_enroll.py multinode --people 150                # ray start --head + a second node
    python benchmarks/ray_enroll.py milvus --milvus 127.0.0.1:19530       # into a Milvus server gallery
    python benchmarks/ray_enroll.py milvus-memory --milvus-pid PID        # server memory per template, HNSW/FLAT

Results go to benchmarks/results/ray_enroll_<mode>.json.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_data_dir, default_models_dir, default_out, environment, progress, write_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def people_folder(dest: Path, n: int) -> tuple[Path, int]:
    """A folder of symlinks to the first ``n`` LFW people (all when 0) and its image count."""
    src = default_data_dir() / "lfw" / "images"
    people = sorted(p for p in src.iterdir() if p.is_dir())
    people = people[:n] if n else people
    dest.mkdir(parents=True, exist_ok=True)
    images = 0
    for p in people:
        link = dest / p.name
        if not link.exists():
            link.symlink_to(p)
        images += sum(1 for _ in p.iterdir())
    return dest, images


def env() -> dict[str, str]:
    """The environment for the commands (models from the shared folder, one ONNX thread per worker)."""
    out = dict(os.environ)
    out.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    return out


#: --multi-face policy for every run (set from the command line; "largest" enrols 13,184 of LFW's 13,233 images).
MULTI_FACE = ["largest"]


def enrol_cmd(folder: Path, gallery: Path | str, ray: str | None, actors: int = 0) -> list[str]:
    """The enroll-dir command line."""
    cmd = [sys.executable, "-m", "faceatlas", "enroll-dir", str(folder), "--collection", "lfw", "--gallery",
           str(gallery), "--multi-face", MULTI_FACE[0]]
    if ray:
        cmd += ["--ray", ray, "--ray-actors", str(actors)]
    return cmd


def run(cmd: list[str]) -> tuple[float, str]:
    """Run a command to completion; wall seconds and its last output line (the summary)."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, summary_line(done.stdout.splitlines())


def summary_line(lines: list[str]) -> str:
    """The closing summary of enroll-dir among its output lines (Ray may print retry notes on stdout too)."""
    found = [ln.strip() for ln in lines if re.match(r"\d+ people, \d+ images", ln)]
    return found[-1] if found else ""


def samples(gallery: Path | str) -> list[tuple[str, str, np.ndarray]]:
    """Every sample of collection ``lfw`` as (person, image hash, template)."""
    from faceatlas.gallery import Gallery

    g = Gallery.open(str(gallery))
    out = []
    try:
        offset = 0
        while True:
            people = g.list_persons("lfw", limit=1000, offset=offset)
            for person in people:
                for s in g.list_samples("lfw", person.id):
                    full = g.get_sample("lfw", s.id, include_template=True)
                    out.append((person.external_id, str(s.image_sha256), np.asarray(full.template.vector)))
            if len(people) < 1000:
                return out
            offset += 1000
    finally:
        g.close()


def compare(ref: list[tuple[str, str, np.ndarray]], got: list[tuple[str, str, np.ndarray]]) -> dict[str, Any]:
    """Same images (by hash, per person), duplicates, losses, and whether the templates are bit-identical."""
    r = {(p, h): v for p, h, v in ref}
    g: dict[tuple[str, str], np.ndarray] = {}
    dup = 0
    for p, h, v in got:
        dup += (p, h) in g
        g[(p, h)] = v
    same = [k for k in r if k in g]
    return {"reference": len(r), "got": len(got), "duplicates": dup, "lost": len(set(r) - set(g)),
            "extra": len(set(g) - set(r)),
            "identical_templates": all(np.array_equal(r[k], g[k]) for k in same)}


def cmd_compare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Local enroll-dir vs --ray local with each actor count, on the same folder."""
    folder, n_images = people_folder(work / "people", args.people)
    rows: dict[str, Any] = {"people": args.people or "all", "images": n_images}
    progress(f"local enroll-dir on {n_images} images")
    sec, summary = run(enrol_cmd(folder, work / "local.db", None))
    ref = samples(work / "local.db")
    rows["local"] = {"seconds": round(sec, 1), "images_per_s": round(n_images / sec, 1), "faces": len(ref),
                     "summary": summary}
    progress(f"local: {rows['local']}")
    for n in [int(a) for a in args.actors.split(",")]:
        db = work / f"ray{n}.db"
        sec, summary = run(enrol_cmd(folder, db, "local", n))
        got = samples(db)
        rows[f"ray_{n}"] = {"seconds": round(sec, 1), "images_per_s": round(n_images / sec, 1),
                            "ratio_vs_local": round(rows["local"]["seconds"] / sec, 3), "summary": summary,
                            **compare(ref, got)}
        progress(f"ray {n}: {rows[f'ray_{n}']}")
    return rows


def descendants(root: int) -> list[int]:
    """Process ids below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    """A process's command line ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(root: int) -> list[int]:
    """Pids of this run's Ray photo-worker actors (busy or idle)."""
    return [p for p in descendants(root) if "_RayPhotoWorker" in cmdline(p)]


def cmd_fault(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Kill one Ray worker by pid mid-run, ``trials`` times: no duplicate and no lost sample."""
    folder, n_images = people_folder(work / "people", args.people)
    run(enrol_cmd(folder, work / "ref.db", None))
    ref = samples(work / "ref.db")
    trials = []
    for t in range(args.trials):
        db = work / f"fault{t}.db"
        err_path = work / f"fault{t}.err"
        with err_path.open("w") as err_file:
            proc = subprocess.Popen(enrol_cmd(folder, db, "local", 2), env=env(), stdout=subprocess.PIPE,
                                    stderr=err_file, text=True, start_new_session=True)
        out: list[str] = []
        reader = threading.Thread(target=out.extend, args=(proc.stdout or [],), daemon=True)
        reader.start()
        while len(out) < 3 and proc.poll() is None:  # wait for the first committed people
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, args.kill_window))
        pids = worker_pids(proc.pid)
        victim = random.choice(pids) if pids else None
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
        people_at_kill = sum(1 for ln in list(out) if re.match(r"\S+: \d+ enrolled", ln))
        proc.wait()
        reader.join()
        got = samples(db)
        row = {"trial": t, "killed_pid": victim, "people_committed_at_kill": people_at_kill,
               "retry_noted": any("will be retried" in ln or "restarted" in ln for ln in out), "rc": proc.returncode,
               "summary": summary_line(out), **compare(ref, got)}
        if proc.returncode not in (0, 1):
            row["stderr"] = err_path.read_text()[-1000:]
        progress(str(row))
        trials.append(row)
    ok = all(r["killed_pid"] and r["duplicates"] == 0 and r["lost"] == 0 and r["extra"] == 0 for r in trials)
    mid = sum(0 < r["people_committed_at_kill"] < args.people for r in trials)
    return {"people": args.people, "images": n_images, "faces": len(ref), "trials": trials, "all_ok": ok,
            "killed_mid_run": mid}


def cmd_resume(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Kill the whole Ray run (driver and workers) mid-way, run it again: the second run does the rest only."""
    folder, n_images = people_folder(work / "people", args.people)
    run(enrol_cmd(folder, work / "ref.db", None))
    ref = samples(work / "ref.db")
    db = work / "resume.db"
    proc = subprocess.Popen(enrol_cmd(folder, db, "local", 2), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: list[str] = []
    for line in proc.stdout or []:
        lines.append(line)
        if len(lines) >= args.people // 2:
            break
    tree = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:  # Ray's own processes, should any have left the process group
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()
    first = samples(db)
    _, summary = run(enrol_cmd(folder, db, "local", 2))
    skipped = re.search(r"(\d+) already enrolled", summary)
    final = samples(db)
    return {"people": args.people, "images": n_images, "after_interrupted_run": len(first),
            "second_run_summary": summary, "second_run_skipped": int(skipped.group(1)) if skipped else 0,
            "skipped_equals_committed": (int(skipped.group(1)) if skipped else 0) == len(first),
            **compare(ref, final)}


def cmd_multinode(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A Ray head and a second node (``ray start --address``), one CPU each, on this machine."""
    folder, n_images = people_folder(work / "people", args.people)
    run(enrol_cmd(folder, work / "ref.db", None))
    ref = samples(work / "ref.db")
    # Ray 2.5x: a head started where ~/.ray/auth_token exists expects that token from joining nodes and drivers.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    port = str(args.port)
    cluster_env = env()
    started = []
    try:
        for extra in (["--head", "--port", port, "--include-dashboard", "false", "--temp-dir", str(tmp)],
                      ["--address", f"127.0.0.1:{port}"]):
            subprocess.run([ray_bin, "start", "--num-cpus", "1", "--disable-usage-stats", *extra], env=cluster_env,
                           check=True, capture_output=True, text=True)
            started.append(extra[0])
        sec, summary = run(enrol_cmd(folder, work / "multi.db", f"127.0.0.1:{port}", 0))
        nodes = re.search(r"images per node: ([^)]*)", summary)
        return {"people": args.people, "images": n_images, "seconds": round(sec, 1), "summary": summary,
                "nodes": nodes.group(1) if nodes else "", **compare(ref, samples(work / "multi.db"))}
    finally:
        # Stop only the processes of this cluster (by pid: those whose command line names its temp folder);
        # gcs_server ignores SIGTERM once its raylets are gone, hence the SIGKILL round.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for d in Path("/proc").iterdir():
                if d.name.isdigit() and str(tmp) in cmdline(int(d.name)) and int(d.name) != os.getpid():
                    try:
                        os.kill(int(d.name), sig)
                    except OSError:
                        pass
            time.sleep(2)


def cmd_milvus(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Enrol on Ray into a Milvus *server* gallery; same samples as SQLite, same top-1, deletes visible at once."""
    from faceatlas.gallery import Gallery

    folder, n_images = people_folder(work / "people", args.people)
    run(enrol_cmd(folder, work / "ref.db", None))
    ref = samples(work / "ref.db")
    uri = f"milvus://{args.milvus}?meta={work / 'milvus_meta.sqlite'}"
    sec, summary = run(enrol_cmd(folder, uri, "local", 2))
    got = samples(uri)
    vectors = np.stack([v for _, _, v in ref])
    server, local = Gallery.open(uri), Gallery.open(str(work / "ref.db"))
    try:
        a = [c[0].external_id for c in server.search("lfw", vectors, k=1, model_id="sface")]
        b = [c[0].external_id for c in local.search("lfw", vectors, k=1, model_id="sface")]
        victim = ref[0][0]
        server.delete_person("lfw", victim)
        after = server.search("lfw", vectors[:1], k=1, model_id="sface")[0]
        deleted_visible = not after or after[0].external_id != victim
    finally:
        server.close()
        local.close()
    return {"people": args.people, "images": n_images, "milvus": args.milvus, "seconds": round(sec, 1),
            "summary": summary, **compare(ref, got), "top1_same_as_sqlite": sum(x == y for x, y in zip(a, b, strict=True)),
            "queries": len(a), "delete_visible_at_once": deleted_visible}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cmd_milvus_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Resident memory a Milvus server needs per template, HNSW (M=16) and FLAT, at 128-d and 512-d."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=f"http://{args.milvus}")
    rng = np.random.default_rng(0)
    rows = []
    for dim, n in ((128, args.memory_rows), (512, args.memory_rows // 2)):
        for kind in ("HNSW", "FLAT"):
            name = f"faceatlas_mem_{kind.lower()}_{dim}"
            if client.has_collection(name):
                client.drop_collection(name)
            schema = client.create_schema(auto_id=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            index = client.prepare_index_params()
            params = {"M": 16, "efConstruction": 64} if kind == "HNSW" else {}
            index.add_index(field_name="vector", index_type=kind, metric_type="COSINE", params=params)
            client.create_collection(name, schema=schema, index_params=index)
            client.release_collection(name)
            before = rss_mb(args.milvus_pid)
            t0 = time.perf_counter()
            for start in range(0, n, 10_000):
                vec = rng.standard_normal((min(10_000, n - start), dim), dtype=np.float32)
                vec /= np.linalg.norm(vec, axis=1, keepdims=True)
                client.insert(name, [{"id": start + i, "vector": v} for i, v in enumerate(vec)])
            client.flush(name)
            client.load_collection(name)
            build = time.perf_counter() - t0
            q = rng.standard_normal((50, dim), dtype=np.float32)
            lat = []
            for v in q:
                t = time.perf_counter()
                client.search(name, [v.tolist()], limit=10, search_params={"params": {"ef": 64}} if kind == "HNSW" else {})
                lat.append((time.perf_counter() - t) * 1000)
            after = rss_mb(args.milvus_pid)
            rows.append({"index": kind, "dim": dim, "rows": n, "rss_delta_mib": round(after - before, 1),
                         "gib_per_million": round((after - before) / 1024 * 1e6 / n, 2),
                         "raw_vectors_gib_per_million": round(dim * 4 * 1e6 / 2**30, 2),
                         "insert_flush_load_s": round(build, 1), "search_p50_ms": round(float(np.median(lat)), 2)})
            progress(str(rows[-1]))
            client.drop_collection(name)
    return {"milvus": args.milvus, "rows": rows}


def main() -> None:
    """Parse arguments, run one mode, write its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["compare", "fault", "resume", "multinode", "milvus",
                                            "milvus-memory"])
    ap.add_argument("--people", type=int, default=150, help="first N LFW people (0 = all)")
    ap.add_argument("--actors", default="2,1", help="compare: Ray actor counts to run")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kill-window", type=float, default=3.0, help="fault: seconds after the first commits")
    ap.add_argument("--port", type=int, default=6391)
    ap.add_argument("--milvus", default="127.0.0.1:19530", help="milvus: host:port of a running Milvus server")
    ap.add_argument("--milvus-pid", type=int, default=0, help="milvus-memory: pid of the Milvus server process")
    ap.add_argument("--memory-rows", type=int, default=200_000, help="milvus-memory: 128-d rows (512-d: half)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--multi-face", default="largest", help="enroll-dir --multi-face policy for every run")
    args = ap.parse_args()
    MULTI_FACE[0] = args.multi_face
    work = args.work or Path(tempfile.mkdtemp(prefix="ray_enroll_"))
    fn = {"compare": cmd_compare, "fault": cmd_fault, "resume": cmd_resume, "multinode": cmd_multinode,
          "milvus": cmd_milvus, "milvus-memory": cmd_milvus_memory}[args.mode]
    result = {"mode": args.mode, "environment": environment(), **fn(args, work)}
    write_json(args.out or default_out(f"ray_enroll_{args.mode}"), result)
    progress(f"written {args.out or default_out(f'ray_enroll_{args.mode}')}")


if __name__ == "__main__":
    main()
