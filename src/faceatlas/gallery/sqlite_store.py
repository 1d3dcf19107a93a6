"""SQLite persistence for a gallery: one file, WAL, multi-process writers, audit trail, optional encryption.

Templates are stored as little-endian float32 bytes, or sealed with AES-256-GCM when the gallery
is encrypted (associated data binds each blob to its collection and sample id). A store opened with a
:class:`~faceatlas.gallery.backend.TemplateVault` (the Milvus backend) keeps an empty template in each
row instead and writes templates to the vault inside its write transactions, before they commit
(external changes are undone, best effort, when a transaction does not commit). Deleted rows are
overwritten (``secure_delete``) and the WAL is checkpointed and truncated after every delete, so
deleted templates do not linger in the files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.backend import TemplateVault
from faceatlas.gallery.crypto import (
    ALGORITHM,
    KdfParams,
    KeyMaterial,
    TemplateCipher,
    decode_b64,
    encode_b64,
    new_salt,
)
from faceatlas.gallery.models import AuditEvent, Collection, EmbeddingContract, Person, Sample
from faceatlas.types import Box, Template

logger = logging.getLogger(__name__)

FORMAT_NAME = "faceatlas-gallery"
APPLICATION_ID = 0x46414741  # "FAGA": marks the SQLite file as a FaceAtlas gallery
SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT_S = 30.0
INLINE_TEMPLATE_STORE = "sqlite"
_VAULT_CHUNK = 1000

PersonRef = int | str
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

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

_EXPECTED_COLUMNS: dict[str, set[str]] = {
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


@dataclass(frozen=True, eq=False)
class NewSample:
    """A sample to store: normalised float32 vector plus its optional provenance and crop."""

    vector: npt.NDArray[np.float32]
    quality: float | None = None
    detection_score: float | None = None
    box: Box | None = None
    image_sha256: str | None = None
    crop: bytes | None = None


@dataclass(frozen=True)
class WriteReceipt:
    """What a committed write changed: ids touched and the collection generation before and after."""

    collection_id: int
    generation_before: int
    generation_after: int
    person_id: int | None = None
    sample_ids: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class LoadedVectors:
    """A consistent snapshot of one collection's templates for building an index."""

    collection_id: int
    generation: int
    contract: EmbeddingContract
    sample_ids: npt.NDArray[np.int64]
    person_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]


@dataclass(frozen=True)
class CollectionBrief:
    """What a search needs to know about a collection: id, contract, sample count and persons with samples."""

    id: int
    name: str
    contract: EmbeddingContract
    samples: int
    persons_with_samples: int


@dataclass(frozen=True, eq=False)
class ExportPerson:
    """One person with its samples, their exact stored template vectors and crops, as streamed for export."""

    person: Person
    samples: tuple[Sample, ...]
    vectors: tuple[npt.NDArray[np.float32], ...]
    crops: tuple[bytes | None, ...]


def template_aad(collection_id: int, sample_id: int) -> bytes:
    """Associated data binding a stored template blob to its row."""
    return f"faceatlas:template:{collection_id}:{sample_id}".encode()


def crop_aad(collection_id: int, sample_id: int) -> bytes:
    """Associated data binding a stored crop blob to its row."""
    return f"faceatlas:crop:{collection_id}:{sample_id}".encode()


def _translate(exc: sqlite3.Error, path: Path) -> FaceAtlasError:
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


def _check_text(value: object, what: str, max_len: int = 1024, allow_empty: bool = False) -> str:
    """Validate a short text argument."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()) or len(value) > max_len:
        raise InvalidInputError("invalid_input", f"{what} must be a non-empty string of at most {max_len} characters")
    return value


def _bad_text() -> InvalidInputError:
    """The error for a name or id that is not valid Unicode text (e.g. a lone surrogate from a bad decode)."""
    return InvalidInputError("invalid_input", "names and ids must be valid Unicode text (lone surrogates are not)")


def check_sha256(value: object, what: str = "image_sha256") -> str | None:
    """Validate an optional sha256 hex digest and return it in lowercase."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.match(value.lower()):
        raise InvalidInputError("invalid_input", f"{what} must be 64 hexadecimal characters")
    return value.lower()


class SqliteStore:
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
        self.path = Path(path)
        if vault is not None and key is not None:
            raise FaceAtlasError(
                "gallery_key_unsupported",
                f"templates kept in {vault.store_kind} must stay searchable, so they cannot be encrypted "
                f"(key from {key.source}); use the SQLite backend for encryption at rest",
            )
        self._vault = vault
        self._lock = threading.RLock()
        self._busy_timeout = float(busy_timeout)
        self._cipher: TemplateCipher | None = None
        self._key = key
        self._kdf_params: KdfParams | None = None
        self._salt: bytes | None = None
        self._prepare_file(create)
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        try:
            self._configure()
            self.schema_version = self._migrate()
            self._validate_schema()
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

    # ------------------------------------------------------------------ opening

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
            raise _translate(exc, self.path) from None

    def _retry_busy(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` retrying 'database is locked' until the busy timeout (some pragmas skip the busy handler)."""
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

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
            raise _translate(exc, self.path) from None

    def _initialise_meta(self, cur: sqlite3.Cursor) -> None:
        """Write the identity rows of a new gallery and, with a key, its encryption parameters."""
        rows = {"format": FORMAT_NAME, "created_at": repr(time.time())}
        if self._vault is None:
            rows["template_store"] = INLINE_TEMPLATE_STORE
        else:
            rows["template_store"] = self._vault.store_kind
            rows["template_namespace"] = "fa" + secrets.token_hex(6)
        if self._key is not None:
            salt = new_salt()
            params = KdfParams()
            cipher = TemplateCipher.from_material(self._key, salt, params)
            rows["encryption"] = json.dumps(
                {"algorithm": ALGORITHM, "salt": encode_b64(salt), "passphrase_kdf": params.to_dict()}
            )
            rows["key_check"] = encode_b64(cipher.make_key_check())
        cur.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(rows.items()))

    def _validate_schema(self) -> None:
        """Check that every expected table and column exists and the file says it is a gallery."""
        try:
            for table, columns in _EXPECTED_COLUMNS.items():
                found = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
                if not columns <= found:
                    raise FaceAtlasError(
                        "gallery_corrupt",
                        f"gallery {self.path} has a damaged schema (table {table!r} is missing or incomplete)",
                        path=str(self.path),
                    )
            fmt = self._conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        if fmt is None or fmt[0] != FORMAT_NAME:
            raise FaceAtlasError("gallery_corrupt", f"{self.path} is not a FaceAtlas gallery", path=str(self.path))

    def _check_template_store(self) -> None:
        """Refuse a file whose templates live elsewhere than this store expects, and bind the vault's namespace."""
        meta = self.meta()
        stored = meta.get("template_store", INLINE_TEMPLATE_STORE)
        expected = INLINE_TEMPLATE_STORE if self._vault is None else self._vault.store_kind
        if stored != expected:
            raise FaceAtlasError(
                "gallery_backend_mismatch",
                f"gallery {self.path} keeps its templates in {stored!r}, not {expected!r}: open it with a "
                f"{'path or sqlite: URI' if stored == INLINE_TEMPLATE_STORE else 'milvus-lite: or milvus:// URI'}",
                path=str(self.path),
            )
        if self._vault is not None:
            namespace = meta.get("template_namespace")
            if not namespace or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{1,63}", namespace):
                raise FaceAtlasError(
                    "gallery_corrupt", f"gallery {self.path} has a damaged template namespace", path=str(self.path)
                )
            self._vault.bind_namespace(namespace)

    @property
    def template_store(self) -> str:
        """Where templates are kept: ``sqlite`` (inline rows) or the vault's kind (e.g. ``milvus``)."""
        return INLINE_TEMPLATE_STORE if self._vault is None else self._vault.store_kind

    def _setup_encryption(self) -> None:
        """Derive the data key and verify it against the stored key check, or refuse a missing/unexpected key."""
        meta = self.meta()
        info_text = meta.get("encryption")
        if info_text is None:
            if self._key is not None:
                raise FaceAtlasError(
                    "gallery_not_encrypted",
                    f"gallery {self.path} was created without encryption but a key was given ({self._key.source})",
                    path=str(self.path),
                )
            return
        if self._key is None:
            raise FaceAtlasError(
                "gallery_key_missing",
                f"gallery {self.path} is encrypted; pass a key or set FACEATLAS_KEY / FACEATLAS_KEY_FILE",
                path=str(self.path),
            )
        try:
            info = json.loads(info_text)
            salt = decode_b64(info["salt"])
            params = KdfParams.from_dict(info["passphrase_kdf"])
            check = decode_b64(meta["key_check"])
        except (ValueError, KeyError, TypeError, InvalidInputError):
            raise FaceAtlasError(
                "gallery_corrupt", f"gallery {self.path} has damaged encryption metadata", path=str(self.path)
            ) from None
        if info.get("algorithm") != ALGORITHM:
            raise FaceAtlasError("gallery_corrupt", f"unsupported gallery cipher {info.get('algorithm')!r}")
        cipher = TemplateCipher.from_material(self._key, salt, params)
        if not cipher.verify_key_check(check):
            raise FaceAtlasError(
                "gallery_key_wrong",
                f"the key from {self._key.source} does not open gallery {self.path}",
                path=str(self.path),
            )
        self._cipher, self._salt, self._kdf_params = cipher, salt, params

    # ------------------------------------------------------------------ plumbing

    @property
    def encrypted(self) -> bool:
        """Whether templates are sealed at rest."""
        return self._cipher is not None

    @property
    def key_material(self) -> KeyMaterial | None:
        """The key material this store was opened with (for encrypted exports)."""
        return self._key if self._cipher is not None else None

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
            return _translate(exc, self.path)
        if isinstance(exc, UnicodeEncodeError):
            return _bad_text()
        return None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """Run a block in a ``BEGIN IMMEDIATE`` transaction under the connection lock."""
        with self._lock:
            conn = self._connection()
            try:
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from None
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

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it; return False if readers kept it from finishing."""
        with self._lock:
            conn = self._connection()
            try:
                busy, _log, _done = self._retry_busy(
                    lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                )
            except sqlite3.Error as exc:
                logger.warning("gallery %s: WAL checkpoint failed: %s", self.path, exc)
                return False
        if busy:
            logger.warning(
                "gallery %s: WAL checkpoint blocked by another connection; deleted data stays in the WAL until "
                "the next checkpoint",
                self.path,
            )
            return False
        return True

    @contextmanager
    def _vault_write(self) -> Iterator[tuple[sqlite3.Cursor, list[Callable[[], None]]]]:
        """A write transaction whose vault changes are undone (best effort, newest first) if it does not commit."""
        undo: list[Callable[[], None]] = []
        try:
            with self._write() as cur:
                yield cur, undo
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception:
                    logger.warning("gallery %s: could not undo a template-store change", self.path, exc_info=True)
            raise

    def _template_blob(self, vec: npt.NDArray[np.float32], collection_id: int, sample_id: int) -> bytes:
        """The template column of a new row: the (sealed) vector, or empty when a vault keeps templates."""
        if self._vault is not None:
            return b""
        return self._seal(vec.tobytes(), template_aad(collection_id, sample_id))

    def _vault_vectors(self, collection_id: int, sample_ids: Sequence[int], dim: int) -> npt.NDArray[np.float32]:
        """Fetch templates from the vault in order, failing with ``gallery_corrupt`` if one is missing."""
        assert self._vault is not None
        out = np.empty((len(sample_ids), dim), dtype=np.float32)
        for start in range(0, len(sample_ids), _VAULT_CHUNK):
            chunk = [int(s) for s in sample_ids[start : start + _VAULT_CHUNK]]
            got = self._vault.get(collection_id, chunk)
            for i, sid in enumerate(chunk):
                vec = got.get(sid)
                if vec is None or vec.shape != (dim,):
                    raise FaceAtlasError(
                        "gallery_corrupt",
                        f"sample {sid} has no template of dimension {dim} in the {self._vault.store_kind} store",
                    )
                out[start + i] = vec
        return out

    def _vault_add(
        self,
        undo: list[Callable[[], None]],
        collection_id: int,
        person_id: int,
        sample_ids: list[int],
        vectors: list[npt.NDArray[np.float32]],
        person_samples: list[int],
    ) -> None:
        """Write new templates and the person's centroid to the vault, registering how to take them back."""
        vault = self._vault
        assert vault is not None
        before = [s for s in person_samples if s not in set(sample_ids)]

        def take_back() -> None:
            """Remove the templates again and restore the previous centroid."""
            vault.delete(collection_id, sample_ids)
            vault.set_centroids(collection_id, {person_id: before})

        undo.append(take_back)
        vault.put(collection_id, sample_ids, person_id, np.stack(vectors).astype(np.float32))
        vault.set_centroids(collection_id, {person_id: person_samples})

    def _vault_remove(
        self,
        undo: list[Callable[[], None]],
        collection_id: int,
        person_id: int,
        sample_ids: list[int],
        remaining: list[int],
    ) -> None:
        """Delete templates (and fix the person's centroid) in the vault, keeping copies to restore them."""
        vault = self._vault
        assert vault is not None
        if not sample_ids:
            vault.set_centroids(collection_id, {person_id: remaining})
            return
        kept = vault.get(collection_id, sample_ids)

        def put_back() -> None:
            """Store the deleted templates again and restore the centroid."""
            if kept:
                ids = sorted(kept)
                vault.put(collection_id, ids, person_id, np.stack([kept[i] for i in ids]))
            vault.set_centroids(collection_id, {person_id: sorted(remaining + sample_ids)})

        undo.append(put_back)
        vault.delete(collection_id, sample_ids)
        vault.set_centroids(collection_id, {person_id: remaining})

    @staticmethod
    def _sample_ids_of(cur: sqlite3.Cursor, person_id: int) -> list[int]:
        """Return a person's sample ids, in id order, as the current transaction sees them."""
        return [int(r[0]) for r in cur.execute("SELECT id FROM samples WHERE person_id = ? ORDER BY id", (person_id,))]

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

    def _seal(self, data: bytes, aad: bytes) -> bytes:
        """Encrypt a blob when the gallery is encrypted, else return it unchanged."""
        return self._cipher.encrypt(data, aad) if self._cipher is not None else data

    def _open_blob(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a stored blob when the gallery is encrypted, else return it unchanged."""
        return self._cipher.decrypt(bytes(blob), aad) if self._cipher is not None else bytes(blob)

    def _decode_template(self, blob: bytes, collection_id: int, sample_id: int, dim: int) -> npt.NDArray[np.float32]:
        """Turn a stored template blob back into a float32 vector, checking its size."""
        raw = self._open_blob(blob, template_aad(collection_id, sample_id))
        if len(raw) != 4 * dim:
            raise FaceAtlasError(
                "gallery_corrupt", f"sample {sample_id} has a template of {len(raw)} bytes, expected {4 * dim}"
            )
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    # ------------------------------------------------------------------ meta

    def meta(self) -> dict[str, str]:
        """Return the gallery's key/value metadata rows."""
        with self._read() as cur:
            return {str(k): str(v) for k, v in cur.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------------ collections

    @staticmethod
    def _collection_from_row(row: Sequence[Any]) -> Collection:
        """Build a Collection from ``id, name, created_at, model_id, model_sha256, dim, preprocessing[, p, s]``."""
        contract = EmbeddingContract(str(row[3]), str(row[4]), int(row[5]), str(row[6]))
        persons = int(row[7]) if len(row) > 7 else 0
        samples = int(row[8]) if len(row) > 8 else 0
        return Collection(int(row[0]), str(row[1]), float(row[2]), contract, persons, samples)

    _COLLECTION_SELECT = (
        "SELECT c.id, c.name, c.created_at, c.model_id, c.model_sha256, c.dim, c.preprocessing, "
        "(SELECT count(*) FROM persons p WHERE p.collection_id = c.id), "
        "(SELECT count(*) FROM samples s WHERE s.collection_id = c.id) FROM collections c"
    )

    def _collection_row(self, cur: sqlite3.Cursor, name: str) -> tuple[Any, ...]:
        """Fetch ``id, name, created_at, model_id, model_sha256, dim, preprocessing, generation`` or raise."""
        row = cur.execute(
            "SELECT id, name, created_at, model_id, model_sha256, dim, preprocessing, generation "
            "FROM collections WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"collection {name!r} does not exist", collection=name)
        return tuple(row)

    def create_collection(self, name: str, contract: EmbeddingContract, actor: str) -> Collection:
        """Create a collection pinned to an embedding contract (``conflict`` if the name is taken)."""
        _check_text(name, "collection name", 256)
        _check_text(contract.model_id, "model_id", 256)
        sha = check_sha256(contract.model_sha256, "model_sha256") if contract.model_sha256 else ""
        if isinstance(contract.dim, bool) or not isinstance(contract.dim, int) or contract.dim <= 0:
            raise InvalidInputError("invalid_input", "dim must be a positive integer")
        _check_text(contract.preprocessing, "preprocessing", 256)
        now = time.time()
        pinned = EmbeddingContract(contract.model_id, sha or "", contract.dim, contract.preprocessing)
        with self._vault_write() as (cur, undo):
            if cur.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                raise FaceAtlasError("conflict", f"collection {name!r} already exists", collection=name)
            cur.execute(
                "INSERT INTO collections (name, created_at, model_id, model_sha256, dim, preprocessing) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, now, contract.model_id, sha, contract.dim, contract.preprocessing),
            )
            cid = int(cur.lastrowid or 0)
            self._audit(cur, actor, "create_collection", name)
            vault = self._vault
            if vault is not None:
                undo.append(lambda: vault.drop_collection(cid))
                vault.create_collection(cid, pinned)
        logger.info("created collection %r (model %s, dim %d)", name, contract.model_id, contract.dim)
        return Collection(cid, name, now, pinned)

    def get_collection(self, name: str) -> Collection:
        """Return one collection with its counts (``NotFoundError`` if absent)."""
        with self._read() as cur:
            row = cur.execute(self._COLLECTION_SELECT + " WHERE c.name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"collection {name!r} does not exist", collection=name)
        return self._collection_from_row(row)

    def list_collections(self) -> list[Collection]:
        """Return all collections, by name."""
        with self._read() as cur:
            rows = cur.execute(self._COLLECTION_SELECT + " ORDER BY c.name").fetchall()
        return [self._collection_from_row(r) for r in rows]

    def collection_states(self) -> dict[str, tuple[int, int]]:
        """Return ``name -> (collection id, generation)`` for change detection."""
        with self._read() as cur:
            return {str(n): (int(i), int(g)) for i, n, g in cur.execute("SELECT id, name, generation FROM collections")}

    def collection_state(self, name: str) -> tuple[int, int] | None:
        """Return ``(collection id, generation)`` of one collection, or ``None`` if it does not exist."""
        with self._read() as cur:
            row = cur.execute("SELECT id, generation FROM collections WHERE name = ?", (name,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def delete_collection(self, name: str, actor: str) -> WriteReceipt:
        """Delete a collection with all its persons, samples and crops, then scrub the WAL."""
        with self._write() as cur:
            row = self._collection_row(cur, name)
            cid, gen = int(row[0]), int(row[7])
            sample_ids = [int(r[0]) for r in cur.execute("SELECT id FROM samples WHERE collection_id = ?", (cid,))]
            if self._vault is not None:  # not undoable: a failed commit leaves rows without templates (see check)
                self._vault.drop_collection(cid)
            cur.execute("DELETE FROM collections WHERE id = ?", (cid,))
            self._audit(cur, actor, "delete_collection", name, None, sample_ids)
        self.checkpoint()
        logger.info("deleted collection %r (%d samples)", name, len(sample_ids))
        return WriteReceipt(cid, gen, gen + 1, None, tuple(sample_ids))

    # ------------------------------------------------------------------ persons

    def _person_row(
        self, cur: sqlite3.Cursor, collection_id: int, collection: str, person: PersonRef
    ) -> tuple[Any, ...]:
        """Fetch ``id, external_id, name, metadata, created_at`` of a person by internal id or external id."""
        base = "SELECT id, external_id, name, metadata, created_at FROM persons WHERE collection_id = ? AND "
        if isinstance(person, bool) or not isinstance(person, (int, str, np.integer)):
            raise InvalidInputError("invalid_input", "a person is referenced by internal id (int) or external id (str)")
        if isinstance(person, str):
            row = cur.execute(base + "external_id = ?", (collection_id, person)).fetchone()
        else:
            row = cur.execute(base + "id = ?", (collection_id, int(person))).fetchone()
        if row is None:
            raise NotFoundError(f"person {person!r} not found in collection {collection!r}", collection=collection)
        return tuple(row)

    @staticmethod
    def _person_from_row(row: Sequence[Any], collection: str, samples: int) -> Person:
        """Build a Person from ``id, external_id, name, metadata, created_at``."""
        return Person(
            int(row[0]), collection, str(row[1]), row[2], json.loads(row[3] or "{}"), float(row[4]), samples
        )

    def add_person(
        self,
        collection: str,
        external_id: str,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        actor: str,
    ) -> Person:
        """Add a person (``conflict`` if the external id is already used in the collection)."""
        _check_text(external_id, "external_id", 512)
        if name is not None:
            _check_text(name, "name", 1024, allow_empty=True)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError("invalid_input", "metadata must be a JSON object (mapping) or None")
        try:
            meta_text = json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError("invalid_input", "metadata must be JSON-serialisable") from None
        now = time.time()
        with self._write() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            if cur.execute(
                "SELECT 1 FROM persons WHERE collection_id = ? AND external_id = ?", (cid, external_id)
            ).fetchone():
                raise FaceAtlasError(
                    "conflict",
                    f"person {external_id!r} already exists in collection {collection!r}",
                    collection=collection,
                    external_id=external_id,
                )
            cur.execute(
                "INSERT INTO persons (collection_id, external_id, name, metadata, created_at) VALUES (?, ?, ?, ?, ?)",
                (cid, external_id, name, meta_text, now),
            )
            pid = int(cur.lastrowid or 0)
            self._audit(cur, actor, "add_person", collection, pid)
        return Person(pid, collection, external_id, name, json.loads(meta_text), now, 0)

    def get_person(self, collection: str, person: PersonRef) -> Person:
        """Return a person by internal id or external id."""
        with self._read() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            row = self._person_row(cur, cid, collection, person)
            count = cur.execute("SELECT count(*) FROM samples WHERE person_id = ?", (row[0],)).fetchone()[0]
        return self._person_from_row(row, collection, int(count))

    def list_persons(self, collection: str, limit: int | None = None, offset: int = 0) -> list[Person]:
        """Return persons of a collection ordered by internal id, optionally paged."""
        lim = -1 if limit is None else int(limit)
        with self._read() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            rows = cur.execute(
                "SELECT p.id, p.external_id, p.name, p.metadata, p.created_at, "
                "(SELECT count(*) FROM samples s WHERE s.person_id = p.id) "
                "FROM persons p WHERE p.collection_id = ? ORDER BY p.id LIMIT ? OFFSET ?",
                (cid, lim, int(offset)),
            ).fetchall()
        return [self._person_from_row(r, collection, int(r[5])) for r in rows]

    def person_labels(self, person_ids: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        """Return ``person id -> (external id, name)`` for the ids that still exist."""
        ids = sorted({int(p) for p in person_ids})
        out: dict[int, tuple[str, str | None]] = {}
        with self._read() as cur:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for pid, ext, name in cur.execute(
                    f"SELECT id, external_id, name FROM persons WHERE id IN ({marks})", chunk  # noqa: S608
                ):
                    out[int(pid)] = (str(ext), name)
        return out

    def collection_brief(self, name: str) -> CollectionBrief:
        """Return a collection's id, contract, sample count and number of persons with samples."""
        with self._read() as cur:
            crow = self._collection_row(cur, name)
            cid = int(crow[0])
            n, persons = cur.execute(
                "SELECT count(*), count(DISTINCT person_id) FROM samples WHERE collection_id = ?", (cid,)
            ).fetchone()
        contract = EmbeddingContract(str(crow[3]), str(crow[4]), int(crow[5]), str(crow[6]))
        return CollectionBrief(cid, name, contract, int(n), int(persons))

    def sample_owners(self, collection_id: int, sample_ids: Iterable[int]) -> dict[int, int]:
        """Return ``sample id -> person id`` for the given samples that exist in the collection."""
        ids = sorted({int(s) for s in sample_ids})
        out: dict[int, int] = {}
        with self._read() as cur:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for sid, pid in cur.execute(
                    f"SELECT id, person_id FROM samples WHERE collection_id = ? AND id IN ({marks})",  # noqa: S608
                    [collection_id, *chunk],
                ):
                    out[int(sid)] = int(pid)
        return out

    def person_sample_ids(self, collection_id: int, person_ids: Iterable[int]) -> dict[int, list[int]]:
        """Return ``person id -> sample ids`` (in id order) for the given persons that have samples."""
        ids = sorted({int(p) for p in person_ids})
        out: dict[int, list[int]] = {}
        with self._read() as cur:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for sid, pid in cur.execute(
                    f"SELECT id, person_id FROM samples WHERE collection_id = ? AND person_id IN ({marks}) "  # noqa: S608
                    "ORDER BY id",
                    [collection_id, *chunk],
                ):
                    out.setdefault(int(pid), []).append(int(sid))
        return out

    def delete_person(self, collection: str, person: PersonRef, actor: str) -> WriteReceipt:
        """Delete a person with all its samples and crops, then scrub the WAL."""
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, gen = int(crow[0]), int(crow[7])
            pid = int(self._person_row(cur, cid, collection, person)[0])
            sample_ids = self._sample_ids_of(cur, pid)
            if self._vault is not None:
                self._vault_remove(undo, cid, pid, sample_ids, [])
            cur.execute("DELETE FROM persons WHERE id = ?", (pid,))
            new_gen = gen
            if sample_ids:
                new_gen = gen + 1
                cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (new_gen, cid))
            self._audit(cur, actor, "delete_person", collection, pid, sample_ids)
        self.checkpoint()
        logger.debug("deleted person %d from %r (%d samples)", pid, collection, len(sample_ids))
        return WriteReceipt(cid, gen, new_gen, pid, tuple(sample_ids))

    # ------------------------------------------------------------------ samples

    @staticmethod
    def _next_sample_id(cur: sqlite3.Cursor) -> int:
        """Return the id the next sample gets (ids are never reused; call inside a write transaction)."""
        seq_row = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'samples'").fetchone()
        max_row = cur.execute("SELECT max(id) FROM samples").fetchone()
        return max(int(seq_row[0]) if seq_row else 0, int(max_row[0] or 0)) + 1

    def add_samples(
        self, collection: str, person: PersonRef, samples: Sequence[NewSample], actor: str, model_id: str | None = None
    ) -> WriteReceipt:
        """Store samples for a person in one transaction (checking the collection's contract) and return their ids."""
        now = time.time()
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, dim, gen = int(crow[0]), int(crow[5]), int(crow[7])
            if model_id is not None and model_id != crow[3]:
                raise FaceAtlasError(
                    "model_mismatch",
                    f"templates from model {model_id!r} cannot be added to collection {collection!r} "
                    f"(model {crow[3]!r})",
                    collection=collection,
                )
            pid = int(self._person_row(cur, cid, collection, person)[0])
            next_id = self._next_sample_id(cur)
            ids: list[int] = []
            vectors: list[npt.NDArray[np.float32]] = []
            for offset, item in enumerate(samples):
                vec = np.asarray(item.vector, dtype="<f4").reshape(-1)
                if vec.shape[0] != dim:
                    raise FaceAtlasError("model_mismatch", f"template has dim {vec.shape[0]}, collection expects {dim}")
                sid = next_id + offset
                box = json.dumps(item.box.to_list()) if item.box is not None else None
                cur.execute(
                    "INSERT INTO samples (id, collection_id, person_id, quality, detection_score, box, "
                    "image_sha256, created_at, template) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid, cid, pid, item.quality, item.detection_score, box, item.image_sha256, now,
                        self._template_blob(vec, cid, sid),
                    ),
                )
                if item.crop is not None:
                    cur.execute(
                        "INSERT INTO crops (sample_id, data) VALUES (?, ?)",
                        (sid, self._seal(bytes(item.crop), crop_aad(cid, sid))),
                    )
                ids.append(sid)
                vectors.append(vec)
            if self._vault is not None and ids:
                self._vault_add(undo, cid, pid, ids, vectors, self._sample_ids_of(cur, pid))
            new_gen = gen + 1 if ids else gen
            if ids:
                cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (new_gen, cid))
            self._audit(cur, actor, "enrol", collection, pid, ids)
        logger.debug("enrolled %d samples for person %d in %r", len(ids), pid, collection)
        return WriteReceipt(cid, gen, new_gen, pid, tuple(ids))

    def delete_sample(self, collection: str, sample_id: int, actor: str) -> WriteReceipt:
        """Delete one sample (and its crop), then scrub the WAL."""
        if isinstance(sample_id, bool) or not isinstance(sample_id, (int, np.integer)):
            raise InvalidInputError("invalid_input", "sample_id must be an integer")
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, gen = int(crow[0]), int(crow[7])
            row = cur.execute(
                "SELECT person_id FROM samples WHERE id = ? AND collection_id = ?", (int(sample_id), cid)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"sample {sample_id} not found in collection {collection!r}", collection=collection)
            if self._vault is not None:
                pid = int(row[0])
                remaining = [s for s in self._sample_ids_of(cur, pid) if s != int(sample_id)]
                self._vault_remove(undo, cid, pid, [int(sample_id)], remaining)
            cur.execute("DELETE FROM samples WHERE id = ?", (int(sample_id),))
            cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (gen + 1, cid))
            self._audit(cur, actor, "delete_sample", collection, int(row[0]), [int(sample_id)])
        self.checkpoint()
        return WriteReceipt(cid, gen, gen + 1, int(row[0]), (int(sample_id),))

    _SAMPLE_COLUMNS = (
        "s.id, s.person_id, s.quality, s.detection_score, s.box, s.image_sha256, s.created_at, "
        "EXISTS (SELECT 1 FROM crops c WHERE c.sample_id = s.id)"
    )

    def _sample_from_row(
        self, row: Sequence[Any], collection: str, template: Template | None = None
    ) -> Sample:
        """Build a Sample from the :attr:`_SAMPLE_COLUMNS` selection."""
        box = Box(*json.loads(row[4])) if row[4] else None
        return Sample(
            int(row[0]), int(row[1]), collection, row[2], row[3], box, row[5], float(row[6]), bool(row[7]), template
        )

    def get_sample(self, collection: str, sample_id: int, include_template: bool = False) -> Sample:
        """Return one sample's record, with its decrypted template only when asked."""
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, model_id, dim = int(crow[0]), str(crow[3]), int(crow[5])
            row = cur.execute(
                f"SELECT {self._SAMPLE_COLUMNS}, s.template FROM samples s "  # noqa: S608
                "WHERE s.id = ? AND s.collection_id = ?",
                (int(sample_id), cid),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"sample {sample_id} not found in collection {collection!r}", collection=collection)
        template = None
        if include_template:
            if self._vault is not None:
                vec = self._vault_vectors(cid, [int(row[0])], dim)[0]
            else:
                vec = self._decode_template(row[8], cid, int(row[0]), dim)
            template = Template(vec, model_id)
        return self._sample_from_row(row, collection, template)

    def known_image_hashes(self, collection: str, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` are source-image hashes of samples already in the collection."""
        wanted = sorted({h for h in hashes if h})
        found: set[str] = set()
        with self._read() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = cur.execute(
                    f"SELECT DISTINCT image_sha256 FROM samples WHERE collection_id = ? AND image_sha256 IN ({marks})",  # noqa: S608
                    (cid, *chunk),
                ).fetchall()
                found.update(str(r[0]) for r in rows)
        return found

    def list_samples(self, collection: str, person: PersonRef) -> list[Sample]:
        """Return a person's samples (without templates) ordered by id."""
        with self._read() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            pid = int(self._person_row(cur, cid, collection, person)[0])
            rows = cur.execute(
                f"SELECT {self._SAMPLE_COLUMNS} FROM samples s WHERE s.person_id = ? ORDER BY s.id",  # noqa: S608
                (pid,),
            ).fetchall()
        return [self._sample_from_row(r, collection) for r in rows]

    def get_crop(self, collection: str, sample_id: int) -> bytes | None:
        """Return a sample's stored crop bytes (decrypted), or ``None`` if none was stored."""
        with self._read() as cur:
            cid = int(self._collection_row(cur, collection)[0])
            row = cur.execute(
                "SELECT s.id, c.data FROM samples s LEFT JOIN crops c ON c.sample_id = s.id "
                "WHERE s.id = ? AND s.collection_id = ?",
                (int(sample_id), cid),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"sample {sample_id} not found in collection {collection!r}", collection=collection)
        return None if row[1] is None else self._open_blob(row[1], crop_aad(cid, int(sample_id)))

    def load_vectors(self, collection: str) -> LoadedVectors:
        """Read and decrypt every template of a collection in one consistent snapshot."""
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, dim, gen = int(crow[0]), int(crow[5]), int(crow[7])
            count = int(cur.execute("SELECT count(*) FROM samples WHERE collection_id = ?", (cid,)).fetchone()[0])
            sids = np.empty(count, dtype=np.int64)
            pids = np.empty(count, dtype=np.int64)
            vecs = np.empty((count, dim), dtype=np.float32)
            i = 0
            for sid, pid, blob in cur.execute(
                "SELECT id, person_id, template FROM samples WHERE collection_id = ? ORDER BY id", (cid,)
            ):
                sids[i], pids[i] = sid, pid
                if self._vault is None:
                    vecs[i] = self._decode_template(blob, cid, int(sid), dim)
                i += 1
            if self._vault is not None and i:
                vecs[:i] = self._vault_vectors(cid, sids[:i].tolist(), dim)
        contract = EmbeddingContract(str(crow[3]), str(crow[4]), dim, str(crow[6]))
        return LoadedVectors(cid, gen, contract, sids[:i], pids[:i], vecs[:i])

    # ------------------------------------------------------------------ export / import

    def iter_export(self, collection: str) -> Iterator[ExportPerson]:
        """Yield every person with decrypted samples and crops, all from one snapshot (holds the lock)."""
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, dim = int(crow[0]), int(crow[5])
            persons = cur.execute(
                "SELECT id, external_id, name, metadata, created_at FROM persons WHERE collection_id = ? ORDER BY id",
                (cid,),
            ).fetchall()
            for prow in persons:
                rows = cur.execute(
                    f"SELECT {self._SAMPLE_COLUMNS}, s.template, c.data FROM samples s "  # noqa: S608
                    "LEFT JOIN crops c ON c.sample_id = s.id WHERE s.person_id = ? ORDER BY s.id",
                    (prow[0],),
                ).fetchall()
                samples = tuple(self._sample_from_row(r, collection) for r in rows)
                if self._vault is not None:
                    vectors = tuple(self._vault_vectors(cid, [int(r[0]) for r in rows], dim))
                else:
                    vectors = tuple(self._decode_template(r[8], cid, int(r[0]), dim) for r in rows)
                crops = tuple(None if r[9] is None else self._open_blob(r[9], crop_aad(cid, int(r[0]))) for r in rows)
                yield ExportPerson(self._person_from_row(prow, collection, len(samples)), samples, vectors, crops)

    def import_persons(
        self,
        name: str,
        contract: EmbeddingContract,
        created_at: float,
        persons: Iterable[tuple[Person, Sequence[tuple[NewSample, float]]]],
        actor: str,
    ) -> Collection:
        """Create a collection and fill it from ``persons`` atomically (all or nothing)."""
        _check_text(name, "collection name", 256)
        with self._vault_write() as (cur, undo):
            if cur.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                raise FaceAtlasError("conflict", f"collection {name!r} already exists", collection=name)
            cur.execute(
                "INSERT INTO collections (name, created_at, model_id, model_sha256, dim, preprocessing, generation) "
                "VALUES (?, ?, ?, ?, ?, ?, 1)",
                (name, created_at, contract.model_id, contract.model_sha256, contract.dim, contract.preprocessing),
            )
            cid = int(cur.lastrowid or 0)
            vault = self._vault
            if vault is not None:
                undo.append(lambda: vault.drop_collection(cid))
                vault.create_collection(cid, contract)
            n_persons = n_samples = 0
            for person, samples in persons:
                cur.execute(
                    "INSERT INTO persons (collection_id, external_id, name, metadata, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (cid, person.external_id, person.name, json.dumps(dict(person.metadata)), person.created_at),
                )
                pid = int(cur.lastrowid or 0)
                n_persons += 1
                person_ids: list[int] = []
                person_vectors: list[npt.NDArray[np.float32]] = []
                for item, sample_created_at in samples:
                    vec = np.asarray(item.vector, dtype="<f4").reshape(-1)
                    if vec.shape[0] != contract.dim:
                        raise FaceAtlasError("model_mismatch", "an imported template does not match the contract dim")
                    sid = self._next_sample_id(cur)
                    cur.execute(
                        "INSERT INTO samples (id, collection_id, person_id, quality, detection_score, box, "
                        "image_sha256, created_at, template) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sid, cid, pid, item.quality, item.detection_score,
                            json.dumps(item.box.to_list()) if item.box is not None else None,
                            item.image_sha256, sample_created_at,
                            self._template_blob(vec, cid, sid),
                        ),
                    )
                    person_ids.append(sid)
                    person_vectors.append(vec)
                    if item.crop is not None:
                        cur.execute(
                            "INSERT INTO crops (sample_id, data) VALUES (?, ?)",
                            (sid, self._seal(bytes(item.crop), crop_aad(cid, sid))),
                        )
                    n_samples += 1
                if vault is not None and person_ids:
                    vault.put(cid, person_ids, pid, np.stack(person_vectors).astype(np.float32))
                    vault.set_centroids(cid, {pid: person_ids})
            self._audit(cur, actor, "import_collection", name)
        logger.info("imported collection %r: %d persons, %d samples", name, n_persons, n_samples)
        return Collection(cid, name, created_at, contract, n_persons, n_samples)

    # ------------------------------------------------------------------ audit / maintenance

    def audit_events(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """Return the most recent audit events, newest first."""
        sql = "SELECT id, ts, actor, action, collection, person_id, sample_ids FROM audit"
        args: list[Any] = []
        if collection is not None:
            sql += " WHERE collection = ?"
            args.append(collection)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._read() as cur:
            rows = cur.execute(sql, args).fetchall()
        return [
            AuditEvent(int(r[0]), float(r[1]), str(r[2]), str(r[3]), r[4], r[5], tuple(json.loads(r[6] or "[]")))
            for r in rows
        ]

    def log_event(self, action: str, collection: str | None, actor: str) -> None:
        """Record an audit event that changes no data (e.g. an export)."""
        with self._write() as cur:
            self._audit(cur, actor, action, collection)

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
                raise _translate(exc, self.path) from None
        return problems

    def file_sizes(self) -> tuple[int, int]:
        """Return the byte sizes of the database file and its WAL."""
        wal = Path(str(self.path) + "-wal")
        return (
            self.path.stat().st_size if self.path.exists() else 0,
            wal.stat().st_size if wal.exists() else 0,
        )
