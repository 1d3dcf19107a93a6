"""Privacy audit: run the main jobs as a user would and show every file they write, every address they try to reach,
and onnxruntime's telemetry event count — with faceatlas' defaults and, for comparison, with telemetry allowed.

    python benchmarks/privacy_audit.py                 # full audit (CLI, REST, video, cluster, eval, killed server)
    python benchmarks/privacy_audit.py --jobs cli,rest # a subset
    python benchmarks/privacy_audit.py --netns         # the same inside a network namespace with only loopback

Each job runs in a fresh HOME, TMPDIR and FACEATLAS_HOME with the models present (FACEATLAS_MODELS) and
FACEATLAS_OFFLINE=1, under ``strace -f`` (file and socket calls). Exit status 0 when nothing was written outside
FACEATLAS_HOME and the paths named on the command line, no outbound connection was attempted, no temporary file
is left, and the telemetry store is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import REPO, default_data_dir, default_models_dir

sys.path.insert(0, str(REPO / "tests"))

from support.privacy_jobs import JOBS, Audit, run_audit  # noqa: E402
from support.privacy_trace import is_tempdir_probe, list_files, strace_path  # noqa: E402


def _rel(path: str, audit: Audit) -> str:
    """A path with the sandbox folders written as variables."""
    sb = audit.sandbox
    for root, name in ((sb.fahome, "$FACEATLAS_HOME"), (sb.work, "$WORK"), (sb.tmp, "$TMPDIR"), (sb.home, "$HOME")):
        if path == str(root) or path.startswith(str(root) + "/"):
            return name + path[len(str(root)):]
    return path


def summarize(audit: Audit) -> dict[str, object]:
    """The audit's findings as plain data."""
    trace = audit.trace
    sockets = Counter(f"{s.call} {s.family} {'local' if s.local else 'OUTBOUND'}" for s in trace.sockets)
    per_job = {}
    for run in audit.runs:
        t = run.trace
        per_job[run.job] = {
            "steps": {s.name: s.rc for s in run.steps},
            "written": sorted({_rel(p, audit) for p in t.written if p not in t.removed or os.path.exists(p)}),
            "connect_outbound": [str(s) for s in t.outbound],
        }
    return {
        "telemetry_allowed": audit.allow_telemetry,
        "ort_events_before": audit.ort_before,
        "ort_events_after": audit.ort_after,
        "problems": audit.problems,
        "skipped_jobs": audit.skipped,
        "written_outside": {_rel(p, audit): sorted(c) for p, c in audit.outside().items()},
        "home_changes": audit.home_changes(),
        "tmpdir_changes": audit.tmp_changes(),
        "tempdir_probes": sorted({_rel(p, audit) for p in trace.written
                                  if is_tempdir_probe(p, trace, audit.sandbox.tmp)}),
        "faceatlas_home": list_files(audit.sandbox.fahome),
        "undocumented_in_faceatlas_home": audit.undocumented(),
        "leftovers_with_images": audit.leftovers_with_images(),
        "transient_files": sorted({_rel(p, audit) for p in audit.transient()}),
        "anonymous_temp_files": sorted({_rel(p, audit) for p in trace.anonymous}),
        "socket_calls": dict(sorted(sockets.items())),
        "outbound": [str(s) for s in trace.outbound],
        "traced_calls": trace.calls,
        "jobs": per_job,
    }


def clean(summary: dict[str, object]) -> bool:
    """Whether the run met every privacy claim."""
    return not any(summary[k] for k in ("problems", "written_outside", "home_changes", "tmpdir_changes",
                                        "undocumented_in_faceatlas_home", "leftovers_with_images", "outbound"))


def print_summary(s: dict[str, object], title: str) -> None:
    """Human-readable report."""
    print(f"\n=== {title} ===")
    print(f"onnxruntime telemetry events: {s['ort_events_before']} before, {s['ort_events_after']} after "
          f"(+{int(s['ort_events_after']) - int(s['ort_events_before'])})")  # type: ignore[call-overload]
    jobs = s["jobs"]
    assert isinstance(jobs, dict)
    for job, info in jobs.items():
        print(f"[{job}] exit codes {info['steps']}")
        for path in info["written"]:
            print(f"    wrote {path}")
    for key in ("written_outside", "home_changes", "tmpdir_changes", "undocumented_in_faceatlas_home",
                "leftovers_with_images", "transient_files", "anonymous_temp_files", "outbound", "problems"):
        value = s[key]
        print(f"{key}: {json.dumps(value) if value else 'none'}")
    print(f"socket calls: {json.dumps(s['socket_calls'])} ({s['traced_calls']} traced calls)")
    if s["skipped_jobs"]:
        print(f"skipped jobs: {json.dumps(s['skipped_jobs'])}")
    print(f"files in FACEATLAS_HOME afterwards: {json.dumps(s['faceatlas_home'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    parser.add_argument("--compare-jobs", default="cli,rest",
                        help="jobs re-run with FACEATLAS_ALLOW_TELEMETRY=1 to show what the defaults prevent ('' = skip)")
    parser.add_argument("--netns", action="store_true", help="run inside 'unshare -n' (root): no network but loopback")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox folders")
    parser.add_argument("--json", type=Path, help="also write the findings to this JSON file")
    args = parser.parse_args()
    if args.netns and os.environ.get("_FACEATLAS_AUDIT_NETNS") != "1":
        inner = [sys.executable, *sys.argv]
        inner.remove("--netns")
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner]
        print("running inside a new network namespace (loopback only)", flush=True)
        return subprocess.call(cmd, env={**os.environ, "_FACEATLAS_AUDIT_NETNS": "1"})
    if strace_path() is None:
        print("strace is not installed (apt-get install strace): files are checked by listing only, sockets not at all")
    lfw = default_data_dir() / "lfw" / "images"
    models = default_models_dir()
    jobs = [j for j in args.jobs.split(",") if j]
    root = Path(tempfile.mkdtemp(prefix="faceatlas-privacy-"))
    results = {}
    try:
        audit = run_audit(root / "defaults", models, lfw, jobs)
        results["defaults"] = summarize(audit)
        print_summary(results["defaults"], f"faceatlas defaults (jobs: {','.join(jobs)})")
        compare = [j for j in args.compare_jobs.split(",") if j]
        if compare:
            opted = run_audit(root / "telemetry-allowed", models, lfw, compare, allow_telemetry=True, seed_ort=False)
            results["telemetry_allowed"] = summarize(opted)
            s = results["telemetry_allowed"]
            print(f"\n=== the same {','.join(compare)} run with FACEATLAS_ALLOW_TELEMETRY=1 (no fix) ===")
            print(f"onnxruntime telemetry events: {s['ort_events_before']} before, {s['ort_events_after']} after "
                  f"(+{int(s['ort_events_after']) - int(s['ort_events_before'])})")  # type: ignore[call-overload]
            print(f"files changed under HOME: {json.dumps(s['home_changes'])}")
            print(f"files changed under TMPDIR: {json.dumps(s['tmpdir_changes'])}")
    finally:
        if args.keep:
            print(f"\nsandbox kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = clean(results["defaults"])
    print("\nRESULT:", "clean" if ok else "FINDINGS (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
