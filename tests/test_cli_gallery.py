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


def test_enroll_dir_pipeline_keeps_people_whole_and_in_order_across_workers() -> None:
    """Work runs ahead across people (one-photo people keep every worker busy); results come back per person, in order."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from faceatlas.cli.enroll import _prepared_by_person

    people = [("a", [Path("a1")]), ("b", [Path("b1"), Path("b2"), Path("b3")]), ("c", [Path("c1")]), ("d", [Path("d1")])]
    running, peak = [0], [0]
    lock = threading.Lock()

    def work(path: Path) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return path.name.upper()

    with ThreadPoolExecutor(max_workers=2) as pool:
        got = [(person, [(p.name, r) for p, r in res]) for person, res in _prepared_by_person(pool, work, iter(people), 4)]
    assert got == [("a", [("a1", "A1")]), ("b", [("b1", "B1"), ("b2", "B2"), ("b3", "B3")]),
                   ("c", [("c1", "C1")]), ("d", [("d1", "D1")])]
    singles = [(name, [Path(name + "1")]) for name in "pqrs"]
    peak[0] = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert [person for person, _ in _prepared_by_person(pool, work, iter(singles), 4)] == list("pqrs")
    assert peak[0] == 2  # both workers busy although every person has a single photo
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert list(_prepared_by_person(pool, work, iter([]), 4)) == []
