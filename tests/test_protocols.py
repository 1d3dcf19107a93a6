"""Protocol readers: LFW pairs, the LFW identification split, user CSV pairs and folder pairs."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from faceatlas.errors import FaceAtlasError, InvalidInputError
from faceatlas.evaluate.protocols import (
    Pair,
    folder_pairs,
    lfw_identification_split,
    read_lfw_pairs,
    read_pairs_csv,
)

DATA = Path(os.environ.get("FACEATLAS_DATA", "/work/shared/data"))
LFW_PAIRS = DATA / "lfw" / "pairs.txt"
LFW_IMAGES = DATA / "lfw" / "images"

SMALL_PAIRS = """2\t2
Alice\t1\t2
Bob 1 3
Alice\t1\tBob\t2
Carol  4  Dave  12
Eve\t1\t2
Eve\t2\t3
Frank\t1\tGina\t1

Gina\t1\tHank\t10
"""


def _write(path: Path, text: str) -> Path:
    """Write a UTF-8 text file and return its path."""
    path.write_text(text, encoding="utf-8")
    return path


def test_read_small_pairs_file(tmp_path: Path) -> None:
    pairs = read_lfw_pairs(_write(tmp_path / "pairs.txt", SMALL_PAIRS))
    assert len(pairs) == 8
    assert pairs[0] == Pair("Alice/Alice_0001.jpg", "Alice/Alice_0002.jpg", True, 0)
    assert pairs[1] == Pair("Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg", True, 0)
    assert pairs[3] == Pair("Carol/Carol_0004.jpg", "Dave/Dave_0012.jpg", False, 0)
    assert pairs[4] == Pair("Eve/Eve_0001.jpg", "Eve/Eve_0002.jpg", True, 1)
    assert pairs[7] == Pair("Gina/Gina_0001.jpg", "Hank/Hank_0010.jpg", False, 1)
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4


def test_single_number_header_means_one_fold(tmp_path: Path) -> None:
    pairs = read_lfw_pairs(_write(tmp_path / "dev.txt", "1\nAl 1 2\nAl 1 Bo 1\n"))
    assert pairs == [
        Pair("Al/Al_0001.jpg", "Al/Al_0002.jpg", True, 0),
        Pair("Al/Al_0001.jpg", "Bo/Bo_0001.jpg", False, 0),
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("2 x\nA 1 2\n", 1),  # bad header
        ("1 1\nA 1\nA 1 B 1\n", 2),  # matched line with 2 fields
        ("1 1\nA 1 2\nA 1 B\n", 3),  # mismatched line with 3 fields
        ("1 1\nA 1 B 2\nA 1 B 1\n", 2),  # mismatched where matched expected
        ("1 1\nA 0 2\nA 1 B 1\n", 2),  # image number 0
        ("1 1\nA one 2\nA 1 B 1\n", 2),  # image number not a number
        ("1 1\nA 1 2\n", 2),  # too few lines
        ("1 1\nA 1 2\nA 1 B 1\nC 1 2\n", 4),  # too many lines
        ("1 1\n../A 1 2\nA 1 B 1\n", 2),  # path traversal in a name
    ],
)
def test_malformed_pairs_name_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = _write(tmp_path / "pairs.txt", text)
    with pytest.raises(FaceAtlasError) as info:
        read_lfw_pairs(path)
    assert info.value.code == "invalid_input"
    assert f"pairs.txt:{line}:" in info.value.message
    assert info.value.details["line"] == line


def test_missing_or_empty_pairs_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        read_lfw_pairs(tmp_path / "nope.txt")
    with pytest.raises(InvalidInputError, match="empty"):
        read_lfw_pairs(_write(tmp_path / "empty.txt", "\n\n"))


def _touch(root: Path, *relpaths: str) -> None:
    """Create small placeholder files (and their folders) under ``root``."""
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_identification_split_small_tree(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "Bob/Bob_0002.jpg",
        "Bob/Bob_0010.jpg",
        "Bob/Bob_0001.jpg",
        "Bob/notes.txt",  # ignored: not a numbered image
        "Alice/Alice_0003.jpg",
        "Alice/Alice_0005.jpg",
        "Carol/Carol_0001.jpg",  # one image -> unknown
        "Dave/Dave_0007.jpg",  # one image -> unknown
        "Empty/readme.md",  # no images -> ignored
    )
    split = lfw_identification_split(tmp_path)
    assert split.gallery == [("Alice", "Alice/Alice_0003.jpg"), ("Bob", "Bob/Bob_0001.jpg")]
    assert split.known_probes == [
        ("Alice", "Alice/Alice_0005.jpg"),
        ("Bob", "Bob/Bob_0002.jpg"),
        ("Bob", "Bob/Bob_0010.jpg"),
    ]
    assert split.unknown_probes == [("Carol", "Carol/Carol_0001.jpg"), ("Dave", "Dave/Dave_0007.jpg")]


def test_identification_split_bad_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        lfw_identification_split(tmp_path / "missing")
    with pytest.raises(InvalidInputError):
        lfw_identification_split(tmp_path)  # exists but holds no images


def test_read_pairs_csv(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "x.jpg"
    text = f"a,b,same\nimgs/1.jpg,imgs/2.jpg,1\n\nimgs/1.jpg,{absolute},FALSE\n imgs/3.jpg , imgs/4.jpg ,true\n"
    pairs = read_pairs_csv(_write(tmp_path / "pairs.csv", text))
    assert pairs == [
        Pair(str(tmp_path / "imgs/1.jpg"), str(tmp_path / "imgs/2.jpg"), True, 0),
        Pair(str(tmp_path / "imgs/1.jpg"), str(absolute), False, 0),
        Pair(str(tmp_path / "imgs/3.jpg"), str(tmp_path / "imgs/4.jpg"), True, 0),
    ]


def test_read_pairs_csv_columns_in_any_order_with_fold(tmp_path: Path) -> None:
    pairs = read_pairs_csv(_write(tmp_path / "p.csv", "same,fold,b,a\n0,3,y.jpg,x.jpg\n"))
    assert pairs == [Pair(str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg"), False, 3)]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a,b\nx,y\n", 1),  # missing 'same'
        ("a,b,same\nx,y,maybe\n", 2),  # bad same
        ("a,b,same\nx,y,1\nx,,1\n", 3),  # empty path
        ("a,b,same\nx,y\n", 2),  # short row
    ],
)
def test_read_pairs_csv_errors(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(InvalidInputError) as info:
        read_pairs_csv(_write(tmp_path / "p.csv", text))
    assert info.value.code == "invalid_input"
    assert info.value.details["line"] == line


def test_read_pairs_csv_without_rows(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no pairs"):
        read_pairs_csv(_write(tmp_path / "header_only.csv", "a,b,same\n"))
    with pytest.raises(InvalidInputError, match="empty"):
        read_pairs_csv(_write(tmp_path / "empty.csv", ""))


def test_folder_pairs(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "ann/1.jpg",
        "ann/2.jpg",
        "ann/3.png",
        "ann/.hidden.jpg",
        "ann/notes.txt",
        "ben/a.jpg",
        "ben/b.JPG",
        "cy/only.jpg",
    )
    pairs = folder_pairs(tmp_path, impostors_per_genuine=1.0, seed=7)
    genuine = [p for p in pairs if p.same]
    impostors = [p for p in pairs if not p.same]
    assert len(genuine) == 4  # ann: 3 pairs, ben: 1 pair
    assert genuine[0] == Pair(str(tmp_path / "ann/1.jpg"), str(tmp_path / "ann/2.jpg"), True, 0)
    assert len(impostors) == 4
    assert len(set(impostors)) == 4
    for p in impostors:
        assert Path(p.a).parent != Path(p.b).parent
    assert folder_pairs(tmp_path, 1.0, seed=7) == pairs  # deterministic
    # 6 images -> 15 pairs, 4 genuine -> 11 impostor pairs at most; asking for more gives all of them.
    everything = folder_pairs(tmp_path, impostors_per_genuine=10.0)
    assert sum(not p.same for p in everything) == 11
    assert sum(not p.same for p in folder_pairs(tmp_path, impostors_per_genuine=0)) == 0


def test_folder_pairs_errors(tmp_path: Path) -> None:
    _touch(tmp_path, "a/1.jpg", "b/1.jpg")
    with pytest.raises(InvalidInputError, match="two or more"):
        folder_pairs(tmp_path)
    with pytest.raises(InvalidInputError):
        folder_pairs(tmp_path, impostors_per_genuine=-1)


@pytest.mark.skipif(not LFW_PAIRS.is_file(), reason=f"LFW pairs not found at {LFW_PAIRS}")
def test_real_lfw_pairs() -> None:
    pairs = read_lfw_pairs(LFW_PAIRS)
    assert len(pairs) == 6000
    per_fold = Counter((p.fold, p.same) for p in pairs)
    assert per_fold == {(f, same): 300 for f in range(10) for same in (True, False)}
    assert len({path for p in pairs for path in (p.a, p.b)}) == 7701
    if LFW_IMAGES.is_dir():
        assert all((LFW_IMAGES / p.a).is_file() and (LFW_IMAGES / p.b).is_file() for p in pairs[:50])


@pytest.mark.skipif(not LFW_IMAGES.is_dir(), reason=f"LFW images not found at {LFW_IMAGES}")
def test_real_lfw_identification_split() -> None:
    split = lfw_identification_split(LFW_IMAGES)
    assert len(split.gallery) == 1680
    assert len({person for person, _ in split.gallery}) == 1680
    assert len(split.known_probes) == 9164 - 1680
    assert len(split.unknown_probes) == 4069
    gallery_people = {person for person, _ in split.gallery}
    assert {person for person, _ in split.known_probes} == gallery_people
    assert not gallery_people & {person for person, _ in split.unknown_probes}
    assert all(rel.endswith("_0001.jpg") for _, rel in split.gallery[:20])


def test_folder_pairs_rejection_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceatlas.evaluate import protocols

    _touch(tmp_path, *(f"p{i}/{j}.jpg" for i in range(6) for j in range(3)))
    enumerated = folder_pairs(tmp_path, impostors_per_genuine=2.0, seed=3)
    monkeypatch.setattr(protocols, "_ENUMERATE_LIMIT", 0)
    sampled = folder_pairs(tmp_path, impostors_per_genuine=2.0, seed=3)
    impostors = [p for p in sampled if not p.same]
    assert len(impostors) == 36 == sum(not p.same for p in enumerated)  # 18 genuine pairs x 2
    assert len(set(impostors)) == 36
    assert all(Path(p.a).parent != Path(p.b).parent for p in impostors)
    assert folder_pairs(tmp_path, impostors_per_genuine=2.0, seed=3) == sampled
