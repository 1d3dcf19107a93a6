"""Persons of the store: add (alone or with their first samples, atomically), read, list, delete."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.records import (
    NewSample,
    Person,
    PersonRef,
    WriteReceipt,
)
from faceatlas.gallery.store.rows import RowStore, check_person_fields
from faceatlas.gallery.store.validate import MAX_ROW_ID
from faceatlas.gallery.store.vault import NewTemplates

logger = logging.getLogger(__name__)

# external id, display name, metadata, samples: one new person of ``enroll_people``
PersonToEnrol = tuple[str, str | None, Mapping[str, Any] | None, Sequence[NewSample]]


class PersonOps(RowStore):
    """Person operations of :class:`~faceatlas.gallery.store.SqliteStore`."""

    def add_person(
        self,
        collection: str,
        external_id: str,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        actor: str,
    ) -> Person:
        """Add a person (``conflict`` if the external id is already used in the collection)."""
        fields = check_person_fields(external_id, name, metadata)
        now = time.time()
        with self._write() as cur:
            crow = self._collection_row(cur, collection)
            collection = str(crow[1])
            pid = self._insert_person(cur, int(crow[0]), collection, fields, now)
            self._audit(cur, actor, "add_person", collection, pid)
        return Person(pid, collection, fields[0], fields[1], json.loads(fields[2]), now, 0)

    def enroll_person(
        self,
        collection: str,
        external_id: str,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        samples: Sequence[NewSample],
        actor: str,
        model_id: str | None = None,
    ) -> tuple[Person, WriteReceipt]:
        """Add a person and its samples in one transaction (both or neither); return the person and the receipt."""
        fields = check_person_fields(external_id, name, metadata)
        now = time.time()
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            collection = str(crow[1])
            cid, gen = int(crow[0]), int(crow[7])
            self._check_model(crow, model_id)
            pid = self._insert_person(cur, cid, collection, fields, now)
            self._audit(cur, actor, "add_person", collection, pid)
            ids = self._insert_samples(cur, undo, crow, pid, samples, now)
            new_gen = gen + 1 if ids else gen
            if ids:
                cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (new_gen, cid))
                self._audit(cur, actor, "enrol", collection, pid, ids)
        logger.debug("added person %d to %r with %d samples", pid, collection, len(ids))
        person = Person(pid, collection, fields[0], fields[1], json.loads(fields[2]), now, len(ids))
        return person, WriteReceipt(cid, gen, new_gen, pid, tuple(ids))

    def enroll_people(
        self,
        collection: str,
        people: Sequence[PersonToEnrol],
        actor: str,
        model_id: str | None = None,
    ) -> tuple[list[Person], WriteReceipt]:
        """Add several new persons with their samples in one transaction (all or none); templates go to a vault in
        batched requests. Return the persons in order and one receipt for every sample (``sample_persons`` set)."""
        checked = [(check_person_fields(ext, name, meta), samples) for ext, name, meta, samples in people]
        if len({fields[0] for fields, _ in checked}) != len(checked):
            raise FaceAtlasError("conflict", "the same external id appears twice in one batch", collection=collection)
        now = time.time()
        persons: list[Person] = []
        sample_ids: list[int] = []
        owners: list[int] = []
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            collection = str(crow[1])
            cid, gen = int(crow[0]), int(crow[7])
            self._check_model(crow, model_id)
            deferred: list[NewTemplates] = []
            for fields, samples in checked:
                pid = self._insert_person(cur, cid, collection, fields, now)
                ids = self._insert_samples(cur, undo, crow, pid, samples, now, deferred=deferred)
                self._audit(cur, actor, "add_person", collection, pid)
                if ids:
                    self._audit(cur, actor, "enrol", collection, pid, ids)
                persons.append(Person(pid, collection, fields[0], fields[1], json.loads(fields[2]), now, len(ids)))
                sample_ids.extend(ids)
                owners.extend([pid] * len(ids))
            if self._vault is not None:
                self._vault_add_new_persons(undo, cid, deferred)
            new_gen = gen + 1 if sample_ids else gen
            if sample_ids:
                cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (new_gen, cid))
        logger.debug("added %d persons to %r with %d samples", len(persons), collection, len(sample_ids))
        return persons, WriteReceipt(cid, gen, new_gen, None, tuple(sample_ids), sample_persons=tuple(owners))

    def get_person(self, collection: str, person: PersonRef) -> Person:
        """Return a person by internal id or external id."""
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            row = self._person_row(cur, int(crow[0]), collection, person)
            count = cur.execute("SELECT count(*) FROM samples WHERE person_id = ?", (row[0],)).fetchone()[0]
        return self._person_from_row(row, str(crow[1]), int(count))

    def list_persons(self, collection: str, limit: int | None = None, offset: int = 0) -> list[Person]:
        """Return persons of a collection ordered by internal id, optionally paged."""
        lim = -1 if limit is None else min(int(limit), MAX_ROW_ID)
        off = max(min(int(offset), MAX_ROW_ID), 0)
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, collection = int(crow[0]), str(crow[1])
            rows = cur.execute(
                "SELECT p.id, p.external_id, p.name, p.metadata, p.created_at, "
                "(SELECT count(*) FROM samples s WHERE s.person_id = p.id) "
                "FROM persons p WHERE p.collection_id = ? ORDER BY p.id LIMIT ? OFFSET ?",
                (cid, lim, off),
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

    def delete_person(self, collection: str, person: PersonRef, actor: str) -> WriteReceipt:
        """Delete a person with all its samples and crops, then scrub the WAL (see ``erased``)."""
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, gen, collection = int(crow[0]), int(crow[7]), str(crow[1])
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
        erased = self._erase()
        logger.debug("deleted person %d from %r (%d samples)", pid, collection, len(sample_ids))
        return WriteReceipt(cid, gen, new_gen, pid, tuple(sample_ids), erased)
