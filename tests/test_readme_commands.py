"""Every shell command of README.md runs: the fenced bash blocks, in order, on LFW files named as the README names them.

Placeholders (photo.jpg, people/, clip.mp4, …) are made from LFW images in a scratch folder with a fresh
FACEATLAS_HOME; the commands run there through ``bash`` in README order, so later blocks see what earlier ones made.
``curl`` commands go to a real ``faceatlas serve`` (``$URL``, ``$KEY``: its first-run admin key) and must answer 2xx.
Only the short list in ``SKIPPED`` is not run (it says why). A command that fails fails the test with its output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from conftest import REPO, lfw

from faceatlas.server.launcher import ServerProcess

SKIPPED = {
    "faceatlas serve": "starts a long-running server (tests/test_web_e2e.py runs it)",
    "pip install": "installs packages",
    "bash scripts/test.sh": "runs the whole test suite",
    "eval lfw": "a full LFW evaluation takes minutes (tests/test_eval.py runs one fold)",
    "video 0": "needs a webcam",
    "benchmarks/privacy_audit.py": "a long benchmark",
}

FENCE = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)


def readme_commands() -> list[str]:
    """The commands of README.md's bash blocks (comments and blank lines dropped), in order."""
    out = []
    for block in FENCE.findall((REPO / "README.md").read_text(encoding="utf-8")):
        for line in block.splitlines():
            cmd = line.split("  #")[0].strip() if not line.lstrip().startswith("#") else ""
            if cmd:
                out.append(cmd)
    return out


def _link(src: Path, dst: Path) -> None:
    """Copy one LFW image to a placeholder path."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _clip(path: Path) -> None:
    """A 2-second video of two LFW faces (what README's clip.mp4 stands for)."""
    import cv2
    import numpy as np

    frames = [cv2.resize(cv2.imread(str(lfw("Colin_Powell", i))), (320, 320)) for i in (1, 2)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 320))
    for k in range(20):
        writer.write(np.ascontiguousarray(frames[k // 10]))
    writer.release()


def make_workspace(root: Path) -> None:
    """Every file the README's commands name, made from LFW images."""
    people = {"Tony_Blair": (1, 2, 3), "Colin_Powell": (1, 2, 3), "Gerhard_Schroeder": (1, 2, 3)}
    _link(lfw("Tony_Blair", 4), root / "photo.jpg")
    _link(lfw("Tony_Blair", 5), root / "more" / "one.jpg")
    _link(lfw("Colin_Powell", 5), root / "more" / "two.jpg")
    _link(lfw("Tony_Blair", 1), root / "a.jpg")
    _link(lfw("Tony_Blair", 2), root / "b.jpg")
    for i in (1, 2, 3):
        _link(lfw("Ariel_Sharon", i), root / f"alice{i}.jpg")
    for person, numbers in people.items():
        for i in numbers:
            _link(lfw(person, i), root / "people" / person / f"{person}_{i}.jpg")
            _link(lfw(person, i), root / "my_people" / person / f"{person}_{i}.jpg")
            _link(lfw(person, i), root / "photos" / f"{person}_{i}.jpg")
    for person in ("Ariel_Sharon", "Hugo_Chavez"):  # photos/ shows five people, so README's cluster 3 exists
        for i in (1, 2, 3):
            _link(lfw(person, i), root / "photos" / f"{person}_{i}.jpg")
    (root / "groups.csv").write_text("person,group\nTony_Blair,A\nColin_Powell,B\nGerhard_Schroeder,A\n")
    rows = [("a.jpg", "b.jpg", 1), ("a.jpg", "more/two.jpg", 0), ("photo.jpg", "more/one.jpg", 1)]
    (root / "pairs.csv").write_text("a,b,same\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
    _clip(root / "clip.mp4")
    from PIL import Image

    group = Image.new("RGB", (500, 250))
    group.paste(Image.open(lfw("Tony_Blair", 1)), (0, 0))
    group.paste(Image.open(lfw("Colin_Powell", 1)), (250, 0))
    group.save(root / "group.jpg", quality=95)


def test_readme_commands_are_all_covered() -> None:
    """Each skip entry still matches a README command (a stale entry would hide nothing and mislead)."""
    commands = readme_commands()
    assert len(commands) >= 20
    for needle in SKIPPED:
        assert any(needle in c for c in commands), f"SKIPPED entry {needle!r} matches no README command"


def test_every_readme_command_runs(tmp_path: Path, lfw_dir: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    make_workspace(work)
    env = {**os.environ, "FACEATLAS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO / "src")}
    cli = f"{shlex.quote(sys.executable)} -m faceatlas"
    ran = curls = 0
    with ExitStack() as stack:
        for cmd in readme_commands():
            if any(needle in cmd for needle in SKIPPED):
                continue
            line = re.sub(r"^faceatlas\b", cli, cmd)
            if cmd.startswith("curl "):
                if "URL" not in env:  # the first curl starts the server (its own home: the CLI keeps writing ours)
                    srv = stack.enter_context(ServerProcess(tmp_path / "server-home"))
                    assert srv.admin_key is not None, srv.logs()
                    env = {**env, "URL": srv.url, "KEY": srv.admin_key}
                line = "curl --fail-with-body " + line[len("curl "):]  # an HTTP error fails the command
                curls += 1
            proc = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (f"README command failed ({proc.returncode}): {cmd}\n"
                                          f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            ran += 1
    assert ran >= 30 and curls >= 15
