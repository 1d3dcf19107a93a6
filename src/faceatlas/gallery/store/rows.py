"""Row helpers shared by the store's operations: collection/person/sample lookups, records, inserts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.records import Collection, EmbeddingContract, NewSample, Person, PersonRef, Sample, check_contract
from faceatlas.gallery.store.validate import check_text, name_forms, row_id
from faceatlas.gallery.store.vault import NewTemplates, VaultStore, crop_aad
from faceatlas.types import Box, Template


def check_person_fields(
    external_id: object, name: object, metadata: object
) -> tuple[str, str | None, str]:
    """Validate a new person's external id, name and metadata; return the NFC id, the name and the metadata JSON."""
    ext = check_text(external_id, "external_id", 512, identifier=True)
    label = None if name is None else check_text(name, "name", 1024, allow_empty=True)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInputError("invalid_input", "metadata must be a JSON object (mapping) or None")
    try:
        meta_text = json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInputError("invalid_input", "metadata must be JSON-serialisable") from None
    return ext, label, meta_text


class RowStore(VaultStore):
    """Lookups and inserts every store operation shares (all run inside the caller's transaction)."""

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
        row = None
        for form in name_forms(name):
            row = cur.execute(
                "SELECT id, name, created_at, model_id, model_sha256, dim, preprocessing, generation "
                "FROM collections WHERE name = ?",
                (form,),
            ).fetchone()
            if row is not None:
                break
        if row is None:
            raise NotFoundError(f"collection {name!r} does not exist", collection=name)
        return tuple(row)

    def _person_row(
        self, cur: sqlite3.Cursor, collection_id: int, collection: str, person: PersonRef
    ) -> tuple[Any, ...]:
        """Fetch ``id, external_id, name, metadata, created_at`` of a person by internal id or external id."""
        base = "SELECT id, external_id, name, metadata, created_at FROM persons WHERE collection_id = ? AND "
        if isinstance(person, bool) or not isinstance(person, (int, str, np.integer)):
            raise InvalidInputError("invalid_input", "a person is referenced by internal id (int) or external id (str)")
        row = None
        if isinstance(person, str):
            for form in name_forms(person):
                row = cur.execute(base + "external_id = ?", (collection_id, form)).fetchone()
                if row is not None:
                    break
        else:
            pid = row_id(person, "person id")
            if pid is not None:
                row = cur.execute(base + "id = ?", (collection_id, pid)).fetchone()
        if row is None:
            raise NotFoundError(f"person {person!r} not found in collection {collection!r}", collection=collection)
        return tuple(row)

    @staticmethod
    def _person_from_row(row: Sequence[Any], collection: str, samples: int) -> Person:
        """Build a Person from ``id, external_id, name, metadata, created_at``."""
        return Person(
            int(row[0]), collection, str(row[1]), row[2], json.loads(row[3] or "{}"), float(row[4]), samples
        )

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

    @staticmethod
    def _sample_ids_of(cur: sqlite3.Cursor, person_id: int) -> list[int]:
        """Return a person's sample ids, in id order, as the current transaction sees them."""
        return [int(r[0]) for r in cur.execute("SELECT id FROM samples WHERE person_id = ? ORDER BY id", (person_id,))]

    @staticmethod
    def _next_sample_id(cur: sqlite3.Cursor) -> int:
        """Return the id the next sample gets (ids are never reused; call inside a write transaction)."""
        seq_row = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'samples'").fetchone()
        max_row = cur.execute("SELECT max(id) FROM samples").fetchone()
        return max(int(seq_row[0]) if seq_row else 0, int(max_row[0] or 0)) + 1

    @staticmethod
    def _check_model(crow: tuple[Any, ...], model_id: str | None) -> None:
        """Refuse templates of another model than the collection's, inside the write (the gallery's one rule)."""
        if model_id is not None:
            contract = EmbeddingContract(str(crow[3]), str(crow[4]), int(crow[5]), str(crow[6]))
            check_contract(contract, model_id, contract.dim, what=f"templates for collection {crow[1]!r}")

    def _insert_person(
        self, cur: sqlite3.Cursor, collection_id: int, collection: str, fields: tuple[str, str | None, str], now: float
    ) -> int:
        """Insert a validated person (``conflict`` if its external id is taken) and return its id."""
        external_id, name, meta_text = fields
        if cur.execute(
            "SELECT 1 FROM persons WHERE collection_id = ? AND external_id = ?", (collection_id, external_id)
        ).fetchone():
            raise FaceAtlasError(
                "conflict",
                f"person {external_id!r} already exists in collection {collection!r}",
                collection=collection,
                external_id=external_id,
            )
        cur.execute(
            "INSERT INTO persons (collection_id, external_id, name, metadata, created_at) VALUES (?, ?, ?, ?, ?)",
            (collection_id, external_id, name, meta_text, now),
        )
        return int(cur.lastrowid or 0)

    def _insert_samples(
        self,
        cur: sqlite3.Cursor,
        undo: list[Any],
        crow: tuple[Any, ...],
        person_id: int,
        samples: Sequence[NewSample],
        now: float,
        deferred: list[NewTemplates] | None = None,
    ) -> list[int]:
        """Insert samples of one person (checking their dimension), write the vault; return the new ids in order.

        With ``deferred`` (a new person's samples only), the vault write is appended there for one batched write.
        """
        cid, dim = int(crow[0]), int(crow[5])
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
                    sid, cid, person_id, item.quality, item.detection_score, box, item.image_sha256, now,
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
            if deferred is not None:
                deferred.append((person_id, ids, vectors))
            else:
                self._vault_add(undo, cid, person_id, ids, vectors, self._sample_ids_of(cur, person_id))
        return ids

