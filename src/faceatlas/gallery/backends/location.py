"""Gallery locations: parsing ``Gallery.open``'s path or URI into a backend kind and where the data lives."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from faceatlas import config
from faceatlas.errors import InvalidInputError

BackendKind = Literal["sqlite", "milvus-lite", "milvus"]

META_SUFFIX = ".meta.sqlite"
DEFAULT_MILVUS_PORT = 19530

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
        token=token or config.milvus_token() or None,
    )
