"""Samples of the store: add, read (records, crops, templates), look up, delete."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import numpy as np

from faceatlas.errors import NotFoundError
from faceatlas.gallery.records import (
    EmbeddingContract,
    LoadedVectors,
    NewSample,
    PersonRef,
    Sample,
    WriteReceipt,
)
from faceatlas.gallery.store.rows import RowStore
from faceatlas.gallery.store.validate import row_id
from faceatlas.gallery.store.vault import crop_aad
from faceatlas.types import Template

logger = logging.getLogger(__name__)


def _no_sample(sample_id: object, collection: str) -> NotFoundError:
    """The error for a sample id that is not in the collection (including ids no row can have)."""
    return NotFoundError(f"sample {sample_id} not found in collection {collection!r}", collection=collection)


class SampleOps(RowStore):
    """Sample operations of :class:`~faceatlas.gallery.store.SqliteStore`."""

    def add_samples(
        self, collection: str, person: PersonRef, samples: Sequence[NewSample], actor: str, model_id: str | None = None
    ) -> WriteReceipt:
        """Store samples for a person in one transaction (checking the collection's contract) and return their ids."""
        now = time.time()
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, gen, collection = int(crow[0]), int(crow[7]), str(crow[1])
            self._check_model(crow, model_id)
            pid = int(self._person_row(cur, cid, collection, person)[0])
            ids = self._insert_samples(cur, undo, crow, pid, samples, now)
            new_gen = gen + 1 if ids else gen
            if ids:
                cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (new_gen, cid))
            self._audit(cur, actor, "enrol", collection, pid, ids)
        logger.debug("enrolled %d samples for person %d in %r", len(ids), pid, collection)
        return WriteReceipt(cid, gen, new_gen, pid, tuple(ids))

    def delete_sample(self, collection: str, sample_id: int, actor: str) -> WriteReceipt:
        """Delete one sample (and its crop), then scrub the WAL (see ``erased``)."""
        sid = row_id(sample_id, "sample_id")
        with self._vault_write() as (cur, undo):
            crow = self._collection_row(cur, collection)
            cid, gen, collection = int(crow[0]), int(crow[7]), str(crow[1])
            row = None
            if sid is not None:
                row = cur.execute(
                    "SELECT person_id FROM samples WHERE id = ? AND collection_id = ?", (sid, cid)
                ).fetchone()
            if row is None or sid is None:
                raise _no_sample(sample_id, collection)
            pid = int(row[0])
            if self._vault is not None:
                remaining = [s for s in self._sample_ids_of(cur, pid) if s != sid]
                self._vault_remove(undo, cid, pid, [sid], remaining)
            cur.execute("DELETE FROM samples WHERE id = ?", (sid,))
            cur.execute("UPDATE collections SET generation = ? WHERE id = ?", (gen + 1, cid))
            self._audit(cur, actor, "delete_sample", collection, pid, [sid])
        erased = self._erase()
        return WriteReceipt(cid, gen, gen + 1, pid, (sid,), erased)

    def get_sample(self, collection: str, sample_id: int, include_template: bool = False) -> Sample:
        """Return one sample's record, with its decrypted template only when asked."""
        sid = row_id(sample_id, "sample_id")
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, model_id, dim, collection = int(crow[0]), str(crow[3]), int(crow[5]), str(crow[1])
            row = None
            if sid is not None:
                row = cur.execute(
                    f"SELECT {self._SAMPLE_COLUMNS}, s.template FROM samples s "  # noqa: S608
                    "WHERE s.id = ? AND s.collection_id = ?",
                    (sid, cid),
                ).fetchone()
        if row is None:
            raise _no_sample(sample_id, collection)
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
            crow = self._collection_row(cur, collection)
            cid, collection = int(crow[0]), str(crow[1])
            pid = int(self._person_row(cur, cid, collection, person)[0])
            rows = cur.execute(
                f"SELECT {self._SAMPLE_COLUMNS} FROM samples s WHERE s.person_id = ? ORDER BY s.id",  # noqa: S608
                (pid,),
            ).fetchall()
        return [self._sample_from_row(r, collection) for r in rows]

    def get_crop(self, collection: str, sample_id: int) -> bytes | None:
        """Return a sample's stored crop bytes (decrypted), or ``None`` if none was stored."""
        sid = row_id(sample_id, "sample_id")
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, collection = int(crow[0]), str(crow[1])
            row = None
            if sid is not None:
                row = cur.execute(
                    "SELECT s.id, c.data FROM samples s LEFT JOIN crops c ON c.sample_id = s.id "
                    "WHERE s.id = ? AND s.collection_id = ?",
                    (sid, cid),
                ).fetchone()
        if row is None or sid is None:
            raise _no_sample(sample_id, collection)
        return None if row[1] is None else self._open_blob(row[1], crop_aad(cid, sid))

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
