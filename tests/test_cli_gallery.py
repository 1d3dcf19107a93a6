"""Gallery commands from the shell: enroll-dir (acknowledged JSON lines), identify, person list/delete."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import lfw
from test_cli import run


def _people(root: Path) -> Path:
    for name in ("Tony_Blair", "Colin_Powell"):
        (root / name).mkdir(parents=True)
        for i in (2, 3, 4):
            (root / name / lfw(name, i).name).symlink_to(lfw(name, i))
    return root


def test_enroll_dir_identify_delete(tmp_path: Path, lfw_dir: Path) -> None:
    folder = _people(tmp_path / "people")
    g = str(tmp_path / "g.db")
    proc = run("enroll-dir", str(folder), "--collection", "c", "--gallery", g, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["person"] for x in lines] == ["Colin_Powell", "Tony_Blair"]
    assert all(len(x["sample_ids"]) + len(x["rejected"]) == 3 for x in lines)
    two = run("enroll-dir", str(folder), "--collection", "c", "--gallery", g, "--workers", "1", "--json")
    again = [json.loads(x) for x in two.stdout.splitlines()]
    assert all(r["code"] == "duplicate_image" for x in again for r in x["rejected"]) and not any(x["sample_ids"] for x in again)
    ident = run("identify", str(lfw("Tony_Blair", 10)), "--collection", "c", "--gallery", g, "--json")
    assert ident.returncode == 0, ident.stderr
    face = json.loads(ident.stdout)["faces"][0]
    assert face["person"] == "Tony_Blair" and face["score"] >= face["threshold"] and face["candidates"]
    assert run("person", "delete", "Tony_Blair", "--collection", "c", "--gallery", g).returncode == 0
    after = json.loads(run("identify", str(lfw("Tony_Blair", 10)), "--collection", "c", "--gallery", g, "--json").stdout)
    assert after["faces"][0]["person"] is None
    listed = run("person", "list", "--collection", "c", "--gallery", g, "--json")
    assert [json.loads(x)["person"] for x in listed.stdout.splitlines()] == ["Colin_Powell"]
    missing = run("identify", str(lfw("Tony_Blair", 10)), "--collection", "nope", "--gallery", g)
    assert missing.returncode == 2 and "[not_found]" in missing.stderr
