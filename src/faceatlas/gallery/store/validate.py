"""Argument checks of the store: names and ids (NFC-normalised), sha256 digests, SQLite row ids."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from faceatlas.errors import InvalidInputError

MAX_ROW_ID = 2**63 - 1  # SQLite INTEGER range: larger ids cannot exist (and would overflow the binding)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PATH_UNSAFE = frozenset("/\\")


def bad_text() -> InvalidInputError:
    """The error for a name or id that is not valid Unicode text (e.g. a lone surrogate from a bad decode)."""
    return InvalidInputError("invalid_input", "names and ids must be valid Unicode text (lone surrogates are not)")


def _unsafe_identifier(value: str) -> str | None:
    """Say why ``value`` cannot be a new identifier (it must fit in one URL path segment), or ``None``."""
    if value in (".", ".."):
        return "must not be '.' or '..'"
    for ch in value:
        if ch in _PATH_UNSAFE:
            return "must not contain '/' or '\\'"
        if unicodedata.category(ch) == "Cc":
            return "must not contain control characters"
    return None


def check_text(
    value: object, what: str, max_len: int = 1024, *, allow_empty: bool = False, identifier: bool = False
) -> str:
    """Validate a text argument and return it NFC-normalised (the one place names and ids are normalised).

    ``identifier=True`` (a new person's external id) also refuses what cannot be one URL path segment:
    ``/``, ``\\``, control characters, and the names ``.`` and ``..``.
    """
    if not isinstance(value, str) or (not allow_empty and not value.strip()) or len(value) > max_len:
        raise InvalidInputError("invalid_input", f"{what} must be a non-empty string of at most {max_len} characters")
    try:
        text = unicodedata.normalize("NFC", value)
    except UnicodeError:  # pragma: no cover - normalize accepts lone surrogates; kept for safety
        raise bad_text() from None
    if len(text) > max_len:
        raise InvalidInputError("invalid_input", f"{what} must be a non-empty string of at most {max_len} characters")
    if identifier:
        why = _unsafe_identifier(text)
        if why is not None:
            raise InvalidInputError("invalid_input", f"{what} {why} (got {value!r})")
    return text


def name_forms(value: str) -> tuple[str, ...]:
    """The stored forms to look a name or external id up by, in order: NFC (what new rows hold), then as given and
    NFD (rows written before names were normalised); one form for most names."""
    if not isinstance(value, str):
        return (value,)
    return tuple(dict.fromkeys((unicodedata.normalize("NFC", value), value, unicodedata.normalize("NFD", value))))


def check_sha256(value: object, what: str = "image_sha256") -> str | None:
    """Validate an optional sha256 hex digest and return it in lowercase."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.match(value.lower()):
        raise InvalidInputError("invalid_input", f"{what} must be 64 hexadecimal characters")
    return value.lower()


def row_id(value: object, what: str) -> int | None:
    """An integer row id as ``int``; ``None`` when it is outside SQLite's range (so no such row can exist)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError("invalid_input", f"{what} must be an integer")
    out = int(value)
    return out if 0 <= out <= MAX_ROW_ID else None
