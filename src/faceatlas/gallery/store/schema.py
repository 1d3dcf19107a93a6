"""The gallery file's schema: identity constants, table definitions, migrations and the schema check."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from faceatlas.errors import FaceAtlasError

FORMAT_NAME = "faceatlas-gallery"
APPLICATION_ID = 0x46414741  # "FAGA": marks the SQLite file as a FaceAtlas gallery
SCHEMA_VERSION = 1
INLINE_TEMPLATE_STORE = "sqlite"

_V1_STATEMENTS = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE collections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        model_id TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        dim INTEGER NOT NULL CHECK (dim > 0),
        preprocessing TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE persons (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        external_id TEXT NOT NULL,
        name TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        UNIQUE (collection_id, external_id)
    )""",
    """CREATE TABLE samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        quality REAL,
        detection_score REAL,
        box TEXT,
        image_sha256 TEXT,
        created_at REAL NOT NULL,
        template BLOB NOT NULL
    )""",
    "CREATE INDEX samples_by_person ON samples(person_id)",
    "CREATE INDEX samples_by_collection ON samples(collection_id)",
    """CREATE TABLE crops (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
        data BLOB NOT NULL
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        collection TEXT,
        person_id INTEGER,
        sample_ids TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX audit_by_collection ON audit(collection, id)",
)


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    """Create the first schema (from an empty file)."""
    for statement in _V1_STATEMENTS:
        conn.execute(statement)


# MIGRATIONS[i] upgrades a file from schema version i to i + 1 inside one write transaction.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_to_v1,)

EXPECTED_COLUMNS: dict[str, set[str]] = {
    "meta": {"key", "value"},
    "collections": {"id", "name", "created_at", "model_id", "model_sha256", "dim", "preprocessing", "generation"},
    "persons": {"id", "collection_id", "external_id", "name", "metadata", "created_at"},
    "samples": {
        "id", "collection_id", "person_id", "quality", "detection_score", "box", "image_sha256",
        "created_at", "template",
    },
    "crops": {"sample_id", "data"},
    "audit": {"id", "ts", "actor", "action", "collection", "person_id", "sample_ids"},
}


def validate_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Check that every expected table and column exists and the file says it is a gallery (sqlite3 errors pass)."""
    for table, columns in EXPECTED_COLUMNS.items():
        found = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not columns <= found:
            raise FaceAtlasError(
                "gallery_corrupt",
                f"gallery {path} has a damaged schema (table {table!r} is missing or incomplete)",
                path=str(path),
            )
    fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if fmt is None or fmt[0] != FORMAT_NAME:
        raise FaceAtlasError("gallery_corrupt", f"{path} is not a FaceAtlas gallery", path=str(path))
