"""The store's SQLite connection: opening, pragmas, busy retries, transactions, WAL checkpoints, audit rows."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.store.validate import bad_text

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_S = 30.0
ERASE_WAIT_S = 1.0  # how long a delete waits for other connections' readers before leaving its erasure pending


def translate(exc: sqlite3.Error, path: Path) -> FaceAtlasError:
    """Map an sqlite3 exception to a FaceAtlasError with a stable code."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, sqlite3.IntegrityError):
        return FaceAtlasError("conflict", f"gallery constraint violated: {text}")
    if "not a database" in low or "malformed" in low or "disk image" in low or "corrupt" in low:
        return FaceAtlasError(
            "gallery_corrupt", f"{path} is not a valid FaceAtlas gallery database ({text})", path=str(path)
        )
    if "locked" in low or "busy" in low:
        return FaceAtlasError("gallery_busy", f"gallery {path} is locked by another writer ({text})", path=str(path))
    if "readonly" in low or "read-only" in low:
        return FaceAtlasError("gallery_readonly", f"gallery {path} is read-only ({text})", path=str(path))
    return FaceAtlasError("gallery_error", f"gallery {path}: {text}", path=str(path))


class StoreConnection:
    """One connection to a gallery file, shared by threads under a lock; the base of :class:`SqliteStore`."""

    path: Path
    _conn: sqlite3.Connection

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._busy_timeout = float(busy_timeout)

    def _open(self, create: bool) -> None:
        """Create the file if allowed and needed, connect, and apply the connection pragmas."""
        self._prepare_file(create)
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _prepare_file(self, create: bool) -> None:
        """Check the path and create a new file readable by its owner only."""
        if self.path.is_dir():
            raise InvalidInputError("invalid_input", f"gallery path {self.path} is a directory")
        if self.path.exists():
            return
        if not create:
            raise NotFoundError(f"gallery {self.path} does not exist", path=str(self.path))
        if not self.path.parent.is_dir():
            raise NotFoundError(f"folder {self.path.parent} does not exist", path=str(self.path.parent))
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass

    def _configure(self) -> None:
        """Apply connection pragmas and make sure the file is SQLite at all."""
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            mode = self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if mode is None or str(mode[0]).lower() != "wal":
                logger.warning("gallery %s: WAL journal mode unavailable (got %r)", self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def _retry_busy(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` retrying 'database is locked' until the busy timeout (some pragmas skip the busy handler)."""
        deadline = time.monotonic() + (self._busy_timeout if timeout is None else timeout)
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                try:
                    conn.close()
                finally:
                    self._conn = None  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return getattr(self, "_conn", None) is None

    def _connection(self) -> sqlite3.Connection:
        """Return the open connection or fail clearly."""
        conn = getattr(self, "_conn", None)
        if conn is None:
            raise FaceAtlasError("gallery_closed", f"gallery {self.path} is closed")
        return conn

    def _library_error(self, exc: BaseException) -> FaceAtlasError | None:
        """The library error an exception raised inside a transaction stands for (None: re-raise it as it is)."""
        if isinstance(exc, sqlite3.Error):
            return translate(exc, self.path)
        if isinstance(exc, UnicodeEncodeError):
            return bad_text()
        return None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """Run a block in a ``BEGIN IMMEDIATE`` transaction under the connection lock."""
        with self._lock:
            conn = self._connection()
            try:
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
            cur = conn.cursor()
            try:
                yield cur
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                err = self._library_error(exc)
                if err is not None:
                    raise err from None
                raise
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        """Run a block in a read transaction (one consistent snapshot) under the connection lock."""
        with self._lock:
            conn = self._connection()
            nested = conn.in_transaction
            cur = conn.cursor()
            try:
                if not nested:
                    conn.execute("BEGIN")
                yield cur
                if not nested:
                    conn.execute("COMMIT")
            except BaseException as exc:
                if not nested and conn.in_transaction:
                    conn.execute("ROLLBACK")
                err = self._library_error(exc)
                if err is not None:
                    raise err from None
                raise
            finally:
                cur.close()

    def checkpoint(self, wait: float | None = None) -> bool:
        """Copy the WAL into the main file and truncate it; False if other connections' readers kept it from finishing.

        ``wait``: how long to wait for those readers (default: the busy timeout). While it waits, writers of
        other connections wait too, so callers that retry in the background pass a short ``wait``.
        """
        limit = self._busy_timeout if wait is None else max(0.0, float(wait))
        with self._lock:
            conn = self._connection()
            try:
                if limit != self._busy_timeout:
                    conn.execute(f"PRAGMA busy_timeout = {int(limit * 1000)}")
                try:
                    busy, _log, _done = self._retry_busy(
                        lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone(), limit
                    )
                finally:
                    if limit != self._busy_timeout:
                        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            except sqlite3.Error as exc:
                logger.warning("gallery %s: WAL checkpoint failed: %s", self.path, exc)
                return False
        if busy:
            logger.info("gallery %s: WAL checkpoint blocked by another connection's reader", self.path)
            return False
        return True

    def _erase(self) -> bool:
        """After a delete: checkpoint so the deleted bytes leave every file; False if that must wait (see ``erased``)."""
        done = self.checkpoint(wait=min(self._busy_timeout, ERASE_WAIT_S))
        if not done:
            logger.warning(
                "gallery %s: deleted data stays in the WAL/database file until a later checkpoint succeeds "
                "(another connection holds a read transaction)",
                self.path,
            )
        return done

    def meta(self) -> dict[str, str]:
        """Return the gallery's key/value metadata rows."""
        with self._read() as cur:
            return {str(k): str(v) for k, v in cur.execute("SELECT key, value FROM meta")}

    def _audit(
        self,
        cur: sqlite3.Cursor,
        actor: str,
        action: str,
        collection: str | None,
        person_id: int | None = None,
        sample_ids: Sequence[int] = (),
    ) -> None:
        """Append an audit event inside the current write transaction."""
        cur.execute(
            "INSERT INTO audit (ts, actor, action, collection, person_id, sample_ids) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, collection, person_id, json.dumps([int(s) for s in sample_ids])),
        )

    def integrity_check(self) -> list[str]:
        """Run SQLite's integrity and foreign-key checks; return the problems found (empty when healthy)."""
        with self._lock:
            conn = self._connection()
            try:
                problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
                problems += [
                    f"foreign key violation in {r[0]} row {r[1]}" for r in conn.execute("PRAGMA foreign_key_check")
                ]
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
        return problems

    def file_sizes(self) -> tuple[int, int]:
        """Return the byte sizes of the database file and its WAL."""
        wal = Path(str(self.path) + "-wal")
        return (
            self.path.stat().st_size if self.path.exists() else 0,
            wal.stat().st_size if wal.exists() else 0,
        )
