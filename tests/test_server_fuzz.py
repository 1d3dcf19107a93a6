"""A short fuzz run (about 200 malformed requests) against a real server: no 5xx, no crash, every error JSON."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from faceatlas.server.launcher import ServerProcess

pytest.importorskip("httpx")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _fuzz_module() -> ModuleType:
    """benchmarks/server_fuzz.py, imported by path (it holds the request generator)."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("server_fuzz", BENCH / "server_fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["server_fuzz"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_malformed_requests_never_get_a_5xx(tmp_path: Path, lfw_dir: Path) -> None:
    fuzz = _fuzz_module()
    images = fuzz.seed_images(lfw_dir.parent.parent)
    with ServerProcess(tmp_path / "home", fuzz.SERVER_ARGS) as server:
        assert server.admin_key
        fuzz.prime(server.url, server.admin_key, images)
        stats = fuzz.run_fuzz(server.url, server.admin_key, 200, seed=11, images=images, threads=4)
        summary = stats.summary()
        assert server.alive() and server._healthy()
        log_text = server.stderr_path.read_text(errors="replace")
    assert summary["sent"] == 200
    assert summary["http_5xx"] == 0, summary["examples_5xx"]
    assert summary["non_json_errors"] == 0, summary["examples_bad_shape"]
    assert summary["missing_request_id"] == 0
    assert "Traceback" not in log_text
    assert sum(v for k, v in summary["status_counts"].items() if k.startswith("4")) > 100
