"""Template protection of the store: AES-GCM sealing of templates and crops (AAD binds each blob to its row) and
the external template vault (Milvus) written inside the store's transactions."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.gallery.backends.base import TemplateVault
from faceatlas.gallery.crypto import (
    ALGORITHM,
    KdfParams,
    KeyMaterial,
    TemplateCipher,
    decode_b64,
    encode_b64,
    new_salt,
)
from faceatlas.gallery.store.connection import StoreConnection
from faceatlas.gallery.store.schema import INLINE_TEMPLATE_STORE

logger = logging.getLogger(__name__)

_VAULT_CHUNK = 1000

# (person id, its new sample ids, their vectors): templates written for persons created in one transaction
NewTemplates = tuple[int, list[int], list[npt.NDArray[np.float32]]]


def template_aad(collection_id: int, sample_id: int) -> bytes:
    """Associated data binding a stored template blob to its row."""
    return f"faceatlas:template:{collection_id}:{sample_id}".encode()


def crop_aad(collection_id: int, sample_id: int) -> bytes:
    """Associated data binding a stored crop blob to its row."""
    return f"faceatlas:crop:{collection_id}:{sample_id}".encode()


class VaultStore(StoreConnection):
    """A store connection that seals blobs with the gallery key or keeps templates in an external vault."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: KeyMaterial | None,
        busy_timeout: float,
        vault: TemplateVault | None,
    ) -> None:
        super().__init__(path, busy_timeout)
        if vault is not None and key is not None:
            raise FaceAtlasError(
                "gallery_key_unsupported",
                f"templates kept in {vault.store_kind} must stay searchable, so they cannot be encrypted "
                f"(key from {key.source}); use the SQLite backend for encryption at rest",
            )
        self._vault = vault
        self._cipher: TemplateCipher | None = None
        self._key = key
        self._kdf_params: KdfParams | None = None
        self._salt: bytes | None = None

    def _identity_meta(self) -> dict[str, str]:
        """The meta rows saying where templates live and, with a key, how they are encrypted (for a new file)."""
        rows: dict[str, str] = {}
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
        return rows

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

    @property
    def encrypted(self) -> bool:
        """Whether templates are sealed at rest."""
        return self._cipher is not None

    @property
    def key_material(self) -> KeyMaterial | None:
        """The key material this store was opened with (for encrypted exports)."""
        return self._key if self._cipher is not None else None

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
        stacked = np.stack(vectors).astype(np.float32)
        vault.put(collection_id, sample_ids, person_id, stacked)
        vault.set_centroids(collection_id, {person_id: person_samples}, known=dict(zip(sample_ids, stacked, strict=True)))

    def _vault_add_new_persons(
        self, undo: list[Callable[[], None]], collection_id: int, written: Sequence[NewTemplates]
    ) -> None:
        """Write the templates and centroids of persons created in this transaction, in batched requests."""
        vault = self._vault
        assert vault is not None
        written = [w for w in written if w[1]]
        if not written:
            return
        sample_ids = [s for _, sids, _ in written for s in sids]
        person_ids = [pid for pid, sids, _ in written for _ in sids]
        stacked = np.stack([v for _, _, vecs in written for v in vecs]).astype(np.float32)

        def take_back() -> None:
            """Remove the templates and centroids again (the persons did not exist before)."""
            vault.delete(collection_id, sample_ids)
            vault.set_centroids(collection_id, {pid: [] for pid, _, _ in written})

        undo.append(take_back)
        vault.put_many(collection_id, sample_ids, person_ids, stacked)
        known = dict(zip(sample_ids, stacked, strict=True))
        vault.set_centroids(collection_id, {pid: sids for pid, sids, _ in written}, known=known)

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

