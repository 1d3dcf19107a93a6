"""ONNX Runtime session factory: one place that sets threads, providers, logging and the optimised-graph cache."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ModelError
from ..lazylog import get_logger
from .trust import sha256_hex

log = get_logger(__name__)

_CPU = ["CPUExecutionProvider"]


def create_session(
    path: Path, threads: int | None = None, *, prepack: bool = True, cache_dir: Path | None = None
) -> Any:
    """Open an ONNX Runtime CPU session for a model file (thread-safe for concurrent ``run``).

    ``prepack=False`` skips ORT's weight pre-packing: SFace's session opens ~30 ms faster and runs as fast.
    With ``cache_dir``, the graph ORT optimised for this CPU and ORT version is saved there once, as an ONNX file
    whose weights sit in a sidecar ``.data`` file that later sessions memory-map instead of copying: SFace's
    session then opens in ~6 ms of CPU instead of ~70 ms (the ORT-format cache), with the same outputs bit for bit.
    """
    import onnxruntime as ort

    providers = config.providers()
    cached = _optimised_path(ort.__version__, path, prepack, cache_dir) if providers == _CPU else None
    if cached is None:
        return _open(ort, path, _options(ort, threads, prepack, optimise=True), providers)
    if cached.is_file():
        loaded = _open_cached(ort, cached, threads, prepack, providers)
        if loaded is not None:
            return loaded
    with _DirLock(cached.parent):  # one builder per cache folder; the others wait, then memory-map its result
        if cached.is_file():
            loaded = _open_cached(ort, cached, threads, prepack, providers)
            if loaded is not None:
                return loaded
        return _build_cached(ort, path, cached, threads, prepack, providers)


def _open(ort: Any, path: Path, opts: Any, providers: list[str]) -> Any:
    """A session for ``path``; load failures become ``model_invalid``."""
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError("model_invalid", f"cannot load model {path.name}: {exc}") from None


def _open_cached(ort: Any, cached: Path, threads: int | None, prepack: bool, providers: list[str]) -> Any | None:
    """A session from the saved optimised graph, or None when that copy is stale or damaged."""
    try:
        return ort.InferenceSession(str(cached), _options(ort, threads, prepack, optimise=False), providers=providers)
    except Exception as exc:  # noqa: BLE001 - a stale or damaged cache entry: rebuilt by the caller
        log.warning("cached optimised model %s cannot be loaded (%s); rebuilding it", cached, exc)
        return None


def _build_cached(ort: Any, path: Path, cached: Path, threads: int | None, prepack: bool, providers: list[str]) -> Any:
    """Optimise ``path`` into a session and save the optimised graph at ``cached`` (weights in ``cached.data``)."""
    data = _data_path(cached)
    tmp = cached.with_name(f".tmp-{os.getpid()}-{cached.name}")
    opts = _options(ort, threads, prepack, optimise=True)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Unlink, never overwrite: a process may still have the old weights memory-mapped.
        for old in (cached, data, tmp, cached.with_suffix(".ort")):  # .ort: the ORT-format cache used before
            old.unlink(missing_ok=True)
        opts.optimized_model_filepath = str(tmp)
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", data.name)
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    except OSError as exc:
        log.debug("cannot cache the optimised model in %s: %s", cached.parent, exc)
        return _open(ort, path, _options(ort, threads, prepack, optimise=True), providers)
    try:
        try:
            session = _open(ort, path, opts, providers)
        except ModelError:  # e.g. the optimised copy could not be written: load without saving (re-raises if bad)
            return _open(ort, path, _options(ort, threads, prepack, optimise=True), providers)
        if tmp.is_file() and tmp.stat().st_size > 0 and data.is_file():
            for made in (tmp, data):
                os.chmod(made, 0o600)  # like every other file in the cache
            os.replace(tmp, cached)  # the graph appears only once its weights are complete
        return session
    except OSError as exc:
        log.debug("cannot cache the optimised model in %s: %s", cached.parent, exc)
        return _open(ort, path, _options(ort, threads, prepack, optimise=True), providers)
    finally:
        tmp.unlink(missing_ok=True)


def _data_path(cached: Path) -> Path:
    """The sidecar file holding a cached optimised graph's weights."""
    return cached.with_name(cached.name + ".data")


class _DirLock:
    """An exclusive advisory lock on a folder (a no-op where ``fcntl`` or the folder is unavailable)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd = -1

    def __enter__(self) -> None:
        try:
            import fcntl

            self.folder.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.folder, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError) as exc:
            log.debug("no lock on %s: %s", self.folder, exc)
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = -1

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1


def _options(ort: Any, threads: int | None, prepack: bool, optimise: bool) -> Any:
    """Session options shared by every model."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or config.default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = ort.GraphOptimizationLevel
    opts.graph_optimization_level = level.ORT_ENABLE_ALL if optimise else level.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    # Spin-waiting worker threads burn the cores they wait on. Off by default: with one of the 2 cores busy elsewhere
    # a 250x250 image took 1.26x OpenCV's time with spinning and 0.93x without (`benchmarks/speed.py --hog 1`); on an
    # idle machine spinning is ~10 % faster. FACEATLAS_SPIN=1 opts in, and then threads spin only inside a run, never
    # after it (force_spinning_stop): left spinning after a run they take a core from whatever runs next.
    spin = "1" if config.spin_wait() else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if spin == "1":
        opts.add_session_config_entry("session.force_spinning_stop", "1")
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
    return cache_dir / "optimized" / f"{path.stem}.{sha256_hex(key.encode())[:16]}.onnx"


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
