"""Optional encryption at rest of templates (and crops) with AES-256-GCM and per-gallery derived keys.

Key material comes from an explicit argument, the ``FACEATLAS_KEY`` environment variable
(64 hex digits or base64 of 32 bytes = a raw key; anything else = a passphrase), or a key file
(``FACEATLAS_KEY_FILE`` or a ``pathlib.Path`` argument). Raw keys and passphrases are turned
into the gallery's data key with HKDF-SHA256 (passphrases go through scrypt first), salted with a
random per-gallery salt stored in the database, so one key never encrypts two galleries alike.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from faceatlas import config
from faceatlas.config import ENV_KEY, ENV_KEY_FILE
from faceatlas.errors import FaceAtlasError, InvalidInputError

logger = logging.getLogger(__name__)

KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
BLOB_VERSION = b"\x01"
ALGORITHM = "AES-256-GCM"

_KEY_CHECK_PLAINTEXT = b"faceatlas gallery key check v1"
_KEY_CHECK_AAD = b"faceatlas:key-check:v1"
_DATA_KEY_INFO = b"faceatlas gallery data key v1"


@dataclass(frozen=True, repr=False, eq=False)
class KeyMaterial:
    """Secret key material as the user gave it: a raw 32-byte key or a passphrase, plus where it came from."""

    kind: str
    secret: bytes
    source: str

    def __post_init__(self) -> None:
        if self.kind not in ("raw", "passphrase"):
            raise InvalidInputError("gallery_key_invalid", f"unknown key kind {self.kind!r}")
        if self.kind == "raw" and len(self.secret) != KEY_BYTES:
            raise InvalidInputError("gallery_key_invalid", f"a raw key must be {KEY_BYTES} bytes")
        if not self.secret:
            raise InvalidInputError("gallery_key_invalid", "the key or passphrase is empty")

    def __repr__(self) -> str:
        return f"KeyMaterial(kind={self.kind!r}, source={self.source!r})"


KeyLike = Union[bytes, bytearray, str, "os.PathLike[str]", KeyMaterial]


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost parameters used to stretch passphrases (raw keys skip scrypt)."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Serialise for storage next to the salt."""
        return {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KdfParams:
        """Parse the stored form, rejecting unknown KDFs."""
        if data.get("name") != "scrypt":
            raise FaceAtlasError("gallery_corrupt", f"unsupported passphrase KDF {data.get('name')!r}")
        return cls(n=int(data["n"]), r=int(data["r"]), p=int(data["p"]))


def _decode_raw_key(text: str) -> bytes | None:
    """Return 32 key bytes when ``text`` is 64 hex digits or base64 of 32 bytes, else ``None``."""
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if len(text) in (43, 44):
        padded = (text + "=" * (-len(text) % 4)).encode("ascii", errors="replace")
        for altchars in (None, b"-_"):
            try:
                raw = base64.b64decode(padded, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == KEY_BYTES:
                return raw
    return None


def parse_key_text(text: str, source: str = "argument") -> KeyMaterial:
    """Interpret a key string: hex/base64 of 32 bytes is a raw key, anything else a passphrase."""
    stripped = text.strip()
    if not stripped:
        raise InvalidInputError("gallery_key_invalid", f"the key from {source} is empty")
    raw = _decode_raw_key(stripped)
    if raw is not None:
        return KeyMaterial("raw", raw, source)
    if len(stripped) < 12:
        logger.warning("gallery passphrase from %s is short (%d characters)", source, len(stripped))
    return KeyMaterial("passphrase", stripped.encode("utf-8"), source)


def read_key_file(path: str | os.PathLike[str]) -> KeyMaterial:
    """Read key material from a file: text (hex, base64 or passphrase) or exactly 32 binary bytes."""
    p = Path(path)
    source = f"key file {p}"
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FaceAtlasError("gallery_key_missing", f"key file not found: {p}", path=str(p)) from None
    except OSError as exc:
        raise InvalidInputError("gallery_key_invalid", f"cannot read key file {p}: {exc.strerror}") from None
    try:
        mode = p.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning("key file %s is readable by group or others", p)
    except OSError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if len(data) == KEY_BYTES:
            return KeyMaterial("raw", data, source)
        raise InvalidInputError(
            "gallery_key_invalid", f"key file {p} is neither text nor exactly {KEY_BYTES} raw bytes"
        ) from None
    return parse_key_text(text, source)


def resolve_key(key: KeyLike | None, environ: Mapping[str, str] | None = None) -> KeyMaterial | None:
    """Turn a key argument (or, when ``None``, the environment) into key material, or ``None`` for no key.

    ``bytes`` of length 32 are a raw key; ``str`` is hex/base64 of a raw key, the path of an existing
    key file, or else a passphrase; a ``PathLike`` is a key file. With ``None``, ``FACEATLAS_KEY``
    (key text) is used, then ``FACEATLAS_KEY_FILE`` (a path).
    """
    if isinstance(key, KeyMaterial):
        return key
    if isinstance(key, (bytes, bytearray)):
        data = bytes(key)
        if len(data) == KEY_BYTES:
            return KeyMaterial("raw", data, "argument")
        try:
            return parse_key_text(data.decode("utf-8"), "argument")
        except UnicodeDecodeError:
            raise InvalidInputError(
                "gallery_key_invalid", f"a binary key must be exactly {KEY_BYTES} bytes"
            ) from None
    if isinstance(key, str):
        if _decode_raw_key(key.strip()) is None and os.path.isfile(key):
            return read_key_file(key)  # a path given as text: never use the path itself as a passphrase
        return parse_key_text(key, "argument")
    if key is not None:
        return read_key_file(key)
    source = config.template_key(environ)
    if source is None:
        return None
    kind, value = source
    if kind == "key":
        return parse_key_text(value, f"environment variable {ENV_KEY}")
    return read_key_file(value)


def new_salt() -> bytes:
    """Return a fresh random salt for key derivation."""
    return os.urandom(SALT_BYTES)


def derive_key(
    material: KeyMaterial, salt: bytes, params: KdfParams | None = None, info: bytes = _DATA_KEY_INFO
) -> bytes:
    """Derive a 32-byte AES key bound to ``salt`` (and ``info``) from raw key material or a passphrase."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    if material.kind == "passphrase":
        kp = params or KdfParams()
        ikm = Scrypt(salt=salt, length=KEY_BYTES, n=kp.n, r=kp.r, p=kp.p).derive(material.secret)
    else:
        ikm = material.secret
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(ikm)


class TemplateCipher:
    """AES-256-GCM sealing of small blobs with caller-chosen associated data (so rows cannot be swapped)."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != KEY_BYTES:
            raise InvalidInputError("gallery_key_invalid", f"an AES-256 key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "TemplateCipher(AES-256-GCM)"

    @classmethod
    def from_material(cls, material: KeyMaterial, salt: bytes, params: KdfParams | None = None) -> TemplateCipher:
        """Build the cipher for one gallery (or export file) from key material and its salt."""
        return cls(derive_key(material, salt, params))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext``; the result is version byte, random nonce, then ciphertext and tag."""
        nonce = os.urandom(NONCE_BYTES)
        return BLOB_VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Open a sealed blob; a wrong key, wrong ``aad`` or any tampering raises ``gallery_corrupt``."""
        from cryptography.exceptions import InvalidTag

        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[:1] != BLOB_VERSION:
            raise FaceAtlasError("gallery_corrupt", "an encrypted blob is malformed")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise FaceAtlasError(
                "gallery_corrupt", "an encrypted blob failed authentication (tampered, moved or wrong key)"
            ) from None

    def make_key_check(self) -> bytes:
        """Return a sealed constant that later proves the same key is in use."""
        return self.encrypt(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_AAD)

    def verify_key_check(self, blob: bytes) -> bool:
        """Tell whether ``blob`` was made by :meth:`make_key_check` with this key."""
        try:
            return self.decrypt(blob, _KEY_CHECK_AAD) == _KEY_CHECK_PLAINTEXT
        except FaceAtlasError:
            return False


def encode_b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: str) -> bytes:
    """Decode standard base64 text, mapping errors to ``invalid_input``."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidInputError("invalid_input", "malformed base64 data") from None


__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "KdfParams",
    "KeyLike",
    "KeyMaterial",
    "TemplateCipher",
    "decode_b64",
    "derive_key",
    "encode_b64",
    "new_salt",
    "parse_key_text",
    "read_key_file",
    "resolve_key",
]
