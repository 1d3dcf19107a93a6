"""Export and import of whole collections at the store level, and the audit trail."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faceatlas.errors import FaceAtlasError
from faceatlas.gallery.records import (
    AuditEvent,
    Collection,
    EmbeddingContract,
    ExportPerson,
    NewSample,
    Person,
)
from faceatlas.gallery.store.rows import RowStore
from faceatlas.gallery.store.validate import check_text, name_forms
from faceatlas.gallery.store.vault import NewTemplates, crop_aad

logger = logging.getLogger(__name__)

_VAULT_BATCH = 10_000  # imported templates sent to a vault per batch (in 1,000-row requests)


class ExchangeOps(RowStore):
    """Export/import and audit operations of :class:`~faceatlas.gallery.store.SqliteStore`."""

    def iter_export(self, collection: str) -> Iterator[ExportPerson]:
        """Yield every person with decrypted samples and crops, all from one snapshot (holds the lock)."""
        with self._read() as cur:
            crow = self._collection_row(cur, collection)
            cid, dim, collection = int(crow[0]), int(crow[5]), str(crow[1])
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
        name = check_text(name, "collection name", 256)
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
            n_persons = n_samples = pending_rows = 0
            pending: list[NewTemplates] = []
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
                    pending.append((pid, person_ids, person_vectors))
                    pending_rows += len(person_ids)
                    if pending_rows >= _VAULT_BATCH:
                        self._vault_add_new_persons(undo, cid, pending)
                        pending, pending_rows = [], 0
            if vault is not None:
                self._vault_add_new_persons(undo, cid, pending)
            self._audit(cur, actor, "import_collection", name)
        logger.info("imported collection %r: %d persons, %d samples", name, n_persons, n_samples)
        return Collection(cid, name, created_at, contract, n_persons, n_samples)

    def audit_events(self, collection: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """Return the most recent audit events, newest first."""
        sql = "SELECT id, ts, actor, action, collection, person_id, sample_ids FROM audit"
        args: list[Any] = []
        if collection is not None:
            forms = name_forms(collection)
            sql += f" WHERE collection IN ({','.join('?' * len(forms))})"
            args.extend(forms)
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
