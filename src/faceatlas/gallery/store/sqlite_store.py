"""SQLite persistence for a gallery: one file, WAL, multi-process writers, audit trail, optional encryption.

Templates are stored as little-endian float32 bytes, or sealed with AES-256-GCM when the gallery
is encrypted (associated data binds each blob to its collection and sample id). A store opened with a
:class:`~faceatlas.gallery.backends.TemplateVault` (the Milvus backend) keeps an empty template in each
row instead and writes templates to the vault inside its write transactions, before they commit
(external changes are undone, best effort, when a transaction does not commit). Deleted rows are
overwritten (``secure_delete``) and the WAL is checkpointed and truncated after every delete, so
deleted templates do not linger in the files; when another connection's reader keeps that checkpoint
from finishing, the delete's receipt says ``erased=False`` and a later :meth:`checkpoint` completes it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.backends.base import TemplateVault
from faceatlas.gallery.crypto import KeyMaterial
from faceatlas.gallery.store.collection_ops import CollectionOps
from faceatlas.gallery.store.connection import DEFAULT_BUSY_TIMEOUT_S, translate
from faceatlas.gallery.store.exchange import ExchangeOps
from faceatlas.gallery.store.person_ops import PersonOps
from faceatlas.gallery.store.sample_ops import SampleOps
from faceatlas.gallery.store.schema import APPLICATION_ID, FORMAT_NAME, MIGRATIONS, SCHEMA_VERSION, validate_schema

logger = logging.getLogger(__name__)


class SqliteStore(CollectionOps, PersonOps, SampleOps, ExchangeOps):
    """One gallery file: collections, persons, samples and the audit trail, safe across threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: KeyMaterial | None = None,
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        vault: TemplateVault | None = None,
    ) -> None:
        super().__init__(path, key, busy_timeout, vault)
        self._open(create)
        try:
            self.schema_version = self._migrate()
            try:
                validate_schema(self._conn, self.path)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
            self._check_template_store()
            self._setup_encryption()
        except BaseException:
            self._conn.close()
            raise
        logger.info(
            "opened gallery %s (schema v%d, %s)",
            self.path,
            self.schema_version,
            "encrypted" if self.encrypted else "not encrypted",
        )

    def _migrate(self) -> int:
        """Bring the schema up to :data:`SCHEMA_VERSION`, creating it for a new file."""
        conn = self._conn
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            if app_id not in (0, APPLICATION_ID):
                raise FaceAtlasError(
                    "gallery_corrupt", f"{self.path} is an SQLite file of another application", path=str(self.path)
                )
            if version > SCHEMA_VERSION:
                raise FaceAtlasError(
                    "gallery_too_new",
                    f"gallery {self.path} has schema v{version}; this version reads up to v{SCHEMA_VERSION}",
                    path=str(self.path),
                )
            if version == SCHEMA_VERSION:
                return version
            with self._write() as cur:
                version = int(cur.execute("PRAGMA user_version").fetchone()[0])
                if version == 0:
                    tables = cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                    if tables:
                        raise FaceAtlasError(
                            "gallery_corrupt",
                            f"{self.path} is an SQLite database but not a FaceAtlas gallery",
                            path=str(self.path),
                        )
                for step in range(version, SCHEMA_VERSION):
                    logger.info("gallery %s: migrating schema v%d -> v%d", self.path, step, step + 1)
                    MIGRATIONS[step](conn)
                if version == 0:
                    self._initialise_meta(cur)
                cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return SCHEMA_VERSION
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def _initialise_meta(self, cur: sqlite3.Cursor) -> None:
        """Write the identity rows of a new gallery and, with a key, its encryption parameters."""
        rows = {"format": FORMAT_NAME, "created_at": repr(time.time()), **self._identity_meta()}
        cur.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(rows.items()))
