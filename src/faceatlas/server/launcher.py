"""Run a real ``faceatlas serve`` in a subprocess on a free loopback port (for tests, benchmarks and demos)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .. import config

log = logging.getLogger(__name__)

_KEY_LINE = re.compile(r"\b(fak_[0-9a-f]{12}_[A-Za-z0-9_-]+)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux ``/proc``; 0 when unavailable)."""
    total = 0
    stack = [pid]
    seen: set[int] = set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


class ServerProcess:
    """``python -m faceatlas serve`` on loopback: started, waited for (``/v1/health``), and stopped."""

    def __init__(self, home: str | os.PathLike[str], args: Sequence[str] = (), *, port: int | None = None,
                 env: Mapping[str, str] | None = None, log_dir: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 180.0) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else self.home
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_key: str | None = None
        self.stdout_path = self.log_dir / f"server-{self.port}.out"
        self.stderr_path = self.log_dir / f"server-{self.port}.err"

    @property
    def url(self) -> str:
        """Base URL of the server (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's main process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        """Start the server and wait until it answers ``/v1/health`` (raises RuntimeError with its log otherwise)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = config.environ_copy(self.env)
        env["FACEATLAS_HOME"] = str(self.home)
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [sys.executable, "-m", "faceatlas", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            if self.admin_key is None:
                found = _KEY_LINE.search(self.stdout_path.read_text(errors="replace"))
                self.admin_key = found.group(1) if found else None
            if self._healthy():
                found = _KEY_LINE.search(self.stdout_path.read_text(errors="replace"))
                self.admin_key = found.group(1) if found else self.admin_key
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become healthy in {self.startup_timeout:.0f} s:\n{self.logs()}")

    def _healthy(self) -> bool:
        """Whether ``/v1/health`` answers ok."""
        try:
            with urllib.request.urlopen(f"{self.url}/v1/health", timeout=2) as resp:  # noqa: S310 - loopback URL
                return bool(resp.status == 200 and json.loads(resp.read()).get("status") == "ok")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def logs(self, tail: int = 4000) -> str:
        """The end of the server's stdout and stderr."""
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout ---\n{out[-tail:]}\n--- stderr ---\n{err[-tail:]}"

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory of the server and its worker processes."""
        return tree_rss_bytes(self.pid) if self.alive() else 0

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout``); return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
