"""Export and import of one collection as a single JSON-lines file (templates sealed when a key is set).

Layout: a header line (format, version, collection and contract, encryption parameters), then one
line per person holding its samples, then an ``end`` line with the counts (so truncation is detected).
Templates are base64 of little-endian float32, or of an AES-256-GCM blob under a key derived from
the gallery key with the file's own salt; associated data is the sample's ordinal in the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from faceatlas.errors import FaceAtlasError, InvalidInputError, NotFoundError
from faceatlas.gallery.crypto import (
    ALGORITHM,
    KdfParams,
    KeyMaterial,
    TemplateCipher,
    decode_b64,
    encode_b64,
    new_salt,
)
from faceatlas.gallery.records import EmbeddingContract, NewSample, Person
from faceatlas.gallery.store import SqliteStore, check_sha256
from faceatlas.types import Box

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "faceatlas-collection"
EXPORT_VERSION = 1


def _export_aad(kind: str, ordinal: int) -> bytes:
    """Associated data binding an exported blob to its position in the file."""
    return f"faceatlas:export:{kind}:{ordinal}".encode()


@dataclass(frozen=True)
class ExportHeader:
    """The first line of an export file."""

    name: str
    created_at: float
    contract: EmbeddingContract
    encrypted: bool


def _invalid(path: Path, why: str) -> FaceAtlasError:
    """Build the error for an unreadable export file."""
    return FaceAtlasError("import_invalid", f"{path} is not a valid FaceAtlas collection export: {why}", path=str(path))


def write_export(store: SqliteStore, collection: str, path: str | os.PathLike[str]) -> tuple[int, int]:
    """Write ``collection`` to ``path`` atomically (owner-only permissions); return (persons, samples)."""
    target = Path(path)
    info = store.get_collection(collection)
    material = store.key_material
    cipher: TemplateCipher | None = None
    header: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": time.time(),
        "collection": {"name": info.name, "created_at": info.created_at, "contract": info.contract.to_dict()},
        "encryption": None,
    }
    if material is not None:
        salt, params = new_salt(), KdfParams()
        cipher = TemplateCipher.from_material(material, salt, params)
        header["encryption"] = {
            "algorithm": ALGORITHM,
            "salt": encode_b64(salt),
            "passphrase_kdf": params.to_dict(),
            "key_check": encode_b64(cipher.make_key_check()),
        }

    def seal(data: bytes, kind: str, ordinal: int) -> str:
        """Base64 of the (possibly encrypted) blob."""
        return encode_b64(cipher.encrypt(data, _export_aad(kind, ordinal)) if cipher is not None else data)

    fd, tmp_name = tempfile.mkstemp(prefix=".faceatlas-export-", dir=str(target.parent or Path(".")))
    n_persons = n_samples = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(header) + "\n")
            for entry in store.iter_export(collection):
                samples = []
                for sample, vector, crop in zip(entry.samples, entry.vectors, entry.crops, strict=True):
                    raw = np.asarray(vector, dtype="<f4").tobytes()
                    samples.append(
                        {
                            "template": seal(raw, "template", n_samples),
                            "quality": sample.quality,
                            "detection_score": sample.detection_score,
                            "box": sample.box.to_list() if sample.box is not None else None,
                            "image_sha256": sample.image_sha256,
                            "created_at": sample.created_at,
                            "crop": None if crop is None else seal(crop, "crop", n_samples),
                        }
                    )
                    n_samples += 1
                person = entry.person
                line = {
                    "type": "person",
                    "external_id": person.external_id,
                    "name": person.name,
                    "metadata": dict(person.metadata),
                    "created_at": person.created_at,
                    "samples": samples,
                }
                fh.write(json.dumps(line) + "\n")
                n_persons += 1
            fh.write(json.dumps({"type": "end", "persons": n_persons, "samples": n_samples}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    logger.info("exported collection %r: %d persons, %d samples", collection, n_persons, n_samples)
    return n_persons, n_samples


def _read_header(path: Path, fh: IO[str], key: KeyMaterial | None) -> tuple[ExportHeader, TemplateCipher | None]:
    """Parse and check the header line, and set up decryption if the file is encrypted."""
    try:
        header = json.loads(fh.readline())
        if header.get("format") != EXPORT_FORMAT:
            raise _invalid(path, "unknown format")
        if int(header.get("version", 0)) > EXPORT_VERSION:
            raise _invalid(path, f"export version {header.get('version')} is newer than supported")
        col = header["collection"]
        c = col["contract"]
        contract = EmbeddingContract(str(c["model_id"]), str(c["model_sha256"]), int(c["dim"]), str(c["preprocessing"]))
        meta = ExportHeader(str(col["name"]), float(col["created_at"]), contract, header.get("encryption") is not None)
        enc = header.get("encryption")
    except FaceAtlasError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _invalid(path, "unreadable header") from None
    if contract.dim <= 0:
        raise _invalid(path, "bad dimension")
    if enc is None:
        return meta, None
    if key is None:
        raise FaceAtlasError(
            "gallery_key_missing", f"export {path} is encrypted; open the gallery with its key to import it"
        )
    try:
        if enc.get("algorithm") != ALGORITHM:
            raise _invalid(path, f"unsupported cipher {enc.get('algorithm')!r}")
        salt = decode_b64(enc["salt"])
        params = KdfParams.from_dict(enc["passphrase_kdf"])
        check = decode_b64(enc["key_check"])
    except (KeyError, TypeError, AttributeError, InvalidInputError):
        raise _invalid(path, "damaged encryption header") from None
    cipher = TemplateCipher.from_material(key, salt, params)
    if not cipher.verify_key_check(check):
        raise FaceAtlasError("gallery_key_wrong", f"the gallery key does not decrypt export {path}", path=str(path))
    return meta, cipher


def _optional_float(value: Any) -> float | None:
    """Parse an optional finite float from JSON."""
    if value is None:
        return None
    out = float(value)
    if not math.isfinite(out):
        raise ValueError("non-finite number")
    return out


class ExportReader:
    """Streams persons and samples from an export file, validating and decrypting as it goes."""

    def __init__(self, path: str | os.PathLike[str], key: KeyMaterial | None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"export file {self.path} does not exist", path=str(self.path))
        with self.path.open("r", encoding="utf-8") as fh:
            self.header, self._cipher = _read_header(self.path, fh, key)
        self._key = key

    def _blob(self, text: Any, kind: str, ordinal: int) -> bytes:
        """Decode (and decrypt) one base64 blob."""
        try:
            data = decode_b64(str(text))
        except InvalidInputError:
            raise _invalid(self.path, f"sample {ordinal} has malformed base64") from None
        if self._cipher is None:
            return data
        try:
            return self._cipher.decrypt(data, _export_aad(kind, ordinal))
        except FaceAtlasError:
            raise _invalid(self.path, f"sample {ordinal} failed authentication") from None

    def persons(self) -> Iterator[tuple[Person, Sequence[tuple[NewSample, float]]]]:
        """Yield ``(person, [(sample, created_at), ...])`` for every person line, checking the end line."""
        dim = self.header.contract.dim
        ordinal = 0
        n_persons = 0
        ended = False
        with self.path.open("r", encoding="utf-8") as fh:
            fh.readline()
            for lineno, line in enumerate(fh, start=2):
                if not line.strip():
                    continue
                if ended:
                    raise _invalid(self.path, f"data after the end line (line {lineno})")
                try:
                    rec = json.loads(line)
                    if rec.get("type") == "end":
                        if int(rec["persons"]) != n_persons or int(rec["samples"]) != ordinal:
                            raise _invalid(self.path, "counts in the end line do not match the content")
                        ended = True
                        continue
                    if rec.get("type") != "person":
                        raise _invalid(self.path, f"unknown record type on line {lineno}")
                    person = Person(
                        0,
                        self.header.name,
                        str(rec["external_id"]),
                        None if rec.get("name") is None else str(rec["name"]),
                        dict(rec.get("metadata") or {}),
                        float(rec.get("created_at") or time.time()),
                    )
                    samples: list[tuple[NewSample, float]] = []
                    for s in rec.get("samples", []):
                        raw = self._blob(s["template"], "template", ordinal)
                        if len(raw) != 4 * dim:
                            raise _invalid(self.path, f"sample {ordinal} has the wrong template size")
                        vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
                        norm = float(np.linalg.norm(vec))
                        if not math.isfinite(norm) or norm == 0.0:
                            raise _invalid(self.path, f"sample {ordinal} has an invalid template")
                        if abs(norm - 1.0) > 1e-4:  # keep exported unit vectors bit-exact
                            vec = vec / norm
                        box = s.get("box")
                        item = NewSample(
                            vector=vec,
                            quality=_optional_float(s.get("quality")),
                            detection_score=_optional_float(s.get("detection_score")),
                            box=None if box is None else Box(*(float(v) for v in box)),
                            image_sha256=check_sha256(s.get("image_sha256")),
                            crop=None if s.get("crop") is None else self._blob(s["crop"], "crop", ordinal),
                        )
                        samples.append((item, float(s.get("created_at") or time.time())))
                        ordinal += 1
                except FaceAtlasError:
                    raise
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise _invalid(self.path, f"malformed record on line {lineno}") from None
                n_persons += 1
                yield person, samples
        if not ended:
            raise _invalid(self.path, "the file is truncated (no end line)")
