"""Cold start: ``import faceatlas``, ``FaceAtlas()`` and a first ``embed`` import only what they run.

Each check runs a fresh interpreter (the way ``benchmarks/speed.py --cases cold`` does) and lists the modules that
should not be there; an eager import added anywhere on the path shows up here as a failure.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lfw

#: Never needed to import the package: runtimes, image libraries, and stdlib modules the cold path avoids.
NOT_ON_IMPORT = ("numpy", "cv2", "onnxruntime", "onnx", "PIL", "logging", "json", "hashlib")

#: Not needed to build a FaceAtlas (models load on first use; thresholds and calibrations when first asked).
NOT_ON_CONSTRUCT = (
    "cv2", "onnxruntime", "onnx", "PIL", "logging", "urllib.request",
    "faceatlas.thresholds", "faceatlas.calibration", "faceatlas.quality", "faceatlas.outcomes",
    "faceatlas.explain", "faceatlas.analysis", "faceatlas.gallery", "faceatlas.recognition", "faceatlas.server",
    "faceatlas.cluster", "faceatlas.video", "faceatlas.evaluate", "faceatlas.distributed", "faceatlas.cli",
    "faceatlas.models.transforms", "faceatlas.models.archive",
)

#: Not needed to embed one photo with the default models once their derived copies are cached (hashlib loads
#: OpenSSL; logging is imported only once a record could be seen, see faceatlas.lazylog).
NOT_ON_EMBED = (
    "PIL", "onnx", "urllib.request", "http", "ssl", "logging", "hashlib",
    "faceatlas.models.transforms", "faceatlas.embed.dlib", "faceatlas.embed.tflite", "faceatlas.embed.ensemble",
    "faceatlas.thresholds", "faceatlas.calibration", "faceatlas.quality", "faceatlas.outcomes",
    "faceatlas.explain", "faceatlas.analysis", "faceatlas.gallery", "faceatlas.recognition", "faceatlas.server",
    "faceatlas.models.archive",
)


def _loaded(code: str, *args: str, runs: int = 1) -> list[str]:
    """The modules a fresh interpreter holds after running ``code`` (the last of ``runs`` runs)."""
    script = code + "\nimport sys; print(sorted(sys.modules))"  # (json would add itself to the list)
    out = ""
    for _ in range(runs):  # the first embed may build the cached model copies (that imports onnx)
        out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True,
                             timeout=120).stdout
    return list(ast.literal_eval(out.splitlines()[-1]))


def _present(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (or their submodules) are among ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_import_faceatlas_loads_only_its_config() -> None:
    modules = _loaded("import faceatlas")
    assert [m for m in modules if m.startswith("faceatlas")] == ["faceatlas", "faceatlas.config"]
    assert _present(modules, NOT_ON_IMPORT) == []


def test_constructing_faceatlas_loads_no_model_runtime_or_optional_part() -> None:
    modules = _loaded("import faceatlas; faceatlas.FaceAtlas()")
    assert "faceatlas.facade" in modules
    assert _present(modules, NOT_ON_CONSTRUCT) == []


def test_first_embed_loads_only_the_embed_path(lfw_dir: Path) -> None:
    image = str(lfw("Aaron_Eckhart", 1))
    modules = _loaded("import sys, faceatlas; assert faceatlas.FaceAtlas().embed(sys.argv[1], faces='one')", image,
                      runs=2)
    assert "onnxruntime" in modules and "faceatlas.detect.yunet" in modules  # it did run the models
    assert _present(modules, NOT_ON_EMBED) == []


def test_lazy_logger_drops_unseen_records_and_keeps_the_rest() -> None:
    code = """
import sys
from faceatlas.lazylog import get_logger
log = get_logger("faceatlas.test")
def quiet():
    log.debug("not shown %s", 1)
    log.info("not shown either")
quiet()
print("logging" in sys.modules)
log.warning("a warning %s", 2)  # no configuration: logging's last-resort handler prints it
import logging
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(funcName)s %(message)s")
def loud():
    log.info("now shown %s", 3)
loud()
print(log.isEnabledFor(logging.DEBUG))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.split() == ["False", "True"]
    assert proc.stderr.splitlines() == ["a warning 2", "INFO loud now shown 3"]


def test_outcome_types_and_calibrations_load_on_first_use() -> None:
    from faceatlas import outcomes, types
    from faceatlas.facade import FaceAtlas
    from faceatlas.types import Rejection, Verification

    assert Verification is outcomes.Verification and Rejection is types.Rejection
    try:
        types.NotAType  # noqa: B018
    except AttributeError as exc:
        assert "NotAType" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    fa = FaceAtlas()
    child = fa.with_detector(det_score=0.9)
    assert child.calibrations is fa.calibrations  # created once, shared like the embedder
    assert fa.operating_point().source and fa.far(0.99) is not None


def test_a_freshly_built_model_copy_is_trusted_without_hashing_it_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from faceatlas.models import ModelStore, trust

    built = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True).resolve("yunet")  # builds the copy
    assert built.runtime_path != built.original
    calls: list[Path] = []
    real = trust.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(trust, "sha256_file", counting)
    again = ModelStore(models_dir=None, cache_dir=tmp_path, offline=True).resolve("yunet")
    assert (again.runtime_path, again.runtime_sha256) == (built.runtime_path, built.runtime_sha256)
    assert calls == [], "the second start must trust the copy the first one wrote (and hashed while writing)"
