"""A short fuzz run (about 200 malformed requests, every hardening class of issue #12 at least once) against a real
server: no 5xx, no crash, every error JSON, slow headers cut off."""

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


@pytest.mark.slow
def test_malformed_requests_never_get_a_5xx(tmp_path: Path, lfw_dir: Path) -> None:
    fuzz = _fuzz_module()
    images = fuzz.seed_images(lfw_dir.parent.parent)
    with ServerProcess(tmp_path / "home", fuzz.SERVER_ARGS) as server:
        assert server.admin_key
        fuzz.prime(server.url, server.admin_key, images)
        stats = fuzz.run_fuzz(server.url, server.admin_key, 200, seed=11, images=images, threads=4, cover=True,
                              bombs=fuzz.bomb_images())
        summary = stats.summary()
        assert server.alive() and server._healthy()
        log_text = server.stderr_path.read_text(errors="replace")
    assert summary["sent"] == 200
    assert summary["http_5xx"] == 0, summary["examples_5xx"]
    assert summary["non_json_errors"] == 0, summary["examples_bad_shape"]
    assert summary["missing_request_id"] == 0
    assert "Traceback" not in log_text
    assert sum(v for k, v in summary["status_counts"].items() if k.startswith("4")) > 100
    sent_classes = {k.split(" ")[0].removeprefix("hard:") for k in summary["hardening"]}
    assert sent_classes >= set(fuzz.HARDENING_CLASSES), set(fuzz.HARDENING_CLASSES) - sent_classes
    assert summary["slow_header_not_cut_off"] == 0 and summary["slow_header_seconds_max"] < 10
    hard = summary["hardening"]
    assert hard.get("hard:cl-te 400", 0) >= 1 and hard.get("hard:unauth-big-upload 401", 0) >= 1
