"""Watch what a command does to the machine: a fresh sandbox, an ``strace`` of its file and network calls, and checks.

Used by ``tests/test_privacy.py`` and ``benchmarks/privacy_audit.py``. A :class:`Sandbox` gives a job a fresh ``HOME``,
``TMPDIR`` and ``FACEATLAS_HOME`` and a minimal environment (no inherited telemetry switches, so the package must set
them itself). :func:`traced` prefixes a command with ``strace -f``; :func:`parse_trace` turns the log into the paths
written, created, removed and the ``connect()``/``bind()``/``sendto()`` addresses.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ORT_STORE = Path(".cache") / "Microsoft" / "DeveloperTools" / ".onnxruntime" / "onnxruntime.db"
TELEMETRY_SWITCHES = ("ORT_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK",
                      "FACEATLAS_ALLOW_TELEMETRY", "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")
SYSCALLS = ("open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,"
            "unlinkat,rmdir,truncate,chdir,connect,bind,sendto,sendmsg,sendmmsg")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\)\s+=\s+(-?\d+|\?)(.*)$")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FD = re.compile(r"^(-?\d+|AT_FDCWD)(?:<(.*?)>)?$")
_RET_PATH = re.compile(r"^<(.*)>")
_FAMILY = re.compile(r"sa_family=(AF_[A-Z0-9]+)")
_INET = re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([0-9.]+)"\)')
_INET6 = re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"')
_UNIX = re.compile(r'sun_path=@?"((?:[^"\\]|\\.)*)"')


def strace_path() -> str | None:
    """The strace binary, if installed."""
    return shutil.which("strace")


def _unescape(text: str) -> str:
    """Decode strace's C-style escapes in a quoted string."""
    if "\\" not in text:
        return text
    return codecs.escape_decode(text.encode("utf-8", "surrogateescape"))[0].decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Sandbox:
    """Fresh folders for one audited run: ``home`` (HOME), ``tmp`` (TMPDIR), ``fahome`` (FACEATLAS_HOME), ``work``."""

    root: Path
    models: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def fahome(self) -> Path:
        return self.root / "faceatlas-home"

    @property
    def work(self) -> Path:
        """The user's own folder: input photos, and every output path a command is told to write."""
        return self.root / "work"

    @property
    def logs(self) -> Path:
        """Harness files (strace logs, server stdout); not part of what the jobs may write."""
        return self.root / "logs"

    def create(self) -> Sandbox:
        """Make the folders (empty)."""
        for d in (self.home, self.tmp, self.fahome, self.work, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def env(self, *, allow_telemetry: bool = False) -> dict[str, str]:
        """A minimal user environment: fresh HOME/TMPDIR/FACEATLAS_HOME, models present, offline; no telemetry switch."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM", "VIRTUAL_ENV")}
        for name in TELEMETRY_SWITCHES:  # the package itself must switch telemetry off, not the caller
            env.pop(name, None)
        env.update({"HOME": str(self.home), "TMPDIR": str(self.tmp), "FACEATLAS_HOME": str(self.fahome),
                    "FACEATLAS_MODELS": str(self.models), "FACEATLAS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": "", "USER": "privacy", "LOGNAME": "privacy"})
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        if allow_telemetry:
            env["FACEATLAS_ALLOW_TELEMETRY"] = "1"
        return env

    def ort_events(self) -> int:
        """Events in onnxruntime's 1DS telemetry queue under this sandbox's HOME (0 when the store does not exist)."""
        return ort_event_count(self.home)


def ort_event_count(home: Path) -> int:
    """Rows in the ``events`` table of onnxruntime's telemetry store below ``home`` (0 when absent).

    Counted on a copy (database and WAL) so that reading it does not touch the store itself.
    """
    db = home / ORT_STORE
    if not db.exists():
        return 0
    with tempfile.TemporaryDirectory(prefix="ort-count-") as tmp:
        for suffix in ("", "-wal"):
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", os.path.join(tmp, f"store.db{suffix}"))
        con = sqlite3.connect(os.path.join(tmp, "store.db"))
        try:
            return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()


def traced(cmd: Sequence[str], log: Path) -> list[str]:
    """``cmd`` under ``strace -f`` writing file and network calls to ``log`` (unchanged when strace is missing)."""
    binary = strace_path()
    if binary is None:
        return list(cmd)
    return [binary, "-f", "-qq", "-y", "-s", "4096", "-e", "signal=none", "-e", f"trace={SYSCALLS}", "-o", str(log),
            "--", *cmd]


@dataclass(frozen=True)
class Connect:
    """One ``connect()``/``sendto()``/``bind()`` address seen in a trace."""

    pid: int
    call: str
    family: str
    address: str
    result: str

    @property
    def local(self) -> bool:
        """AF_UNIX, or loopback IPv4/IPv6 (and the unspecified address when binding nowhere)."""
        if self.family == "AF_UNIX":
            return True
        if self.family == "AF_INET":
            return self.address.split(":")[0].startswith("127.")
        if self.family == "AF_INET6":
            host = self.address.rsplit(":", 1)[0].strip("[]")
            return host == "::1" or host.startswith("::ffff:127.")
        return self.family == "AF_UNSPEC"  # connect(AF_UNSPEC) dissolves a UDP association: no traffic

    def __str__(self) -> str:
        return f"{self.call}({self.family} {self.address}) = {self.result}"


@dataclass
class Trace:
    """What a traced run did: paths written (with the calls), removed, anonymous temp files and socket addresses."""

    written: dict[str, set[str]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    anonymous: list[str] = field(default_factory=list)
    sockets: list[Connect] = field(default_factory=list)
    calls: int = 0

    def add(self, path: str, call: str) -> None:
        """Record a write-like call on ``path``."""
        self.written.setdefault(os.path.normpath(path), set()).add(call)

    def merge(self, other: Trace) -> None:
        """Add another trace's findings to this one."""
        for path, calls in other.written.items():
            self.written.setdefault(path, set()).update(calls)
        self.removed |= other.removed
        self.anonymous += other.anonymous
        self.sockets += other.sockets
        self.calls += other.calls

    @property
    def outbound(self) -> list[Connect]:
        """Socket calls to anything but loopback or a local socket."""
        return [s for s in self.sockets if s.call != "bind" and not s.local]


def _join_lines(text: str) -> list[tuple[int, str]]:
    """Lines per pid with ``<unfinished ...>``/``<... resumed>`` pairs joined."""
    pending: dict[int, str] = {}
    out: list[tuple[int, str]] = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        if rest.startswith("<..."):
            head = pending.pop(pid, "")
            tail = rest.split("resumed>", 1)[1] if "resumed>" in rest else ""
            rest = head + tail
        out.append((pid, rest))
    return out


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments of one strace call (braces, brackets and strings respected)."""
    parts, depth, cur, in_str, esc = [], 0, [], False, False
    for ch in args:
        if in_str:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if cur:
        parts.append("".join(cur).strip())
    return parts


def _path_arg(arg: str, base: str) -> str:
    """An absolute path from a quoted path argument relative to ``base``."""
    m = _STR.search(arg)
    path = _unescape(m.group(1)) if m else arg
    return path if path.startswith("/") else os.path.join(base, path)


def _dir_of(fd_arg: str, cwd: str) -> str:
    """The directory a ``*at`` call's dirfd refers to (``-y`` decorates it with its path)."""
    m = _FD.match(fd_arg.strip())
    if m and m.group(2):
        return m.group(2)
    return cwd


def _socket(pid: int, call: str, addr: str, result: str) -> Connect | None:
    """The address of one connect/bind/sendto argument (None when the call has no address)."""
    fam = _FAMILY.search(addr)
    if not fam:
        return None
    family = fam.group(1)
    where = addr
    if (m := _INET.search(addr)) is not None:
        where = f"{m.group(2)}:{m.group(1)}"
    elif (m := _INET6.search(addr)) is not None:
        where = f"[{m.group(2)}]:{m.group(1)}"
    elif (m := _UNIX.search(addr)) is not None:
        where = _unescape(m.group(1))
    return Connect(pid, call, family, where, result)


def parse_trace(text: str, cwd: str) -> Trace:
    """Parse an ``strace -f -y`` log of the calls in :data:`SYSCALLS`; relative paths resolve against ``cwd``."""
    trace = Trace()
    cwds: dict[int, str] = {}
    for pid, line in _join_lines(text):
        m = _CALL.match(line)
        if not m:
            continue
        call, args_text, ret, rest = m.groups()
        trace.calls += 1
        ok = ret != "?" and not ret.startswith("-")
        args = _split_args(args_text)
        here = cwds.get(pid, cwd)
        if call in ("connect", "bind", "sendto", "sendmsg", "sendmmsg"):
            addr_arg = args[1] if call in ("connect", "bind") else args_text
            found = _socket(pid, call, addr_arg, ret + rest)
            if found is not None:
                trace.sockets.append(found)
            continue
        if not ok:
            continue
        if call == "chdir":
            cwds[pid] = _path_arg(args[0], here)
        elif call in ("open", "openat", "openat2", "creat"):
            flags = args[2] if call in ("openat", "openat2") else (args[1] if call == "open" else "O_CREAT|O_WRONLY")
            if not any(f in flags for f in _WRITE_FLAGS):
                continue
            target = _RET_PATH.match(rest.strip())
            base = _dir_of(args[0], here) if call in ("openat", "openat2") else here
            path = target.group(1) if target else _path_arg(args[1] if call in ("openat", "openat2") else args[0], base)
            if "O_TMPFILE" in flags:
                trace.anonymous.append(_path_arg(args[1] if call in ("openat", "openat2") else args[0], base))
            elif path.startswith(("/dev/pts/", "pipe:", "socket:")) or path in ("/dev/null", "/dev/tty"):
                continue
            else:
                trace.add(path, "open-create" if "O_CREAT" in flags else "open-write")
        elif call in ("mkdir", "truncate", "rmdir", "unlink", "symlink"):
            path = _path_arg(args[-1] if call == "symlink" else args[0], here)  # symlink(target, linkpath)
            if call in ("unlink", "rmdir"):
                trace.removed.add(os.path.normpath(path))
            else:
                trace.add(path, call)
        elif call in ("mkdirat", "unlinkat", "symlinkat"):
            if call == "symlinkat":
                path = _path_arg(args[2], _dir_of(args[1], here))
            else:
                path = _path_arg(args[1], _dir_of(args[0], here))
            if call == "unlinkat":
                trace.removed.add(os.path.normpath(path))
            else:
                trace.add(path, call)
        elif call in ("rename", "link"):
            trace.add(_path_arg(args[1], here), call)
            if call == "rename":
                trace.removed.add(os.path.normpath(_path_arg(args[0], here)))
        elif call in ("renameat", "renameat2", "linkat"):
            trace.add(_path_arg(args[3], _dir_of(args[2], here)), call)
            if call != "linkat":
                trace.removed.add(os.path.normpath(_path_arg(args[1], _dir_of(args[0], here))))
    return trace


def read_trace(log: Path, cwd: Path) -> Trace:
    """Parse a trace log file (an empty trace when strace was not used)."""
    return parse_trace(log.read_text(errors="replace"), str(cwd)) if log.exists() else Trace()


def under(path: str, roots: Iterable[Path | str]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one."""
    for root in roots:
        r = os.path.normpath(str(root))
        if path == r or path.startswith(r.rstrip("/") + "/"):
            return True
    return False


def is_bytecode(path: str) -> bool:
    """Python's own byte-code cache (``__pycache__`` folders and ``*.pyc``), written by the interpreter."""
    return "/__pycache__/" in path + "/"


_PROBE = re.compile(r"^[a-z0-9_]{8}$")


def is_tempdir_probe(path: str, trace: Trace, tmpdir: Path | str | None) -> bool:
    """Python's ``tempfile.gettempdir()`` check: an 8-character file in TMPDIR, written ``b"blat"`` and removed."""
    return (tmpdir is not None and os.path.dirname(path) == os.path.normpath(str(tmpdir))
            and bool(_PROBE.match(os.path.basename(path))) and path in trace.removed and not os.path.exists(path))


def outside(trace: Trace, allowed: Iterable[Path | str], tmpdir: Path | str | None = None) -> dict[str, set[str]]:
    """Paths written outside ``allowed`` roots, apart from Python byte-code, Python's TMPDIR probe and POSIX
    semaphores removed again."""
    roots = list(allowed)
    bad: dict[str, set[str]] = {}
    for path, calls in trace.written.items():
        if under(path, roots) or is_bytecode(path) or is_tempdir_probe(path, trace, tmpdir):
            continue
        if path.startswith("/dev/shm/") and path in trace.removed and not os.path.exists(path):
            continue  # multiprocessing's named semaphores: created and unlinked at once
        bad[path] = calls
    return bad


def list_files(root: Path) -> list[str]:
    """Every file and folder below ``root`` (relative, sorted; folders end with ``/``)."""
    if not root.exists():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out += [os.path.normpath(os.path.join(rel, d)) + "/" for d in dirnames]
        out += [os.path.normpath(os.path.join(rel, f)) for f in filenames]
    return sorted(out)


IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF", b"GIF8", b"BM")


def holds_image(path: Path) -> bool:
    """Whether a file contains JPEG/PNG image data anywhere (a leftover upload or crop)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return b"\xff\xd8\xff\xe0" in data or b"\xff\xd8\xff\xdb" in data or b"\x89PNG\r\n\x1a\n" in data
