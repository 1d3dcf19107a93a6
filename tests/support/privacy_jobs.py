"""The main faceatlas jobs, run as a user would (``python -m faceatlas ...`` subprocesses) inside a privacy sandbox.

Each job is a list of CLI steps, or a ``faceatlas serve`` run driven over REST; every process runs under
``strace`` (when installed) so that :mod:`support.privacy_trace` can list what it wrote and which addresses it
tried to reach. Inputs (LFW copies, a small clip) are made by the harness, outside the trace.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.privacy_trace import Sandbox, Trace, holds_image, is_bytecode, list_files, read_trace, strace_path, traced
from support.privacy_trace import outside as written_outside

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
_KEY = re.compile(r"\b(fak_[0-9a-f]{12}_[A-Za-z0-9_-]+)")


@dataclass
class Step:
    """One CLI command: its arguments, the paths (relative to the work folder) it is told to write, its exit code."""

    name: str
    args: list[str]
    outputs: tuple[str, ...] = ()
    expect_rc: int = 0


@dataclass
class StepResult:
    """What one traced process did."""

    name: str
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    trace: Trace
    outputs: tuple[str, ...] = ()
    expect_rc: int = 0

    @property
    def ok(self) -> bool:
        return self.rc == self.expect_rc


@dataclass
class JobRun:
    """The steps of one job and everything they did together."""

    job: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def trace(self) -> Trace:
        total = Trace()
        for s in self.steps:
            total.merge(s.trace)
        return total

    @property
    def outputs(self) -> list[str]:
        return [o for s in self.steps for o in s.outputs]


def lfw_photo(lfw: Path, name: str, n: int) -> Path:
    """Path of LFW image ``n`` of ``name``."""
    return lfw / name / f"{name}_{n:04d}.jpg"


def prepare_inputs(sb: Sandbox, lfw: Path) -> None:
    """Copy the user's photos into the work folder: ``people/<name>/``, a broken JPEG and a photo without a face."""
    for name in PEOPLE:
        (sb.work / "people" / name).mkdir(parents=True, exist_ok=True)
        for n in range(1, 5):
            shutil.copy(lfw_photo(lfw, name, n), sb.work / "people" / name)
    (sb.work / "milvus").mkdir(exist_ok=True)  # the folder the user names for a Milvus Lite gallery
    data = lfw_photo(lfw, PEOPLE[0], 5).read_bytes()
    (sb.work / "broken.jpg").write_bytes(data[: len(data) // 3])
    import cv2
    import numpy as np

    cv2.imwrite(str(sb.work / "noface.png"), np.full((240, 320, 3), 90, np.uint8))


def make_clip(sb: Sandbox, lfw: Path, seconds: float = 2.0, fps: float = 8.0) -> Path:
    """A small MJPEG clip: one LFW face drifting across a grey 320x240 frame, then another."""
    import cv2
    import numpy as np

    path = sb.work / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (320, 240))
    frames = int(seconds * fps)
    faces = [cv2.resize(_read(lfw_photo(lfw, name, 1)), (160, 160)) for name in PEOPLE[:2]]
    for i in range(frames):
        frame = np.full((240, 320, 3), 96, np.uint8)
        face = faces[0] if i < frames // 2 else faces[1]
        x = 20 + int(120 * (i % (frames // 2)) / max(1, frames // 2 - 1))
        frame[40:200, x : x + 160] = face
        writer.write(frame)
    writer.release()
    return path


def _read(path: Path) -> Any:
    """A BGR image read with OpenCV."""
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(path)
    return img


def _faceatlas(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceatlas", *args]


def run_step(sb: Sandbox, step: Step, env: dict[str, str], timeout: float = 600.0) -> StepResult:
    """Run one CLI step under strace in the work folder."""
    log = sb.logs / f"{step.name}-{uuid.uuid4().hex[:6]}.strace"
    start = time.monotonic()
    proc = subprocess.run(traced(_faceatlas(*step.args), log), cwd=sb.work, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return StepResult(step.name, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start,
                      read_trace(log, sb.work), step.outputs, step.expect_rc)


def cli_steps() -> list[Step]:
    """Enrol two people, identify, verify, delete one, and three commands that fail."""
    colin = [f"people/{PEOPLE[0]}/{PEOPLE[0]}_{n:04d}.jpg" for n in (1, 2, 3)]
    tony = [f"people/{PEOPLE[1]}/{PEOPLE[1]}_{n:04d}.jpg" for n in (1, 2, 3)]
    return [
        Step("enroll-colin", ["enroll", "-c", "staff", "-p", "colin", "--json", *colin]),
        Step("enroll-tony", ["enroll", "-c", "staff", "-p", "tony", "--keep-crops", "--json", *tony]),
        Step("identify", ["identify", "-c", "staff", "--json", f"people/{PEOPLE[0]}/{PEOPLE[0]}_0004.jpg",
                          f"people/{PEOPLE[1]}/{PEOPLE[1]}_0004.jpg"]),
        Step("verify", ["verify", "--json", colin[0], f"people/{PEOPLE[0]}/{PEOPLE[0]}_0004.jpg"]),
        Step("person-delete", ["person", "delete", "colin", "-c", "staff", "--json"]),
        Step("identify-broken", ["identify", "-c", "staff", "broken.jpg"], expect_rc=2),
        Step("enroll-noface", ["enroll", "-c", "staff", "-p", "nobody", "noface.png"], expect_rc=2),
        Step("verify-missing", ["verify", "missing.jpg", colin[0]], expect_rc=2),
    ]


def milvus_steps() -> list[Step]:
    """The same gallery work on a Milvus Lite gallery (an in-process gRPC server on loopback)."""
    colin = [f"people/{PEOPLE[0]}/{PEOPLE[0]}_{n:04d}.jpg" for n in (1, 2)]
    gallery = ["--gallery", "milvus-lite:milvus/g.db"]
    return [
        Step("milvus-enroll", ["enroll", "-c", "staff", "-p", "colin", *gallery, "--json", *colin], outputs=("milvus",)),
        Step("milvus-identify", ["identify", "-c", "staff", *gallery, "--json", f"people/{PEOPLE[0]}/{PEOPLE[0]}_0004.jpg"],
             outputs=("milvus",)),
        Step("milvus-delete", ["person", "delete", "colin", "-c", "staff", *gallery, "--json"], outputs=("milvus",)),
    ]


def video_steps() -> list[Step]:
    """Track and identify faces of the clip against the CLI job's gallery; write an annotated and a redacted video."""
    return [
        Step("video", ["video", "clip.avi", "-c", "staff", "--json", "--fps", "4", "--annotate", "annotated.avi"],
             outputs=("annotated.avi",)),
        Step("video-redact", ["video", "clip.avi", "--fps", "4", "--redact", "all", "--out", "redacted.avi"],
             outputs=("redacted.avi",)),
    ]


def cluster_steps() -> list[Step]:
    """Cluster the photo folder, write a contact sheet and state, promote one cluster into the gallery."""
    return [
        Step("cluster", ["cluster", "people", "--json", "--html", "sheet.html", "--state", "clusters.npz"],
             outputs=("sheet.html", "clusters.npz")),
        Step("cluster-promote", ["cluster", "promote", "--state", "clusters.npz", "--cluster", "0", "-c", "friends",
                                 "--person", "someone", "--json"], outputs=("clusters.npz",)),
    ]


def eval_steps() -> list[Step]:
    """A tiny verification report on the photo folder (plots, report.json, summary.md), and a calibration."""
    return [Step("eval-folder", ["eval", "folder", "people", "--out", "report", "--json"], outputs=("report",)),
            Step("calibrate", ["calibrate", "people"])]


# -- the REST job ----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    from faceatlas.server.launcher import free_port

    return free_port()


class TracedServer:
    """``faceatlas serve`` on loopback under strace, stopped with SIGTERM (or killed with SIGKILL)."""

    def __init__(self, sb: Sandbox, env: dict[str, str], name: str = "serve") -> None:
        self.sb, self.env, self.name = sb, env, name
        self.port = _free_port()
        self.log = sb.logs / f"{name}-{uuid.uuid4().hex[:6]}.strace"
        self.out = sb.logs / f"{name}-{self.port}.out"
        self.err = sb.logs / f"{name}-{self.port}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key: str | None = None
        self.started = time.monotonic()
        self.traced = strace_path() is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> TracedServer:
        """Start and wait for ``/v1/health``; remember the admin key printed on first run."""
        cmd = traced(_faceatlas("serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"), self.log)
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=self.sb.work, env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.err.read_text()[-3000:]}")
            try:
                status, _ = self.request("GET", "/v1/health", auth=False)
                if status == 200:
                    found = _KEY.search(self.out.read_text(errors="replace"))
                    self.key = found.group(1) if found else self.key
                    saved = self.sb.logs / "admin.key"  # printed on the first start only: later starts reuse it
                    if self.key:
                        saved.write_text(self.key)
                    elif saved.exists():
                        self.key = saved.read_text().strip()
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"server did not start: {self.err.read_text()[-3000:]}")

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
                auth: bool = True, timeout: float = 120.0) -> tuple[int, Any]:
        """One HTTP request; (status, parsed JSON or text)."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        if auth and self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def json(self, method: str, path: str, obj: Any) -> tuple[int, Any]:
        """A JSON request."""
        return self.request(method, path, json.dumps(obj).encode(), "application/json")

    def multipart(self, path: str, fields: dict[str, str], files: Sequence[tuple[str, str, bytes]]) -> tuple[int, Any]:
        """A multipart/form-data request with text fields and (field, filename, bytes) files."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for key, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        for key, filename, data in files:
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def _server_pid(self) -> int | None:
        """The faceatlas process (strace's child when traced, else the process itself)."""
        assert self.proc is not None
        if not self.traced:
            return self.proc.pid
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the server (strace ends with it); SIGKILL to the group after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        pid = self._server_pid()
        try:
            os.kill(pid or self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group (server, workers and strace)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def result(self) -> StepResult:
        """The server's trace as one step."""
        rc = self.proc.returncode if self.proc is not None else None
        return StepResult(self.name, rc, self.out.read_text(errors="replace"), self.err.read_text(errors="replace"),
                          time.monotonic() - self.started, read_trace(self.log, self.sb.work), (), rc or 0)


def big_png(path: Path) -> bytes:
    """An LFW photo scaled to 1400x1400 PNG (several MB: multipart parsers spool such uploads to disk)."""
    import cv2

    img = cv2.resize(_read(path), (1400, 1400), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return bytes(buf)


def rest_job(sb: Sandbox, env: dict[str, str], lfw: Path) -> tuple[JobRun, list[str]]:
    """Serve, then over REST: create a collection, enrol (multipart, one large upload), identify (JSON), verify, delete."""
    run = JobRun("rest")
    problems: list[str] = []
    server = TracedServer(sb, env).start()
    try:
        b64 = {n: base64.b64encode(lfw_photo(lfw, PEOPLE[2], n).read_bytes()).decode() for n in (1, 2, 3, 4)}
        calls: list[tuple[str, tuple[int, Any]]] = [
            ("create", server.json("POST", "/v1/collections", {"name": "rest"})),
            ("enroll-multipart", server.multipart("/v1/collections/rest/enroll", {"person": "donald"}, [
                ("images", "big.png", big_png(lfw_photo(lfw, PEOPLE[2], 1))),
                ("images", "d2.jpg", lfw_photo(lfw, PEOPLE[2], 2).read_bytes())])),
            ("enroll-json", server.json("POST", "/v1/collections/rest/enroll", {"person": "donald", "images": [b64[3]]})),
            ("identify", server.json("POST", "/v1/collections/rest/identify", {"image": b64[4]})),
            ("verify", server.json("POST", "/v1/verify", {"image_a": b64[1], "image_b": b64[4]})),
            ("identify-bad", server.json("POST", "/v1/collections/rest/identify", {"image": "bm90IGFuIGltYWdl"})),
            ("delete", server.request("DELETE", "/v1/collections/rest/persons/donald")),
        ]
        expected = {"create": 201, "identify-bad": 400, "enroll-multipart": 200, "enroll-json": 200, "identify": 200,
                    "verify": 200, "delete": 200}
        for name, (status, body) in calls:
            if status != expected[name] and not (name == "identify-bad" and 400 <= status < 500):
                problems.append(f"{name}: HTTP {status} {str(body)[:300]}")
        ident = dict(calls)["identify"][1]
        if isinstance(ident, dict) and "donald" not in json.dumps(ident):
            problems.append(f"identify did not find donald: {str(ident)[:300]}")
    finally:
        server.stop()
    step = server.result()
    logs = step.stdout + step.stderr
    if any(v[100:148] in logs for v in b64.values()) or "donald" in logs.lower():
        problems.append("the server's logs hold uploaded image data or a person id")
    run.steps.append(step)
    return run, problems


def killed_server_job(sb: Sandbox, env: dict[str, str], lfw: Path) -> JobRun:
    """Start the server, send a large enrolment and SIGKILL the server while it works on it."""
    run = JobRun("rest-killed")
    server = TracedServer(sb, env, "serve-killed").start()
    if server.json("POST", "/v1/collections", {"name": "late"})[0] not in (201, 409):
        raise RuntimeError(f"the killed-server job cannot create its collection: {server.out.read_text()[-2000:]}")
    data = big_png(lfw_photo(lfw, PEOPLE[2], 5))
    files = [("images", f"big{i}.png", data) for i in range(4)]
    answer: list[Any] = []
    sender = threading.Thread(target=lambda: _ignore(answer, server.multipart, "/v1/collections/late/enroll",
                                                     {"person": "late"}, files), daemon=True)
    sender.start()
    _wait_for_spool(server, timeout=15.0)  # the upload reached the server: it is now parsing / enrolling it
    server.kill()
    sender.join(30)
    step = server.result()
    step.stdout += f"\n[harness] enrol answer before the kill: {answer!r}"
    run.steps.append(step)
    return run


def _wait_for_spool(server: TracedServer, timeout: float) -> None:
    """Wait until the server spooled an upload (an O_TMPFILE in its trace), then a moment more; 2 s without strace."""
    if not server.traced:
        time.sleep(2.0)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log.exists() and "O_TMPFILE" in server.log.read_text(errors="replace"):
            time.sleep(0.3)
            return
        time.sleep(0.05)


def _ignore(answer: list[Any], fn: Any, *args: Any) -> None:
    """Call ``fn``, keeping its result in ``answer`` and dropping errors (the server is killed under it)."""
    try:
        answer.append(fn(*args))
    except (OSError, ValueError):
        pass


def run_steps(sb: Sandbox, job: str, steps: Sequence[Step], env: dict[str, str]) -> JobRun:
    """Run CLI steps in order."""
    run = JobRun(job)
    for step in steps:
        run.steps.append(run_step(sb, step, env))
    return run


def ort_seed(sb: Sandbox) -> int:
    """Put one event in onnxruntime's store under the sandbox HOME (plain ``import onnxruntime``); the event count."""
    env = sb.env()
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, cwd=sb.work, check=True, timeout=120)
    return sb.ort_events()


# -- the whole audit -------------------------------------------------------------------------------------------------

JOBS = ("cli", "rest", "milvus", "video", "cluster", "eval", "rest-killed")

# Files a run may leave in FACEATLAS_HOME (documented in README "Privacy"); anything else there is a finding.
DOCUMENTED = (
    re.compile(r"^gallery\.db(-wal|-shm)?$"),  # the default gallery (WAL files only while it is open)
    re.compile(r"^keys\.db(-wal|-shm|-journal)?$"),  # REST API keys (only their peppered HMAC digests)
    re.compile(r"^keys\.db\.pepper$"),  # the server's secret pepper for those digests (32 random bytes, 0600)
    re.compile(r"^cache/$"),
    re.compile(r"^cache/verified\.json$"),  # sha256 of model files already verified (path, size, mtime)
    re.compile(r"^cache/derived/(.+\.onnx(\.sha256)?)?$"),  # models rewritten once (SFace, YuNet fixes)
    re.compile(r"^cache/optimized/([^/]+\.onnx(\.data)?)?$"),  # onnxruntime's optimised form of each model, saved once
    re.compile(r"^cache/matplotlib/(fontlist-v[0-9.]+\.json)?$"),  # matplotlib's font list (eval plots)
    # eval lfw / calibrate: per-image cache and its timing record
    re.compile(r"^cache/eval/((templates|landmarks)-[^/]+\.npz|templates-[^/]+\.timing\.json)?$"),
    re.compile(r"^calibrations/([^/]+\.json)?$"),  # faceatlas calibrate without --out
)


@dataclass
class Audit:
    """Everything one audited run did, and what it left behind."""

    sandbox: Sandbox
    allow_telemetry: bool
    runs: list[JobRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ort_before: int = 0
    ort_after: int = 0
    home_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    home_after: dict[str, tuple[int, int]] = field(default_factory=dict)
    tmp_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    tmp_after: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def trace(self) -> Trace:
        total = Trace()
        for r in self.runs:
            total.merge(r.trace)
        return total

    @property
    def named_outputs(self) -> list[Path]:
        return [self.sandbox.work / o for r in self.runs for o in r.outputs]

    def outside(self) -> dict[str, set[str]]:
        """Paths written outside FACEATLAS_HOME and the named outputs; temporary files beside a named output and
        removed again (atomic replace) are allowed."""
        bad = written_outside(self.trace, [self.sandbox.fahome, *self.named_outputs], self.sandbox.tmp)
        near = {str(p.parent) for p in self.named_outputs}
        return {p: c for p, c in bad.items()
                if not (os.path.dirname(p) in near and p in self.trace.removed and not os.path.exists(p))}

    def transient(self) -> list[str]:
        """Files written and removed again during the run (outside Python's byte-code cache)."""
        return sorted(p for p in self.trace.written if p in self.trace.removed and not os.path.exists(p)
                      and not is_bytecode(p))

    def home_changes(self) -> list[str]:
        """Files under HOME created, changed or removed by the run."""
        return _changes(self.home_before, self.home_after)

    def tmp_changes(self) -> list[str]:
        """Files under TMPDIR created, changed or removed by the run."""
        return _changes(self.tmp_before, self.tmp_after)

    def undocumented(self) -> list[str]:
        """Files in FACEATLAS_HOME that README does not list."""
        return [f for f in list_files(self.sandbox.fahome) if not any(p.match(f) for p in DOCUMENTED)]

    def leftovers_with_images(self) -> list[str]:
        """Files in TMPDIR, HOME or undocumented FACEATLAS_HOME files that hold image bytes."""
        sb = self.sandbox
        paths = [sb.tmp / f for f in list_files(sb.tmp)] + [sb.home / f for f in list_files(sb.home)]
        paths += [sb.fahome / f for f in self.undocumented()]
        return [str(p) for p in paths if p.is_file() and holds_image(p)]


def _changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Keys whose (size, mtime) differ between two snapshots."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``root``."""
    out = {}
    for rel in list_files(root):
        st = (root / rel).lstat()
        out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def run_audit(root: Path, models: Path, lfw: Path, jobs: Sequence[str] = JOBS, *, allow_telemetry: bool = False,
              seed_ort: bool = True) -> Audit:
    """Run ``jobs`` in a fresh sandbox at ``root`` and collect what they did."""
    sb = Sandbox(root, models).create()
    prepare_inputs(sb, lfw)
    if "video" in jobs:
        make_clip(sb, lfw)
    audit = Audit(sb, allow_telemetry)
    audit.ort_before = ort_seed(sb) if seed_ort else sb.ort_events()
    audit.home_before, audit.tmp_before = _snapshot(sb.home), _snapshot(sb.tmp)
    env = sb.env(allow_telemetry=allow_telemetry)
    steps = {"cli": cli_steps, "milvus": milvus_steps, "video": video_steps, "cluster": cluster_steps,
             "eval": eval_steps}
    for job in jobs:
        if job == "milvus" and importlib.util.find_spec("milvus_lite") is None:
            audit.skipped.append("milvus (pip install 'faceatlas[milvus]')")
            continue
        if job in steps:
            run = run_steps(sb, job, steps[job](), env)
            audit.problems += [f"{job}/{s.name}: exit {s.rc} (expected {s.expect_rc}): {s.stderr.strip()[-400:]}"
                               for s in run.steps if not s.ok]
        elif job == "rest":
            run, problems = rest_job(sb, env, lfw)
            audit.problems += [f"rest/{p}" for p in problems]
        elif job == "rest-killed":
            run = killed_server_job(sb, env, lfw)
        else:
            raise ValueError(f"unknown job {job!r}")
        audit.runs.append(run)
    audit.home_after, audit.tmp_after = _snapshot(sb.home), _snapshot(sb.tmp)
    audit.ort_after = sb.ort_events()
    return audit
