"""Where a gallery keeps templates and how it searches them: backend interfaces and gallery URI parsing.

A gallery always keeps collections, persons, sample records, crops and the audit trail in one SQLite
file (:class:`~faceatlas.gallery.store.SqliteStore`). Templates and 1:N search are the job of a
:class:`SearchBackend`:

* ``sqlite`` (default): templates live in the SQLite rows (optionally AES-GCM encrypted) and search
  runs on per-collection in-memory indexes (:mod:`faceatlas.gallery.backends.memory`).
* ``milvus-lite`` / ``milvus``: templates live only in Milvus (one Milvus collection per gallery
  collection, plus one of person centroids) and search runs in Milvus
  (:mod:`faceatlas.gallery.backends.milvus`). Such a backend is also the store's :class:`TemplateVault`:
  the SQLite rows then hold an empty template and every template write goes to Milvus inside the
  SQLite write transaction, before it commits.

Gallery locations (``Gallery.open``):

* a plain path, a ``pathlib.Path`` or ``sqlite:PATH``: the SQLite backend;
* ``milvus-lite:PATH``: Milvus Lite keeping its data in the folder ``PATH`` (must end in ``.db``),
  metadata in ``PATH.meta.sqlite`` unless ``meta_path`` says otherwise;
* ``milvus://[user:password@]host:port[/database][?meta=PATH]``: a Milvus server; the metadata file
  must be given (``meta_path=`` or ``?meta=``) since it cannot be derived from the server address.
"""

from __future__ import annotations

from faceatlas.gallery.backends.base import Hits, SearchBackend, TemplateVault
from faceatlas.gallery.backends.location import (
    DEFAULT_MILVUS_PORT,
    META_SUFFIX,
    BackendKind,
    GalleryLocation,
    parse_location,
)

__all__ = [
    "DEFAULT_MILVUS_PORT",
    "META_SUFFIX",
    "BackendKind",
    "GalleryLocation",
    "Hits",
    "SearchBackend",
    "TemplateVault",
    "parse_location",
]
