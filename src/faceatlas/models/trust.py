"""Remember which model files were already hashed, keyed by their stat identity, so startup skips re-hashing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..lazylog import get_logger

log = get_logger(__name__)

_CHUNK = 1 << 20
RECORD_NAME = "verified.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    import hashlib  # imported here: a trusted record needs no hashing at startup

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of a short byte string (cache-file names) without importing hashlib, which loads OpenSSL."""
    try:
        from _sha256 import sha256  # CPython's own implementation (3.10, 3.11)
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # CPython 3.12+
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment,unused-ignore]
    return str(sha256(data).hexdigest())


def _identity(st: os.stat_result) -> list[int]:
    """What must stay the same for a recorded hash to still describe the file."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns]


class HashRecord:
    """sha256 of files hashed before, trusted while (size, mtime_ns, inode, device, ctime_ns) are unchanged."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / RECORD_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] | None = None

    def sha256(self, path: Path, verify: bool = False) -> str:
        """The file's sha256: from the record when its identity is unchanged, else (or when ``verify``) hashed."""
        st = path.stat()
        key = str(path.absolute())
        with self._lock:
            entries = self._load()
            hit = entries.get(key)
            if not verify and hit is not None and hit.get("stat") == _identity(st):
                return str(hit["sha256"])
        digest = sha256_file(path)
        after = path.stat()
        if _identity(after) == _identity(st):  # unchanged while hashing: safe to remember
            with self._lock:
                self._entries = None  # merge with what other processes recorded meanwhile
                entries = self._load()
                entries[key] = {"stat": _identity(st), "sha256": digest}
                self._save(entries)
        return digest

    def remember(self, path: Path, digest: str) -> None:
        """Record the sha256 of a file this process has just written, so its next use needs no hashing."""
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._entries = None  # merge with what other processes recorded meanwhile
            entries = self._load()
            entries[str(path.absolute())] = {"stat": _identity(st), "sha256": digest}
            self._save(entries)

    def forget(self, path: Path) -> None:
        """Drop a file's entry (after it was replaced or found damaged)."""
        with self._lock:
            entries = self._load()
            if entries.pop(str(path.absolute()), None) is not None:
                self._save(entries)

    def _load(self) -> dict[str, dict[str, object]]:
        """Entries from disk, read once per process; a missing or damaged record is empty."""
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text())
                self._entries = {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def _save(self, entries: dict[str, dict[str, object]]) -> None:
        """Write the record atomically; a read-only cache just means hashing again next time."""
        import tempfile  # only when the record changes (tempfile costs ~4 ms of startup)

        tmp = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".verified-", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("cannot save the model hash record %s: %s", self.path, exc)
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
