"""Wrong-secret flood against the REST server (issue #12, M1) and unauthenticated-upload memory (M4).

M1: starts a real ``faceatlas serve`` on loopback, enrols one person, then measures a legitimate client's identify
latency (one request at a time, keep-alive) in rotating phases: quiet; with ``--attackers`` threads sending
``Authorization: Bearer fak_<real key id>_<43 wrong characters>`` as fast as the server answers; and, as a reference,
the same flood without any key (the cheapest request to refuse), for ``--rounds`` rounds, so that background load on
the machine affects every condition alike. Reports each condition's p50, the ratios (target <= 1.2 for the
wrong-secret flood), the attack rate absorbed and the server's CPU time per attack request. The attackers run on the
same machine as the server: on a small machine their own CPU use slows the legitimate client too, which the no-key
reference shows.

M4: opens ``--uploads`` connections that each send ``POST /v1/detect`` headers without a key declaring a 14 MiB
body, then trickle a little body; reports how much the server's RSS grew (target < 10 MB) and what it answered.

    python benchmarks/auth_flood.py
    python benchmarks/auth_flood.py --rounds 8 --per-phase 10 --rate-limit 20

Results go to ``benchmarks/results/auth_flood.json``. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, default_models_dir, default_out, environment, print_table, write_json  # noqa: E402

MB = 1024 * 1024


def _attacker(port: int, header: bytes, stop: threading.Event, counts: dict[str, int], lock: threading.Lock) -> None:
    """Send wrong-secret requests back to back until ``stop`` (the server closes each one after its 401/429)."""
    request = b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(request)
                data = s.recv(256)
            status = data[9:12].decode("latin-1", "replace") or "none"
        except OSError:
            status = "error"
        with lock:
            counts[status] = counts.get(status, 0) + 1


def _attack_process(port: int, header: bytes, threads: int, stop: Any, results: Any) -> None:
    """An attacker process: ``threads`` threads flooding until ``stop``; puts its status counts on ``results``."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    local_stop = threading.Event()
    pool = [threading.Thread(target=_attacker, args=(port, header, local_stop, counts, lock), daemon=True)
            for _ in range(threads)]
    for t in pool:
        t.start()
    stop.wait()
    local_stop.set()
    for t in pool:
        t.join()
    results.put(counts)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CONDITIONS = ("quiet", "wrong-secret", "no-key")


def flood(url: str, server_pid: int, port: int, admin_key: str, image: bytes, rounds: int, per_phase: int,
          attackers: int, target_id: str | None = None) -> dict[str, Any]:
    """Rotate quiet, wrong-secret-flood and no-key-flood phases of legitimate identify requests; return the numbers.

    The no-key flood is the reference: the cheapest request a server can refuse. A wrong secret for a real key id
    should cost the server no more than that (before the fix it cost a full scrypt run).
    """
    import httpx

    key_id = target_id or admin_key.split("_")[1]
    headers = {"wrong-secret": f"Authorization: Bearer fak_{key_id}_{'A' * 43}".encode(), "no-key": b"X-Probe: 1"}
    latencies: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    counts: dict[str, dict[str, int]] = {c: {} for c in CONDITIONS[1:]}
    cpu: dict[str, float] = {c: 0.0 for c in CONDITIONS[1:]}
    seconds: dict[str, float] = {c: 0.0 for c in CONDITIONS[1:]}
    mp = multiprocessing.get_context("fork")
    quiet_cpu = 0.0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as client:

        def identify() -> float:
            started = time.perf_counter()
            r = client.post("/v1/collections/flood/identify", files={"image": ("p.jpg", image, "image/jpeg")})
            r.raise_for_status()
            return (time.perf_counter() - started) * 1000.0

        for _ in range(3):
            identify()  # warm up
        for rnd in range(rounds):
            order = CONDITIONS[rnd % 3:] + CONDITIONS[:rnd % 3]  # every condition in every position, in turn
            for phase in order:
                stop = mp.Event()
                results: Any = mp.Queue()
                proc = None
                if phase != "quiet":  # its own process: the attackers never hold the legitimate client's GIL
                    proc = mp.Process(target=_attack_process, args=(port, headers[phase], attackers, stop, results),
                                      daemon=True)
                    cpu_start, t_start = _cpu_seconds(server_pid), time.perf_counter()
                    proc.start()
                    time.sleep(0.5)  # let the flood get going
                if phase == "quiet":
                    quiet_cpu_start = _cpu_seconds(server_pid)
                got = [identify() for _ in range(per_phase)]
                if phase == "quiet":
                    quiet_cpu += _cpu_seconds(server_pid) - quiet_cpu_start
                stop.set()
                if proc is not None:
                    got_counts = results.get(timeout=60)
                    proc.join(30)
                    for k, v in got_counts.items():
                        counts[phase][k] = counts[phase].get(k, 0) + v
                    cpu[phase] += _cpu_seconds(server_pid) - cpu_start
                    seconds[phase] += time.perf_counter() - t_start
                latencies[phase].extend(got)
            print(f"  round {rnd + 1}/{rounds}: " + ", ".join(
                f"{c} p50 {statistics.median(latencies[c]):.0f} ms" for c in CONDITIONS), file=sys.stderr, flush=True)
    p50 = {c: statistics.median(v) for c, v in latencies.items()}
    out: dict[str, Any] = {"legit_requests_per_condition": len(latencies["quiet"])}
    for c in CONDITIONS:
        out[f"{c}_p50_ms"] = round(p50[c], 1)
        out[f"{c}_p90_ms"] = round(sorted(latencies[c])[int(0.9 * (len(latencies[c]) - 1))], 1)
    out["ratio_p50"] = round(p50["wrong-secret"] / p50["quiet"], 3)
    out["ratio_p50_no_key_reference"] = round(p50["no-key"] / p50["quiet"], 3)
    out["ratio_wrong_secret_vs_no_key"] = round(p50["wrong-secret"] / p50["no-key"], 3)
    legit_cpu = quiet_cpu / max(1, len(latencies["quiet"]))  # server CPU of one identify, from the quiet phases
    out["server_cpu_ms_per_identify"] = round(legit_cpu * 1000, 2)
    for c in CONDITIONS[1:]:
        n = sum(counts[c].values())
        out[f"{c}_attack_requests"] = n
        out[f"{c}_attack_statuses"] = counts[c]
        out[f"{c}_attack_requests_per_s"] = round(n / seconds[c], 1) if seconds[c] else 0.0
        attack_cpu = max(0.0, cpu[c] - legit_cpu * len(latencies[c]))  # the phase's CPU less its identify work
        out[f"{c}_server_cpu_us_per_attack"] = round(attack_cpu / n * 1e6, 1) if n else None
    return out


def upload_memory(server: Any, uploads: int) -> dict[str, Any]:
    """RSS growth of the server while ``uploads`` unauthenticated 14 MiB uploads are attempted at once."""
    time.sleep(0.5)
    before = server.rss_bytes()
    head = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 14680064\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(uploads)]
    peak = before
    answers: dict[str, int] = {}
    try:
        for s in socks:
            s.sendall(head)
        for _ in range(25):
            for s in socks:
                try:
                    s.sendall(b"\xff" * 4096)
                except OSError:
                    pass
            peak = max(peak, server.rss_bytes())
            time.sleep(0.02)
        for s in socks:
            try:
                status = s.recv(4096)[9:12].decode("latin-1", "replace") or "closed"
            except OSError:
                status = "closed"
            answers[status] = answers.get(status, 0) + 1
    finally:
        for s in socks:
            s.close()
    return {"uploads": uploads, "rss_before_mb": round(before / MB, 1), "rss_peak_mb": round(peak / MB, 1),
            "rss_growth_mb": round((peak - before) / MB, 2), "answers": answers}


def legacy_key(keys_db: Path) -> str:
    """Create a key and store it as older versions did (salted scrypt); return its id."""
    import sqlite3

    from faceatlas.server import keys as keys_mod

    record, token = keys_mod.KeyStore(keys_db).create("read", None, name="legacy target")
    salt = os.urandom(16)
    with sqlite3.connect(keys_db) as conn:
        conn.execute("UPDATE api_keys SET kdf = ?, salt = ?, hash = ? WHERE id = ?",
                     ("scrypt:n=16384,r=8,p=1", salt, keys_mod._hash_secret(token.split("_", 2)[2], salt), record.id))
    return record.id


def main() -> None:
    """Start a server, run both measurements, report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="quiet/flood phase pairs")
    ap.add_argument("--per-phase", type=int, default=8, help="legitimate identify requests per phase")
    ap.add_argument("--attackers", type=int, default=4, help="wrong-secret threads during a flood phase")
    ap.add_argument("--rate-limit", type=float, default=20.0, help="the server's --rate-limit (20: its default)")
    ap.add_argument("--uploads", type=int, default=10, help="unauthenticated 14 MiB uploads for the M4 check")
    ap.add_argument("--legacy", action="store_true",
                    help="flood a key stored the old way (salted scrypt, never used successfully, so never migrated): "
                         "what every key cost before the fix")
    ap.add_argument("--out", type=Path, default=default_out("auth_flood"))
    args = ap.parse_args()

    os.environ.setdefault("FACEATLAS_MODELS", str(default_models_dir()))
    os.environ.setdefault("FACEATLAS_OFFLINE", "1")
    import httpx

    from faceatlas.server.launcher import ServerProcess

    lfw = default_data_dir() / "lfw" / "images"
    enrol = [(lfw / "Colin_Powell" / f"Colin_Powell_{n:04d}.jpg").read_bytes() for n in (1, 2)]
    probe = (lfw / "Colin_Powell" / "Colin_Powell_0003.jpg").read_bytes()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="faceatlas-flood-") as tmp:
        with ServerProcess(Path(tmp) / "home", ["--rate-limit", str(args.rate_limit), "--log-level", "warning"]) as srv:
            assert srv.admin_key
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_key}"}, timeout=120) as c:
                r = c.post("/v1/collections/flood/enroll", data={"person": "colin"},
                           files=[("images", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(enrol)])
                r.raise_for_status()
            target = legacy_key(Path(tmp) / "home" / "keys.db") if args.legacy else None
            m1 = flood(srv.url, srv.pid, srv.port, srv.admin_key, probe, args.rounds, args.per_phase, args.attackers,
                       target)
            m4 = upload_memory(srv, args.uploads)
            alive = srv.alive()
    results = {"m1": m1, "m4": m4, "server_alive_after": alive,
               "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2)}
    print_table(["measure", "value"], [
        ["identify p50, no flood (ms)", m1["quiet_p50_ms"]],
        [f"identify p50, {args.attackers}-thread wrong-secret flood (ms)", m1["wrong-secret_p50_ms"]],
        [f"identify p50, {args.attackers}-thread no-key flood, reference (ms)", m1["no-key_p50_ms"]],
        ["ratio wrong-secret flood / quiet (target <= 1.2)", m1["ratio_p50"]],
        ["ratio no-key flood / quiet (reference)", m1["ratio_p50_no_key_reference"]],
        ["ratio wrong-secret / no-key flood", m1["ratio_wrong_secret_vs_no_key"]],
        ["wrong-secret requests/s absorbed", m1["wrong-secret_attack_requests_per_s"]],
        ["server CPU per wrong-secret request (us, estimate)", m1["wrong-secret_server_cpu_us_per_attack"]],
        ["server CPU per no-key request (us, estimate)", m1["no-key_server_cpu_us_per_attack"]],
        ["wrong-secret statuses", m1["wrong-secret_attack_statuses"]],
        [f"RSS growth, {m4['uploads']} x 14 MiB unauthenticated (MB, target < 10)", m4["rss_growth_mb"]],
        ["their answers", m4["answers"]]], title="auth flood (M1) and unauthenticated uploads (M4)")
    write_json(args.out, {"benchmark": "auth_flood", "args": vars(args) | {"out": str(args.out)},
                          "environment": environment(), "results": results})
    raise SystemExit(0 if m1["ratio_p50"] <= 1.2 and m4["rss_growth_mb"] < 10 and alive else 1)


if __name__ == "__main__":
    main()
