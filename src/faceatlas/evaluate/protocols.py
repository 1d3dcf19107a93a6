"""Evaluation protocols: LFW View-2 pairs, an LFW open-set identification split, and user-supplied pair lists."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from faceatlas.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "IdentificationSplit",
    "Pair",
    "folder_pairs",
    "lfw_identification_split",
    "read_lfw_pairs",
    "read_pairs_csv",
]

PathLike = str | os.PathLike[str]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""File suffixes (lower-case) treated as images when scanning folders."""

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})

# Above this many candidate image pairs, impostors are drawn by rejection sampling instead of enumeration.
_ENUMERATE_LIMIT = 2_000_000


@dataclass(frozen=True)
class Pair:
    """Two images to compare, whether they show the same person, and the cross-validation fold they belong to."""

    a: str
    b: str
    same: bool
    fold: int = 0


@dataclass(frozen=True)
class IdentificationSplit:
    """Open-set identification split: gallery, known probes and unknown probes as ``(person, relpath)`` tuples."""

    gallery: list[tuple[str, str]]
    known_probes: list[tuple[str, str]]
    unknown_probes: list[tuple[str, str]]


def _invalid(message: str, path: PathLike, line: int | None = None) -> InvalidInputError:
    """Build an ``invalid_input`` error that names the file and, when known, the line."""
    where = f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
    return InvalidInputError("invalid_input", f"{where}: {message}", path=os.fspath(path), line=line)


def _read_text(path: PathLike) -> str:
    """Read a UTF-8 text file, turning I/O and decoding failures into ``invalid_input`` errors."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise _invalid("file not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"cannot read file ({exc})", path) from exc


def _positive_int(token: str, what: str, path: PathLike, line: int) -> int:
    """Parse a strictly positive decimal integer token."""
    if not token.isdigit() or int(token) < 1:
        raise _invalid(f"{what} must be a positive integer, got {token!r}", path, line)
    return int(token)


def _person(token: str, path: PathLike, line: int) -> str:
    """Validate a person name used as a folder name."""
    if token in (".", "..") or "/" in token or "\\" in token:
        raise _invalid(f"invalid person name {token!r}", path, line)
    return token


def _lfw_relpath(name: str, number: int) -> str:
    """Relative LFW image path for a person and a 1-based image number."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_lfw_pairs(path: PathLike) -> list[Pair]:
    """Parse an LFW pairs file (View 2 ``pairs.txt``: header ``folds n``) into pairs of relative image paths.

    Each fold has ``n`` matched lines ``name i j`` followed by ``n`` mismatched lines ``name1 i name2 j`` (tab or
    space separated). A one-number header (View 1 ``pairsDevTrain.txt`` style) means a single fold. Blank lines are
    ignored; anything else malformed raises ``invalid_input`` naming the line.
    """
    lines = [(no, line.split()) for no, line in enumerate(_read_text(path).splitlines(), start=1) if line.strip()]
    if not lines:
        raise _invalid("file is empty", path)
    header_line, header = lines[0]
    if len(header) == 2:
        n_folds = _positive_int(header[0], "number of folds", path, header_line)
        per_side = _positive_int(header[1], "pairs per fold", path, header_line)
    elif len(header) == 1:
        n_folds, per_side = 1, _positive_int(header[0], "pairs per fold", path, header_line)
    else:
        raise _invalid("header must be '<folds> <pairs per fold>'", path, header_line)
    body = lines[1:]
    expected = n_folds * 2 * per_side
    if len(body) < expected:
        last = body[-1][0] if body else header_line
        raise _invalid(f"file ends after {len(body)} pairs but the header announces {expected}", path, last)
    if len(body) > expected:
        raise _invalid(f"extra line beyond the {expected} pairs the header announces", path, body[expected][0])

    pairs: list[Pair] = []
    for index, (line, tokens) in enumerate(body):
        fold, position = divmod(index, 2 * per_side)
        if position < per_side:
            if len(tokens) != 3:
                message = f"expected a matched pair 'name i j' (fold {fold}), got {len(tokens)} fields"
                raise _invalid(message, path, line)
            name = _person(tokens[0], path, line)
            i = _positive_int(tokens[1], "image number", path, line)
            j = _positive_int(tokens[2], "image number", path, line)
            pairs.append(Pair(_lfw_relpath(name, i), _lfw_relpath(name, j), True, fold))
        else:
            if len(tokens) != 4:
                raise _invalid(
                    f"expected a mismatched pair 'name1 i name2 j' (fold {fold}), got {len(tokens)} fields", path, line
                )
            name_a = _person(tokens[0], path, line)
            i = _positive_int(tokens[1], "image number", path, line)
            name_b = _person(tokens[2], path, line)
            j = _positive_int(tokens[3], "image number", path, line)
            pairs.append(Pair(_lfw_relpath(name_a, i), _lfw_relpath(name_b, j), False, fold))
    return pairs


def _numbered_images(folder: Path, person: str) -> list[str]:
    """File names ``<person>_<digits>.<image ext>`` in a folder, sorted by their number."""
    prefix = f"{person}_"
    found: list[tuple[int, str]] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            number = stem[len(prefix) :]
            if (
                stem.startswith(prefix)
                and number.isdigit()
                and suffix.lower() in IMAGE_EXTENSIONS
                and entry.is_file()
            ):
                found.append((int(number), entry.name))
    found.sort()
    return [name for _, name in found]


def _subfolders(root: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``root``."""
    if not root.is_dir():
        raise InvalidInputError("invalid_input", f"{root}: not a directory", path=str(root))
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def lfw_identification_split(images_root: PathLike) -> IdentificationSplit:
    """Split an LFW-style ``<Person>/<Person>_NNNN.jpg`` tree for open-set identification.

    Gallery: the lowest-numbered image of every person with at least two images; known probes: those people's other
    images; unknown probes: every image of people with exactly one image. Sorted by person, then image number.
    """
    root = Path(images_root)
    gallery: list[tuple[str, str]] = []
    known: list[tuple[str, str]] = []
    unknown: list[tuple[str, str]] = []
    for person in _subfolders(root):
        files = _numbered_images(root / person, person)
        entries = [(person, f"{person}/{name}") for name in files]
        if len(entries) == 1:
            unknown.extend(entries)
        elif entries:
            gallery.append(entries[0])
            known.extend(entries[1:])
    if not gallery and not unknown:
        raise InvalidInputError("invalid_input", f"{root}: no <Person>/<Person>_NNNN images found", path=str(root))
    return IdentificationSplit(gallery=gallery, known_probes=known, unknown_probes=unknown)


def _parse_same(value: str, path: PathLike, line: int) -> bool:
    """Parse a ``same`` cell: 1/0/true/false/yes/no, case-insensitive."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _invalid(f"'same' must be 1/0/true/false, got {value!r}", path, line)


def read_pairs_csv(path: PathLike) -> list[Pair]:
    """Read user pairs from a CSV with header ``a,b,same`` (optional ``fold`` column).

    Relative image paths are resolved against the CSV's folder; the returned paths are absolute. ``same`` is
    1/0/true/false (case-insensitive). Blank rows are skipped; bad rows raise ``invalid_input`` naming the line.
    """
    csv_path = Path(path)
    base = csv_path.absolute().parent
    reader = csv.reader(io.StringIO(_read_text(csv_path), newline=""))
    try:
        first = next(reader, None)
        if first is None:
            raise _invalid("file is empty", path)
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise _invalid(f"malformed CSV ({exc})", path, reader.line_num) from exc
    header = [cell.strip().lower() for cell in first]
    missing = [col for col in ("a", "b", "same") if col not in header]
    if missing:
        raise _invalid(f"header must contain a,b,same (missing {','.join(missing)})", path, 1)
    col_a, col_b, col_same = header.index("a"), header.index("b"), header.index("same")
    col_fold = header.index("fold") if "fold" in header else None
    width = max(col_a, col_b, col_same, col_fold if col_fold is not None else 0) + 1

    pairs: list[Pair] = []
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < width:
            raise _invalid(f"expected at least {width} columns, got {len(row)}", path, line)
        a, b = row[col_a].strip(), row[col_b].strip()
        if not a or not b:
            raise _invalid("image path is empty", path, line)
        fold = 0
        if col_fold is not None:
            cell = row[col_fold].strip()
            if not cell.isdigit():
                raise _invalid(f"'fold' must be a non-negative integer, got {cell!r}", path, line)
            fold = int(cell)
        pairs.append(Pair(str(base / a), str(base / b), _parse_same(row[col_same], path, line), fold))
    if not pairs:
        raise _invalid("no pairs in file", path)
    return pairs


def _sample_impostors(person_of: np.ndarray[Any, Any], wanted: int, seed: int) -> list[tuple[int, int]]:
    """Seeded uniform sample, without replacement, of ``wanted`` image index pairs (i < j) of different people."""
    n = int(person_of.size)
    if wanted <= 0:
        return []
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= _ENUMERATE_LIMIT:
        i, j = np.triu_indices(n, k=1)
        keep = person_of[i] != person_of[j]
        i, j = i[keep], j[keep]
        pick = np.sort(rng.choice(i.size, size=wanted, replace=False))
        return list(zip(i[pick].tolist(), j[pick].tolist(), strict=True))
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < wanted:
        batch = 2 * (wanted - len(chosen)) + 16
        xs = rng.integers(0, n, size=batch).tolist()
        ys = rng.integers(0, n, size=batch).tolist()
        for x, y in zip(xs, ys, strict=True):
            if person_of[x] != person_of[y]:
                chosen.add((min(x, y), max(x, y)))
                if len(chosen) == wanted:
                    break
    return sorted(chosen)


def folder_pairs(root: PathLike, impostors_per_genuine: float = 1.0, seed: int = 0) -> list[Pair]:
    """Build pairs from a folder with one sub-folder of images per person.

    Returns every genuine pair (all image pairs within each person), then a seeded uniform random sample of
    ``round(impostors_per_genuine * n_genuine)`` impostor pairs (capped at the number possible). Paths are absolute;
    the order is deterministic for a given ``seed``; every pair is in fold 0.
    """
    ratio = float(impostors_per_genuine)
    if not math.isfinite(ratio) or ratio < 0:
        raise InvalidInputError("invalid_input", "impostors_per_genuine must be a finite number >= 0")
    base = Path(root).absolute()
    images: list[str] = []
    owners: list[int] = []
    genuine: list[Pair] = []
    for person_index, person in enumerate(_subfolders(base)):
        folder = base / person
        with os.scandir(folder) as entries:
            files = sorted(
                e.name
                for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                and e.is_file()
            )
        paths = [str(folder / name) for name in files]
        genuine.extend(Pair(x, y, True, 0) for x, y in combinations(paths, 2))
        images.extend(paths)
        owners.extend([person_index] * len(paths))
    if not genuine:
        raise InvalidInputError("invalid_input", f"{base}: no person folder holds two or more images", path=str(base))
    person_of = np.asarray(owners, dtype=np.int64)
    n = len(images)
    available = n * (n - 1) // 2 - len(genuine)
    wanted = round(ratio * len(genuine))
    if wanted > available:
        logger.warning("only %d impostor pairs exist; using all of them instead of %d", available, wanted)
        wanted = available
    impostors = [Pair(images[i], images[j], False, 0) for i, j in _sample_impostors(person_of, wanted, seed)]
    return genuine + impostors
