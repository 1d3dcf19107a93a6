"""Collections of the store: create, read, list, change-detection state, delete."""

from __future__ import annotations

import logging
import time

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.records import (
    Collection,
    CollectionBrief,
    EmbeddingContract,
    WriteReceipt,
)
from faceatlas.gallery.store.rows import RowStore
from faceatlas.gallery.store.validate import check_sha256, check_text, name_forms

logger = logging.getLogger(__name__)


class CollectionOps(RowStore):
    """Collection operations of :class:`~faceatlas.gallery.store.SqliteStore`."""

    def create_collection(self, name: str, contract: EmbeddingContract, actor: str) -> Collection:
        """Create a collection pinned to an embedding contract (``conflict`` if the name is taken)."""
        name = check_text(name, "collection name", 256)
        check_text(contract.model_id, "model_id", 256)
        sha = check_sha256(contract.model_sha256, "model_sha256") if contract.model_sha256 else ""
        if isinstance(contract.dim, bool) or not isinstance(contract.dim, int) or contract.dim <= 0:
            raise InvalidInputError("invalid_input", "dim must be a positive integer")
        check_text(contract.preprocessing, "preprocessing", 256)
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
            crow = self._collection_row(cur, name)
            row = cur.execute(self._COLLECTION_SELECT + " WHERE c.id = ?", (crow[0],)).fetchone()
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
        found = self.collection_name_state(name)
        return None if found is None else found[1]

    def collection_name_state(self, name: str) -> tuple[str, tuple[int, int]] | None:
        """Return the stored name of a collection with its ``(collection id, generation)``, or ``None`` if absent."""
        with self._read() as cur:
            for form in name_forms(name):
                row = cur.execute("SELECT name, id, generation FROM collections WHERE name = ?", (form,)).fetchone()
                if row is not None:
                    return str(row[0]), (int(row[1]), int(row[2]))
        return None

    def collection_brief(self, name: str) -> CollectionBrief:
        """Return a collection's id, name and contract: one indexed row, no counting (every search calls it)."""
        with self._read() as cur:
            crow = self._collection_row(cur, name)
        contract = EmbeddingContract(str(crow[3]), str(crow[4]), int(crow[5]), str(crow[6]))
        return CollectionBrief(int(crow[0]), str(crow[1]), contract)

    def persons_with_samples(self, collection_id: int) -> int:
        """Count the persons of a collection that have at least one sample (a scan of its samples)."""
        with self._read() as cur:
            row = cur.execute(
                "SELECT count(DISTINCT person_id) FROM samples WHERE collection_id = ?", (int(collection_id),)
            ).fetchone()
        return int(row[0])

    def delete_collection(self, name: str, actor: str) -> WriteReceipt:
        """Delete a collection with all its persons, samples and crops, then scrub the WAL (see ``erased``)."""
        with self._write() as cur:
            row = self._collection_row(cur, name)
            name = str(row[1])
            cid, gen = int(row[0]), int(row[7])
            sample_ids = [int(r[0]) for r in cur.execute("SELECT id FROM samples WHERE collection_id = ?", (cid,))]
            if self._vault is not None:  # not undoable: a failed commit leaves rows without templates (see check)
                self._vault.drop_collection(cid)
            cur.execute("DELETE FROM collections WHERE id = ?", (cid,))
            self._audit(cur, actor, "delete_collection", name, None, sample_ids)
        erased = self._erase()
        logger.info("deleted collection %r (%d samples)", name, len(sample_ids))
        return WriteReceipt(cid, gen, gen + 1, None, tuple(sample_ids), erased)
