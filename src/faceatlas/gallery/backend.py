"""Where a gallery keeps templates and how it searches them: backend interfaces and gallery URI parsing.

A gallery always keeps collections, persons, sample records, crops and the audit trail in one SQLite
file (:class:`~faceatlas.gallery.sqlite_store.SqliteStore`). Templates and 1:N search are the job of a
:class:`SearchBackend`:

* ``sqlite`` (default): templates live in the SQLite rows (optionally AES-GCM encrypted) and search
  runs on per-collection in-memory indexes (:mod:`faceatlas.gallery.memory_backend`).
* ``milvus-lite`` / ``milvus``: templates live only in Milvus (one Milvus collection per gallery
  collection, plus one of person centroids) and search runs in Milvus
  (:mod:`faceatlas.gallery.milvus_backend`). Such a backend is also the store's :class:`TemplateVault`:
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

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import numpy.typing as npt

from faceatlas.errors import InvalidInputError
from faceatlas.gallery.models import EmbeddingContract

if TYPE_CHECKING:
    from faceatlas.gallery.sqlite_store import WriteReceipt

BackendKind = Literal["sqlite", "milvus-lite", "milvus"]
Hits = list[list[tuple[int, float, int]]]  # per query: (person id, score, sample id), best first

META_SUFFIX = ".meta.sqlite"
DEFAULT_MILVUS_PORT = 19530
ENV_MILVUS_TOKEN = "FACEATLAS_MILVUS_TOKEN"  # noqa: S105 - the name of a variable, not a secret

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")  # two characters or more: not a Windows drive letter
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True, repr=False)
class GalleryLocation:
    """A parsed gallery location: backend kind, metadata file and, for Milvus, where the vectors live."""

    kind: BackendKind
    meta_path: Path
    lite_path: Path | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    token: str | None = None

    @property
    def uri(self) -> str:
        """The location as a URI without credentials."""
        if self.kind == "sqlite":
            return f"sqlite:{self.meta_path}"
        if self.kind == "milvus-lite":
            return f"milvus-lite:{self.lite_path}"
        db = f"/{self.database}" if self.database else ""
        return f"milvus://{self.host}:{self.port}{db}"

    def __repr__(self) -> str:
        return f"GalleryLocation({self.uri!r}, meta_path={str(self.meta_path)!r})"


def _strip_slashes(rest: str) -> str:
    """Turn ``//PATH`` (URI authority form with an empty host) into ``PATH``."""
    return rest[2:] if rest.startswith("//") else rest


def parse_location(
    target: str | os.PathLike[str], meta_path: str | os.PathLike[str] | None = None
) -> GalleryLocation:
    """Parse ``Gallery.open``'s first argument into a :class:`GalleryLocation` (``invalid_input`` if unusable)."""
    if isinstance(target, os.PathLike):
        if meta_path is not None:
            raise InvalidInputError("invalid_input", "meta_path only applies to Milvus galleries")
        return GalleryLocation("sqlite", Path(target))
    if not isinstance(target, str) or not target.strip():
        raise InvalidInputError("invalid_input", "a gallery location must be a non-empty path or URI")
    match = _SCHEME_RE.match(target)
    scheme = match.group(1).lower() if match else None
    if scheme is None or scheme == "sqlite":
        if meta_path is not None:
            raise InvalidInputError("invalid_input", "meta_path only applies to Milvus galleries")
        path = _strip_slashes(target[len("sqlite:") :]) if scheme else target
        if not path:
            raise InvalidInputError("invalid_input", "sqlite: needs a file path")
        return GalleryLocation("sqlite", Path(path))
    if scheme == "milvus-lite":
        lite = _strip_slashes(target[len("milvus-lite:") :])
        if not lite.endswith(".db") or lite == ".db":
            raise InvalidInputError(
                "invalid_input", f"a Milvus Lite location must name a path ending in '.db', not {lite!r}"
            )
        lite_path = Path(lite).expanduser().absolute()
        meta = Path(meta_path) if meta_path is not None else Path(str(lite_path) + META_SUFFIX)
        return GalleryLocation("milvus-lite", meta, lite_path=lite_path)
    if scheme == "milvus":
        return _parse_milvus_server(target, meta_path)
    raise InvalidInputError(
        "invalid_input",
        f"unknown gallery URI scheme {scheme!r} (use a path, sqlite:PATH, milvus-lite:PATH.db or milvus://host:port)",
    )


def _parse_milvus_server(target: str, meta_path: str | os.PathLike[str] | None) -> GalleryLocation:
    """Parse ``milvus://[user:password@]host:port[/database][?meta=PATH]``."""
    parts = urlsplit(target)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInputError("invalid_input", f"bad port in Milvus URI {target!r}") from None
    if not host:
        raise InvalidInputError("invalid_input", f"Milvus URI {target!r} has no host (milvus://host:port[/db])")
    database = parts.path.strip("/") or None
    if database is not None and not _DB_NAME_RE.match(database):
        raise InvalidInputError("invalid_input", f"bad Milvus database name {database!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"meta"}
    if unknown:
        raise InvalidInputError("invalid_input", f"unknown Milvus URI parameters: {sorted(unknown)}")
    meta_q = query.get("meta", [None])[-1]
    if meta_path is not None and meta_q:
        raise InvalidInputError("invalid_input", "give the metadata file either as meta_path or as ?meta=, not both")
    meta = meta_path if meta_path is not None else meta_q
    if not meta:
        raise InvalidInputError(
            "invalid_input",
            "a milvus:// gallery needs a local SQLite metadata file: pass meta_path=... or add ?meta=PATH to the URI",
        )
    token = None
    if parts.username is not None:
        token = unquote(parts.username) + (":" + unquote(parts.password) if parts.password is not None else "")
    return GalleryLocation(
        "milvus",
        Path(meta),
        host=host,
        port=port or DEFAULT_MILVUS_PORT,
        database=database,
        token=token or os.environ.get(ENV_MILVUS_TOKEN) or None,
    )


class TemplateVault(ABC):
    """Template storage outside the SQLite file; called by the store inside its write transactions."""

    store_kind: str = "external"

    @abstractmethod
    def bind_namespace(self, namespace: str) -> None:
        """Set the per-gallery prefix of every external name (kept in the metadata file)."""

    @abstractmethod
    def create_collection(self, collection_id: int, contract: EmbeddingContract) -> None:
        """Create the (empty) template storage of a new collection, replacing any leftover of that id."""

    @abstractmethod
    def drop_collection(self, collection_id: int) -> None:
        """Remove a collection's templates and centroids (no error if absent)."""

    @abstractmethod
    def put(
        self, collection_id: int, sample_ids: Sequence[int], person_id: int, vectors: npt.NDArray[np.float32]
    ) -> None:
        """Store (or replace) templates of one person under their sample ids."""

    @abstractmethod
    def delete(self, collection_id: int, sample_ids: Sequence[int]) -> None:
        """Remove templates by sample id (unknown ids are ignored)."""

    @abstractmethod
    def get(self, collection_id: int, sample_ids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """Return the stored templates of the ids that exist."""

    @abstractmethod
    def set_centroids(self, collection_id: int, person_samples: Mapping[int, Sequence[int]]) -> None:
        """Recompute the centroids of some persons from their current samples (none: drop the centroid)."""


class SearchBackend(ABC):
    """Template search of one gallery, told about every committed write by the ``Gallery`` facade."""

    kind: BackendKind = "sqlite"

    @abstractmethod
    def refresh(self) -> list[str]:
        """Pick up changes made elsewhere now; return the collections whose search state was rebuilt."""

    @abstractmethod
    def contract(self, collection: str) -> EmbeddingContract:
        """Return a collection's embedding contract (``not_found`` if the collection does not exist)."""

    @abstractmethod
    def search(self, collection: str, queries: npt.NDArray[np.float32], k: int, aggregate: str) -> Hits:
        """Best ``k`` persons per normalised query as ``(person id, score, sample id)``, best first."""

    @abstractmethod
    def index_info(self, collection: str) -> tuple[int, str | None]:
        """Return how many templates are searchable in a collection and the index kind."""

    @abstractmethod
    def collection_created(self, collection: str, collection_id: int, contract: EmbeddingContract) -> None:
        """React to a committed ``create_collection``."""

    @abstractmethod
    def collection_dropped(self, collection: str) -> None:
        """React to a committed ``delete_collection``."""

    @abstractmethod
    def collection_imported(self, collection: str) -> None:
        """React to a committed ``import_collection``."""

    @abstractmethod
    def samples_added(self, collection: str, receipt: WriteReceipt, vectors: npt.NDArray[np.float32]) -> None:
        """React to committed new samples."""

    @abstractmethod
    def samples_removed(self, collection: str, receipt: WriteReceipt, person_deleted: bool) -> None:
        """React to committed sample deletions (a whole person when ``person_deleted``)."""

    @abstractmethod
    def check(self) -> list[str]:
        """Read every template back and report the problems found."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds."""
