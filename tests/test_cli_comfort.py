"""CLI comforts: a light import, extras checked before work, readable enroll-dir output, folders as inputs, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import lfw
from test_cli import run

HEAVY = ("numpy", "onnxruntime", "cv2", "fastapi", "uvicorn", "matplotlib", "faceatlas.atlas", "faceatlas.gallery")


def _without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess where ``modules`` cannot be imported (as if the extra were not installed)."""
    code = (
        "import sys\n"
        f"for m in {modules!r}: sys.modules[m] = None\n"
        f"sys.argv = ['faceatlas', *{list(args)!r}]\n"
        "from faceatlas.cli import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _one_line(proc: subprocess.CompletedProcess[str], start: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(start), proc.stderr


def test_import_is_light() -> None:
    code = f"import sys, faceatlas.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_missing_extras_are_named_before_any_work(tmp_path: Path) -> None:
    missing = "faceatlas: error [missing_dependency]: "
    _one_line(_without(["fastapi"], "serve"), missing + "faceatlas serve needs the server extra: pip install 'faceatlas[server]'")
    # The pairs file does not exist: the matplotlib check comes first.
    _one_line(_without(["matplotlib"], "eval", "pairs", str(tmp_path / "missing.csv")),
              missing + "faceatlas eval needs the eval extra: pip install 'faceatlas[eval]'")
    _one_line(_without(["sklearn"], "cluster", str(tmp_path / "missing"), "--algorithm", "hdbscan"),
              missing + "faceatlas cluster needs the cluster extra: pip install 'faceatlas[cluster]'")


def test_help_keeps_option_defaults_whole() -> None:
    for width in ("60", "200"):
        proc = subprocess.run([sys.executable, "-m", "faceatlas", "serve", "--help"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "COLUMNS": width})
        assert proc.returncode == 0, proc.stderr
        flat = "".join(proc.stdout.split())  # narrow terminals wrap inside words: compare without any whitespace
        assert "$FACEATLAS_HOME/gallery.db" in flat and "…" not in proc.stdout and "..." not in proc.stdout
        assert "[default:36000000" in flat and "[default:127.0.0.1]" in flat


def test_detect_walks_folders(lfw_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "deep" / "x.jpg").symlink_to(lfw("Abel_Pacheco", 1))
    (root / "a" / "y.jpg").symlink_to(lfw("Aaron_Eckhart", 1))
    (root / "notes.txt").write_text("not an image")
    proc = run("detect", str(root), str(lfw("Abel_Pacheco", 4)), "--json")
    assert proc.returncode == 0, proc.stderr
    images = [json.loads(x)["image"] for x in proc.stdout.splitlines()]
    assert images == [str(root / "a" / "y.jpg"), str(root / "b" / "deep" / "x.jpg"), str(lfw("Abel_Pacheco", 4))]


def test_enroll_dir_text_lines_person_header_identify_folder(lfw_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "people"
    for name in ("Tony_Blair", "Colin_Powell"):
        (folder / name).mkdir(parents=True)
        for i in (2, 3):
            (folder / name / lfw(name, i).name).symlink_to(lfw(name, i))
    Image.new("RGB", (300, 200), (240, 240, 240)).save(folder / "Tony_Blair" / "wall.png")
    g = str(tmp_path / "g.db")
    proc = run("enroll-dir", str(folder), "--collection", "c", "--gallery", g)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert lines[0] == "Colin_Powell: 2 enrolled"
    assert lines[1].startswith("Tony_Blair: 2 enrolled, 1 rejected: wall.png [no_face] ")
    assert lines[2].startswith("2 people, 5 images: 4 faces enrolled, 1 rejected (no_face 1) in ") and lines[2].endswith("s")

    listed = run("person", "list", "--collection", "c", "--gallery", g)
    assert listed.stdout.splitlines()[0] == "person\tname\tfaces\tid"
    assert [ln.split("\t")[0] for ln in listed.stdout.splitlines()[1:]] == ["Colin_Powell", "Tony_Blair"]
    as_json = run("person", "list", "--collection", "c", "--gallery", g, "--json")
    assert [json.loads(x)["person"] for x in as_json.stdout.splitlines()] == ["Colin_Powell", "Tony_Blair"]

    probes = tmp_path / "probes"
    (probes / "x").mkdir(parents=True)
    (probes / "x" / "tb.jpg").symlink_to(lfw("Tony_Blair", 10))
    (probes / "cp.jpg").symlink_to(lfw("Colin_Powell", 4))
    ident = run("identify", str(probes), "--collection", "c", "--gallery", g, "--json")
    assert ident.returncode == 0, ident.stderr
    got = [(Path(o["image"]).name, o["faces"][0]["person"]) for o in map(json.loads, ident.stdout.splitlines())]
    assert got == [("cp.jpg", "Colin_Powell"), ("tb.jpg", "Tony_Blair")]
