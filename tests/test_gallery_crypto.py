"""Encryption at rest: key sources, no plaintext on disk, wrong/missing keys, tamper detection, encrypted export."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from faceatlas.errors import FaceAtlasError
from faceatlas.gallery import Gallery
from faceatlas.gallery.crypto import ENV_KEY, ENV_KEY_FILE, KeyMaterial, TemplateCipher, resolve_key
from faceatlas.types import Template

DIM = 128
SHA = "fe" * 32
RAW_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests control the key explicitly."""
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)


def rand_templates(rng: np.random.Generator, n: int) -> list[Template]:
    """Random unit-vector templates of model ``m``."""
    return [Template(v, "m") for v in rng.standard_normal((n, DIM)).astype(np.float32)]


def disk(path: Path) -> bytes:
    """Raw bytes of the database and its WAL."""
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def make_encrypted(path: Path, key: object, persons: int = 10) -> dict[int, list[Template]]:
    """Create an encrypted gallery with a few persons; return person id -> templates."""
    rng = np.random.default_rng(0)
    out = {}
    with Gallery.open(path, key=key) as g:  # type: ignore[arg-type]
        assert g.encrypted
        g.create_collection("c", "m", SHA, DIM)
        for i in range(persons):
            p = g.add_person("c", f"p{i}")
            out[p.id] = rand_templates(rng, 3)
            g.add_samples("c", p.id, out[p.id], crops=[b"CROP-SECRET-%d" % i, None, None])
    return out


def test_key_parsing() -> None:
    hex_key = resolve_key(RAW_KEY.hex())
    b64_key = resolve_key(base64.b64encode(RAW_KEY).decode())
    url_key = resolve_key(base64.urlsafe_b64encode(RAW_KEY).decode().rstrip("="))
    for km in (hex_key, b64_key, url_key, resolve_key(RAW_KEY)):
        assert km is not None and km.kind == "raw" and km.secret == RAW_KEY
    phrase = resolve_key("correct horse battery staple")
    assert phrase is not None and phrase.kind == "passphrase"
    assert "correct" not in repr(phrase) and RAW_KEY.hex() not in repr(hex_key)
    assert resolve_key(None, environ={}) is None
    env = resolve_key(None, environ={ENV_KEY: RAW_KEY.hex()})
    assert env is not None and env.secret == RAW_KEY and ENV_KEY in env.source
    for bad in ("", "   ", b"\xff" * 5):
        with pytest.raises(FaceAtlasError) as ei:
            resolve_key(bad)
        assert ei.value.code == "gallery_key_invalid"


def test_key_file_sources(tmp_path: Path) -> None:
    text = tmp_path / "key.txt"
    text.write_text(RAW_KEY.hex() + "\n")
    binary = tmp_path / "key.bin"
    binary.write_bytes(b"\xff" + RAW_KEY[1:])
    for path in (text, binary):
        km = resolve_key(path)
        assert km is not None and km.kind == "raw"
    assert resolve_key(binary).secret == b"\xff" + RAW_KEY[1:]  # type: ignore[union-attr]
    from_env = resolve_key(None, environ={ENV_KEY_FILE: str(text)})
    assert from_env is not None and from_env.secret == RAW_KEY
    as_text = resolve_key(str(text))  # a path passed as str is read, never used as the passphrase
    assert as_text is not None and as_text.secret == RAW_KEY
    with pytest.raises(FaceAtlasError) as ei:
        resolve_key(tmp_path / "absent.key")
    assert ei.value.code == "gallery_key_missing"


def test_cipher_binds_associated_data() -> None:
    c = TemplateCipher(RAW_KEY)
    blob = c.encrypt(b"payload", b"row-1")
    assert c.decrypt(blob, b"row-1") == b"payload"
    assert b"payload" not in blob
    for aad, cipher in ((b"row-2", c), (b"row-1", TemplateCipher(OTHER_KEY))):
        with pytest.raises(FaceAtlasError) as ei:
            cipher.decrypt(blob, aad)
        assert ei.value.code == "gallery_corrupt"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(FaceAtlasError):
        c.decrypt(tampered, b"row-1")
    assert c.encrypt(b"payload", b"row-1") != blob  # fresh nonce every time


@pytest.mark.parametrize("key", [RAW_KEY, RAW_KEY.hex(), "a long enough passphrase"], ids=["raw", "hex", "passphrase"])
def test_encrypted_gallery_has_no_plaintext_and_round_trips(tmp_path: Path, key: object) -> None:
    path = tmp_path / "enc.db"
    people = make_encrypted(path, key)
    raw = disk(path)
    for ts in people.values():
        for t in ts:
            assert t.vector.tobytes() not in raw
            assert t.vector[:16].tobytes() not in raw
    assert b"CROP-SECRET" not in raw
    with Gallery.open(path, key=key) as g:  # type: ignore[arg-type]
        for pid, ts in people.items():
            hit = g.search("c", ts[1], k=1, model_id="m")[0][0]
            assert hit.person_id == pid and hit.score > 0.9999
        first = next(iter(people))
        sid = g.list_samples("c", first)[0].id
        assert g.get_crop("c", sid) == b"CROP-SECRET-0"
        assert g.check() == []
        assert g.stats().encrypted


def test_env_key_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, base64.b64encode(RAW_KEY).decode())
    path = tmp_path / "env.db"
    people = make_encrypted(path, None)
    with Gallery.open(path, key=RAW_KEY) as g:  # same key given explicitly
        pid, ts = next(iter(people.items()))
        assert g.search("c", ts[0], k=1, model_id="m")[0][0].person_id == pid
    monkeypatch.delenv(ENV_KEY)
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(path)
    assert ei.value.code == "gallery_key_missing"


def test_wrong_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    make_encrypted(path, RAW_KEY)
    for wrong in (OTHER_KEY, "some passphrase here", RAW_KEY[::-1].hex()):
        with pytest.raises(FaceAtlasError) as ei:
            Gallery.open(path, key=wrong)
        assert ei.value.code == "gallery_key_wrong"
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(path)
    assert ei.value.code == "gallery_key_missing"
    phrase_path = tmp_path / "phrase.db"
    make_encrypted(phrase_path, "the right passphrase", persons=1)
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(phrase_path, key="the wrong passphrase")
    assert ei.value.code == "gallery_key_wrong"
    plain = tmp_path / "plain.db"
    Gallery.open(plain).close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(plain, key=RAW_KEY)
    assert ei.value.code == "gallery_not_encrypted"


def test_swapped_or_tampered_blobs_never_match(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    make_encrypted(path, RAW_KEY)
    con = sqlite3.connect(path)
    (a, ta), (b, tb) = con.execute("SELECT id, template FROM samples ORDER BY id LIMIT 2").fetchall()
    con.execute("UPDATE samples SET template = ? WHERE id = ?", (tb, a))
    con.execute("UPDATE samples SET template = ? WHERE id = ?", (ta, b))
    con.commit()
    con.close()
    with pytest.raises(FaceAtlasError) as ei:
        Gallery.open(path, key=RAW_KEY)
    assert ei.value.code == "gallery_corrupt"


def test_delete_scrubs_ciphertext(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    people = make_encrypted(path, RAW_KEY)
    con = sqlite3.connect(path)
    pid = next(iter(people))
    blobs = [bytes(r[0]) for r in con.execute("SELECT template FROM samples WHERE person_id = ?", (pid,))]
    con.close()
    assert blobs and all(blob in disk(path) for blob in blobs)
    with Gallery.open(path, key=RAW_KEY) as g:
        g.delete_person("c", pid)
        raw = disk(path)
        assert not any(blob in raw for blob in blobs)


def test_encrypted_export_import(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    people = make_encrypted(path, RAW_KEY)
    out = tmp_path / "c.jsonl"
    with Gallery.open(path, key=RAW_KEY) as g:
        g.export_collection("c", out)
    text = out.read_bytes()
    for ts in people.values():
        for t in ts:
            assert base64.b64encode(t.vector.tobytes()) not in text
            assert t.vector.tobytes() not in text
    assert b"CROP-SECRET" not in text and base64.b64encode(b"CROP-SECRET-0") not in text
    # same key material, different gallery (different salt): import works
    with Gallery.open(tmp_path / "other.db", key=RAW_KEY.hex()) as other:
        col = other.import_collection(out)
        assert (col.persons, col.samples) == (10, 30)
        pid_src, ts = next(iter(people.items()))
        hit = other.search("c", ts[0], k=1, model_id="m")[0][0]
        assert hit.external_id == "p0" and hit.score > 0.9999
    with Gallery.open(tmp_path / "wrong.db", key=OTHER_KEY) as wrong:
        with pytest.raises(FaceAtlasError) as ei:
            wrong.import_collection(out)
        assert ei.value.code == "gallery_key_wrong"
    with Gallery.open(tmp_path / "nokey.db") as nokey:
        with pytest.raises(FaceAtlasError) as ei:
            nokey.import_collection(out)
        assert ei.value.code == "gallery_key_missing"
    # plaintext exports can be imported into an encrypted gallery (and get encrypted there)
    plain_db = tmp_path / "plain.db"
    with Gallery.open(plain_db) as plain:
        plain.create_collection("c", "m", SHA, DIM)
        p = plain.add_person("c", "z")
        t = rand_templates(np.random.default_rng(9), 1)[0]
        plain.add_samples("c", p.id, t)
        plain.export_collection("c", tmp_path / "plain.jsonl")
    target = tmp_path / "enc2.db"
    with Gallery.open(target, key=OTHER_KEY) as enc2:
        enc2.import_collection(tmp_path / "plain.jsonl")
        assert enc2.search("c", t, k=1, model_id="m")[0][0].external_id == "z"
    assert t.vector.tobytes() not in disk(target)


def test_key_material_validation() -> None:
    with pytest.raises(FaceAtlasError):
        KeyMaterial("raw", b"short", "test")
    with pytest.raises(FaceAtlasError):
        KeyMaterial("rsa", RAW_KEY, "test")
