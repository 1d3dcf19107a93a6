"""API keys: created and revoked from the CLI, stored only as keyed hashes in ``$FACEATLAS_HOME/keys.db``.

A key looks like ``fak_<id>_<secret>``: the 12-hex-digit id is public (it names the key in logs and in
``faceatlas keys list``) and finds the row; the 256-bit random secret is checked against its HMAC-SHA-256 under a
server-side pepper (32 random bytes in ``keys.db.pepper``, owner-only, created once). A random 256-bit secret needs no
slow KDF, so a wrong secret costs microseconds, not a scrypt run an attacker could make the server pay for. Keys made
by older versions (salted scrypt) are verified with scrypt once and rewritten in the HMAC form on first use.
Revocation is read from the file on every request, so it takes effect at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from ..errors import InvalidInputError, NotFoundError

log = logging.getLogger(__name__)

#: Every scope a key can hold. ``admin`` implies read, enrol and delete; ``templates`` is only ever explicit.
SCOPES: tuple[str, ...] = ("read", "enrol", "delete", "admin", "templates")
ALL_COLLECTIONS = "*"
TOKEN_PREFIX = "fak_"  # noqa: S105 - the public prefix of every key, not a secret
_ID_HEX = 12
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_KDF_LABEL = "scrypt:n=16384,r=8,p=1"  # the legacy form, migrated on first successful use
_HMAC_LABEL = "hmac-sha256:pepper"
_PEPPER_BYTES = 32
_TOUCH_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kdf TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    collections TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
)
"""


def default_keys_path() -> Path:
    """Where the key file lives: ``$FACEATLAS_HOME/keys.db``."""
    return config.home_dir() / "keys.db"


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """Validate a comma-separated (or listed) set of scopes; ``enroll`` is accepted for ``enrol``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        s = raw.strip().lower()
        if not s:
            continue
        s = "enrol" if s == "enroll" else s
        if s not in SCOPES:
            raise InvalidInputError("invalid_input", f"unknown scope {raw!r}; choose from {', '.join(SCOPES)}")
        if s not in out:
            out.append(s)
    if not out:
        raise InvalidInputError("invalid_input", f"give at least one scope ({', '.join(SCOPES)})")
    return tuple(out)


def parse_collections(names: Iterable[str] | None) -> tuple[str, ...]:
    """Validate collection names a key is limited to; none (or ``*``) means every collection."""
    out: list[str] = []
    for raw in names or ():
        for part in raw.split(","):
            name = part.strip()
            if not name:
                continue
            if name == ALL_COLLECTIONS:
                return (ALL_COLLECTIONS,)
            if len(name) > 256 or any(ord(ch) < 32 for ch in name):
                raise InvalidInputError("invalid_input", "collection names must be 1-256 printable characters")
            if name not in out:
                out.append(name)
    return tuple(out) or (ALL_COLLECTIONS,)


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored: its public id, label, scopes, collections and lifecycle times (never the secret)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    collections: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the key has not been revoked."""
        return self.revoked_at is None

    def allows(self, scope: str, collection: str | None = None) -> bool:
        """Whether this key may perform ``scope`` (on ``collection`` when one is involved)."""
        granted = set(self.scopes)
        if "admin" in granted:
            granted |= {"read", "enrol", "delete"}
        if scope not in granted:
            return False
        return collection is None or self.covers(collection)

    def covers(self, collection: str) -> bool:
        """Whether the key's collection list includes ``collection``."""
        return ALL_COLLECTIONS in self.collections or collection in self.collections

    def to_dict(self) -> dict[str, Any]:
        """Serialise (no secret, no hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "collections": list(self.collections),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "active": self.active,
        }


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, or None."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    rest = token[len(TOKEN_PREFIX):]
    key_id, sep, secret = rest[:_ID_HEX], rest[_ID_HEX:_ID_HEX + 1], rest[_ID_HEX + 1:]
    if sep != "_" or len(key_id) != _ID_HEX or not secret or any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


def _hash_secret(secret: str, salt: bytes) -> bytes:
    """The legacy scrypt hash of a key's secret."""
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, **_SCRYPT)


def _mac(pepper: bytes, key_id: str, secret: str) -> bytes:
    """The stored form of a key: HMAC-SHA-256 of ``id_secret`` under the server's pepper."""
    return hmac.new(pepper, f"{key_id}_{secret}".encode(), hashlib.sha256).digest()


def load_pepper(path: Path) -> bytes:
    """The pepper in ``path``, created (32 random bytes, mode 0600) if missing; safe against concurrent creators."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_PEPPER_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: exactly one creator wins, nobody reads a half-written file
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: an exclusive create instead
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                try:
                    os.write(fd, tmp.read_bytes())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            tmp.unlink(missing_ok=True)
        data = path.read_bytes()
    if len(data) != _PEPPER_BYTES:
        raise RuntimeError(f"the key pepper {path} is damaged ({len(data)} bytes); restore it or remove the keys")
    return data


class KeyStore:
    """The API key file: create, list, revoke and authenticate keys; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_keys_path()
        self.pepper_path = Path(f"{self.path}.pepper")
        self._lock = threading.Lock()
        self._pepper_bytes: bytes | None = None
        self._local = threading.local()  # one read connection per thread (verification runs on every request)
        self._touched: dict[str, float] = {}
        self._ready = False

    # -- storage ----------------------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection to the key file (created with owner-only permissions)."""
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                self._ready = True
            yield conn
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        """This thread's long-lived read connection (autocommit: every query sees the latest revocations)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._connect():  # creates the file and schema on first use
                pass
            conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self._local.conn = conn
        return conn

    @property
    def _pepper(self) -> bytes:
        """The server-side pepper (read, or created, on first use)."""
        if self._pepper_bytes is None:
            self._pepper_bytes = load_pepper(self.pepper_path)
        return self._pepper_bytes

    @staticmethod
    def _record(row: tuple[Any, ...]) -> KeyRecord:
        """A KeyRecord from a row (id, name, scopes, collections, created, revoked, last used)."""
        return KeyRecord(
            id=row[0],
            name=row[1],
            scopes=tuple(s for s in row[2].split(",") if s),
            collections=tuple(c for c in row[3].split("\n") if c),
            created_at=row[4],
            revoked_at=row[5],
            last_used_at=row[6],
        )

    _COLUMNS = "id, name, scopes, collections, created_at, revoked_at, last_used_at"

    # -- management -------------------------------------------------------------------------------------------

    def create(self, scopes: str | Iterable[str], collections: Iterable[str] | None = None,
               name: str | None = None) -> tuple[KeyRecord, str]:
        """Make a new key; return its record and the full key text (shown once, never stored)."""
        scope_list = parse_scopes(scopes)
        coll_list = parse_collections(collections)
        label = (name or "").strip() or "key"
        if len(label) > 200 or any(ord(ch) < 32 for ch in label):
            raise InvalidInputError("invalid_input", "key names must be at most 200 printable characters")
        secret = secrets.token_urlsafe(32)
        pepper = self._pepper
        now = time.time()
        with self._connect() as conn:
            for _ in range(5):
                key_id = secrets.token_hex(_ID_HEX // 2)
                try:
                    conn.execute(
                        "INSERT INTO api_keys (id, name, kdf, salt, hash, scopes, collections, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key_id, label, _HMAC_LABEL, b"", _mac(pepper, key_id, secret), ",".join(scope_list),
                         "\n".join(coll_list), now),
                    )
                    break
                except sqlite3.IntegrityError:  # id collision: astronomically rare, try another
                    continue
            else:  # pragma: no cover
                raise RuntimeError("could not allocate a key id")
        record = KeyRecord(key_id, label, scope_list, coll_list, now)
        log.info("api key %s created (scopes %s)", key_id, ",".join(scope_list))
        return record, f"{TOKEN_PREFIX}{key_id}_{secret}"

    def list(self, include_revoked: bool = True) -> list[KeyRecord]:
        """Every key, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {self._COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()  # noqa: S608
        out = [self._record(r) for r in rows]
        return out if include_revoked else [r for r in out if r.active]

    def get(self, key_id: str) -> KeyRecord:
        """One key by id (``not_found`` if unknown)."""
        with self._connect() as conn:
            row = conn.execute(f"SELECT {self._COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()  # noqa: S608
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r}")
        return self._record(row)

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (it stops working at once, also in running servers); ``not_found`` if unknown."""
        key_id = key_id.strip()
        if key_id.startswith(TOKEN_PREFIX):
            parts = split_token(key_id)
            key_id = parts[0] if parts else key_id
        with self._connect() as conn:
            cur = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (time.time(), key_id))
            if cur.rowcount == 0:
                self.get(key_id)  # raises not_found for unknown ids; already-revoked keys fall through
        log.info("api key %s revoked", key_id)
        return self.get(key_id)

    def is_empty(self) -> bool:
        """Whether no key (active or revoked) has ever been created."""
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 0

    # -- authentication ---------------------------------------------------------------------------------------

    def authenticate(self, token: str) -> KeyRecord | None:
        """The active key matching ``token``, or None (malformed, unknown, wrong secret or revoked)."""
        return self.verify(token)[0]

    def verify(self, token: str, slow_ok: Callable[[str], bool] | None = None) -> tuple[KeyRecord | None, str | None]:
        """``(key, id)`` for a valid active key; ``(None, id)`` when the id is known but the key fails; ``(None, None)``.

        ``slow_ok(id)`` is asked before a legacy scrypt record is checked (False: fail without the scrypt run).
        """
        parts = split_token(token)
        if parts is None:
            return None, None
        key_id, secret = parts
        row = self._reader().execute(
            f"SELECT {self._COLUMNS}, kdf, salt, hash FROM api_keys WHERE id = ?", (key_id,)  # noqa: S608
        ).fetchone()
        if row is None:
            return None, None
        record = self._record(row[:7])
        kdf, salt, stored = row[7], row[8], row[9]
        if kdf == _HMAC_LABEL:
            ok = hmac.compare_digest(_mac(self._pepper, key_id, secret), stored)
        elif slow_ok is not None and not slow_ok(key_id):
            ok = False
        else:
            ok = hmac.compare_digest(_hash_secret(secret, salt), stored)
            if ok:
                self._migrate(key_id, secret, kdf)
        if not ok or not record.active:
            return None, key_id
        self._touch(key_id)
        return record, key_id

    def _migrate(self, key_id: str, secret: str, old_kdf: str) -> None:
        """Rewrite a verified legacy scrypt record in the HMAC form (best effort: it is retried on the next use)."""
        try:
            with self._connect() as conn:
                conn.execute("UPDATE api_keys SET kdf = ?, salt = ?, hash = ? WHERE id = ? AND kdf = ?",
                             (_HMAC_LABEL, b"", _mac(self._pepper, key_id, secret), key_id, old_kdf))
            log.info("api key %s migrated from scrypt to the peppered HMAC form", key_id)
        except sqlite3.Error as exc:
            log.warning("could not migrate api key %s: %s", key_id, exc)

    def _touch(self, key_id: str) -> None:
        """Record when a key was last used (at most once a minute per key and process)."""
        now = time.time()
        with self._lock:
            if now - self._touched.get(key_id, 0.0) < _TOUCH_SECONDS:
                return
            self._touched[key_id] = now
        try:
            with self._connect() as conn:
                conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
        except sqlite3.Error as exc:  # a busy key file must not fail the request
            log.warning("could not record key use: %s", exc)
