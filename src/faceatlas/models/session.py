"""ONNX Runtime session factory: one place that sets threads, providers, logging and the optimised-graph cache."""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ModelError

log = logging.getLogger(__name__)

_CPU = ["CPUExecutionProvider"]


def create_session(
    path: Path, threads: int | None = None, *, prepack: bool = True, cache_dir: Path | None = None
) -> Any:
    """Open an ONNX Runtime CPU session for a model file (thread-safe for concurrent ``run``).

    ``prepack=False`` skips ORT's weight pre-packing: SFace's session opens ~30 ms faster and runs as fast.
    With ``cache_dir``, the graph ORT optimised for this CPU and ORT version is saved there once (ORT format) and
    later sessions load it without optimising again (same outputs, bit for bit).
    """
    import onnxruntime as ort

    providers = config.providers()
    cached = _optimised_path(ort.__version__, path, prepack, cache_dir) if providers == _CPU else None
    if cached is not None and cached.is_file():
        opts = _options(ort, threads, prepack, optimise=False)
        opts.add_session_config_entry("session.load_model_format", "ORT")
        opts.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
        try:
            return ort.InferenceSession(str(cached), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - a stale or damaged cache entry: rebuild it below
            log.warning("cached optimised model %s cannot be loaded (%s); rebuilding it", cached, exc)
            cached.unlink(missing_ok=True)
    opts = _options(ort, threads, prepack, optimise=True)
    tmp = ""
    if cached is not None:
        import tempfile  # only when the optimised graph is not cached yet (tempfile costs ~4 ms of startup)

        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ort", dir=cached.parent)
            os.close(fd)
            opts.optimized_model_filepath = tmp
            opts.add_session_config_entry("session.save_model_format", "ORT")
        except OSError as exc:
            log.debug("cannot cache the optimised model in %s: %s", cached.parent, exc)
            tmp = ""
    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
        if tmp and cached is not None and os.path.getsize(tmp) > 0:
            os.replace(tmp, cached)
        return session
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError("model_invalid", f"cannot load model {path.name}: {exc}") from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def _options(ort: Any, threads: int | None, prepack: bool, optimise: bool) -> Any:
    """Session options shared by every model."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or config.default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = ort.GraphOptimizationLevel
    opts.graph_optimization_level = level.ORT_ENABLE_ALL if optimise else level.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    # Spin-waiting worker threads burn the cores they wait on: on a 2-core machine shared with decoding, other
    # requests or other programs that made SFace ~1.7x slower (benchmarks/speed.py). Opt back in with FACEATLAS_SPIN=1.
    spin = "1" if config.spin_wait() else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts


def _optimised_path(ort_version: str, path: Path, prepack: bool, cache_dir: Path | None) -> Path | None:
    """Where the ORT-optimised copy of ``path`` lives: keyed by the file, ORT version and this CPU's features."""
    if cache_dir is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    key = "|".join([ort_version, str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), str(prepack), _cpu_id()])
    return cache_dir / "optimized" / f"{path.stem}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.ort"


@lru_cache(maxsize=1)
def _cpu_id() -> str:
    """The CPU's model and feature flags (optimised graphs use kernels chosen for them)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            lines = [ln for ln in fh.read(65536).splitlines() if ln.startswith(("flags", "model name"))]
        return "|".join(sorted(set(lines)))
    except OSError:
        import platform

        return f"{platform.machine()}|{platform.processor()}"
