"""The gallery's SQLite store as one :class:`SqliteStore` object, assembled from its parts.

``schema`` (tables, migrations), ``connection`` (pragmas, busy retries, transactions, checkpoints),
``vault`` (template/crop sealing and the external template vault), ``rows`` (shared lookups and inserts),
``collection_ops`` / ``person_ops`` / ``sample_ops`` / ``exchange`` (the operations), ``validate`` (argument checks).
"""

from __future__ import annotations

from faceatlas.gallery.store.connection import DEFAULT_BUSY_TIMEOUT_S, ERASE_WAIT_S
from faceatlas.gallery.store.schema import APPLICATION_ID, FORMAT_NAME, SCHEMA_VERSION
from faceatlas.gallery.store.sqlite_store import SqliteStore
from faceatlas.gallery.store.validate import MAX_ROW_ID, check_sha256, check_text
from faceatlas.gallery.store.vault import crop_aad, template_aad

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_BUSY_TIMEOUT_S",
    "ERASE_WAIT_S",
    "FORMAT_NAME",
    "MAX_ROW_ID",
    "SCHEMA_VERSION",
    "SqliteStore",
    "check_sha256",
    "check_text",
    "crop_aad",
    "template_aad",
]
