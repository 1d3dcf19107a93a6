"""The command line as a user runs it: exit codes, --json lines, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lfw


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m faceatlas ARGS`` in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "faceatlas", *args], capture_output=True, text=True, env=full_env, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess[str], code: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"faceatlas: error [{code}]")
    assert "Traceback" not in proc.stderr


def test_verify_exit_codes(lfw_dir: Path, tmp_path: Path) -> None:
    same = run("verify", str(lfw("Abel_Pacheco", 1)), str(lfw("Abel_Pacheco", 4)))
    assert same.returncode == 0 and same.stdout.startswith("same person"), same.stderr
    diff = run("verify", str(lfw("Abel_Pacheco", 1)), str(lfw("Aaron_Eckhart", 1)))
    assert diff.returncode == 1 and diff.stdout.startswith("different people")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(lfw("Abel_Pacheco", 1).read_bytes()[:700])
    _one_line_error(run("verify", str(bad), str(lfw("Abel_Pacheco", 4))), "image_corrupt")
    _one_line_error(run("verify", str(tmp_path / "missing.jpg"), str(lfw("Abel_Pacheco", 4))), "image_not_found")
    (tmp_path / "empty.png").write_bytes(b"")
    _one_line_error(run("verify", str(tmp_path / "empty.png"), str(lfw("Abel_Pacheco", 4))), "image_empty")
    (tmp_path / "text.jpg").write_text("hello")
    _one_line_error(run("verify", str(tmp_path / "text.jpg"), str(lfw("Abel_Pacheco", 4))), "image_unsupported")


def test_verify_json_and_threshold(lfw_dir: Path) -> None:
    proc = run("verify", str(lfw("Abel_Pacheco", 1)), str(lfw("Abel_Pacheco", 4)), "--json", "--threshold", "0.9")
    assert proc.returncode == 1
    obj = json.loads(proc.stdout)
    assert obj["same"] is False and obj["threshold"] == 0.9 and obj["threshold_source"] == "user"
    assert obj["model_id"] == "sface" and len(obj["face_a"]["box"]) == 4 and len(obj["face_a"]["landmarks"]) == 5
    bad = run("verify", str(lfw("Abel_Pacheco", 1)), str(lfw("Abel_Pacheco", 4)), "--threshold", "far=nope")
    _one_line_error(bad, "invalid_threshold")


def test_verify_no_face(tmp_path: Path, lfw_dir: Path) -> None:
    from PIL import Image

    Image.new("RGB", (300, 200), (240, 240, 240)).save(tmp_path / "wall.png")
    _one_line_error(run("verify", str(tmp_path / "wall.png"), str(lfw("Abel_Pacheco", 4))), "no_face")


def test_detect_json_lines(lfw_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    proc = run("detect", str(lfw("Aaron_Eckhart", 1)), str(tmp_path / "bad.jpg"), str(lfw("Abel_Pacheco", 1)), "--json")
    assert proc.returncode == 2  # one image failed; the others are still reported
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [Path(x["image"]).name for x in lines] == ["Aaron_Eckhart_0001.jpg", "bad.jpg", "Abel_Pacheco_0001.jpg"]
    face = lines[0]["faces"][0]
    assert len(face["box"]) == 4 and all(len(p) == 2 for p in face["landmarks"]) and 0 < face["score"] <= 1
    assert lines[1]["error"]["code"] in {"image_corrupt", "image_unsupported"}
    ok = run("detect", str(lfw("Aaron_Eckhart", 1)))
    assert ok.returncode == 0 and "1 face(s)" in ok.stdout


def test_embed_json_has_vectors(lfw_dir: Path) -> None:
    proc = run("embed", str(lfw("Aaron_Eckhart", 1)), "--json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    tmpl = obj["faces"][0]["template"]
    assert tmpl["model_id"] == "sface" and len(tmpl["vector"]) == tmpl["dim"] == 128
    assert sum(v * v for v in tmpl["vector"]) == pytest.approx(1.0, abs=1e-3)


def test_models_list_and_verify(models_dir: Path) -> None:
    proc = run("models", "list", "--json")
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["sface"]["source"] == "package" and rows["sface"]["commercial_use"] is True
    assert rows["scrfd-500m"]["commercial_use"] is False and rows["scrfd-500m"]["source"] == "models_dir"
    human = run("models", "list")
    assert "licence" in human.stdout and "yunet" in human.stdout
    ver = run("models", "verify")
    assert ver.returncode == 0 and "sface: OK" in ver.stdout


def test_models_verify_reports_a_bad_file(tmp_path: Path, models_dir: Path) -> None:
    bad = tmp_path / "models"
    bad.mkdir()
    (bad / "scrfd_500m.onnx").write_bytes(b"tampered")
    proc = run("models", "verify", env={"FACEATLAS_MODELS": str(bad)})
    assert proc.returncode == 2 and "scrfd-500m: FAILED" in proc.stdout


def test_usage_errors_exit_2() -> None:
    assert run("verify", "only-one-arg").returncode == 2
    assert run("no-such-command").returncode == 2
