"""Deletes whose bytes may still be on disk, and the background thread that finishes erasing them.

A delete is only erased from the gallery file once a ``wal_checkpoint(TRUNCATE)`` succeeds (with
``secure_delete`` on, the checkpoint overwrites the deleted rows in the database file and empties the WAL).
Another connection's long read transaction makes that checkpoint give up; the delete then reports
``erased=False`` and this tracker retries the checkpoint in a daemon thread, with short waits so that
writers of other connections are not held up, until it succeeds.
"""

from __future__ import annotations

import logging
import threading

from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.store import SqliteStore

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
RETRY_WAIT_S = 0.05  # how long one background attempt waits for readers (writers wait meanwhile)


class ErasureTracker:
    """Counts deletes not yet erased from disk and retries the WAL checkpoint until they are; thread-safe."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def note(self, erased: bool) -> None:
        """Record the outcome of one delete (a complete one also completes every earlier pending erasure)."""
        with self._cond:
            if erased:
                if self._pending:
                    self._pending = 0
                    self._cond.notify_all()
                return
            self._pending += 1
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="faceatlas-erasure", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """How many deletes still have bytes on disk."""
        with self._cond:
            return self._pending

    def wait(self, timeout: float) -> bool:
        """Block until every pending erasure is complete or ``timeout`` seconds passed; True when complete."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0 or self._closed, timeout=max(0.0, float(timeout)))
            return self._pending == 0

    def close(self) -> None:
        """Stop retrying (pending erasures are logged; the file's last close checkpoints it if it can)."""
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            pending = self._pending
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        if pending:
            logger.warning(
                "gallery %s closed with %d deletes not yet erased from disk (another connection held a read "
                "transaction)",
                self._store.path,
                pending,
            )

    def _run(self) -> None:
        """Retry the checkpoint with growing pauses until every pending erasure is complete or the tracker closes."""
        delay = RETRY_FIRST_S
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._pending == 0, timeout=delay)
                if self._closed or self._pending == 0:
                    self._thread = None
                    return
                covered = self._pending  # deletes committed before this attempt starts
            try:
                done = self._store.checkpoint(wait=RETRY_WAIT_S)
            except FaceAtlasError:  # the store was closed under us
                with self._cond:
                    self._thread = None
                return
            if done:
                with self._cond:
                    self._pending = max(0, self._pending - covered)
                    logger.info("gallery %s: %d pending erasures completed", self._store.path, covered)
                    self._cond.notify_all()
                delay = RETRY_FIRST_S
            else:
                delay = min(delay * 2, RETRY_MAX_S)
