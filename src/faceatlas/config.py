"""Environment-driven locations and switches (arguments always win over these)."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """Where galleries, keys and caches live: ``FACEATLAS_HOME`` or the user's data directory."""
    env = os.environ.get("FACEATLAS_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "faceatlas"


def cache_dir() -> Path:
    """Where downloaded and transformed models are cached."""
    if os.environ.get("FACEATLAS_HOME"):
        return home_dir() / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceatlas"


def models_dir() -> Path | None:
    """The extra models directory from ``FACEATLAS_MODELS``, if set."""
    env = os.environ.get("FACEATLAS_MODELS")
    return Path(env).expanduser() if env else None


def offline() -> bool:
    """True when ``FACEATLAS_OFFLINE`` forbids downloads."""
    return os.environ.get("FACEATLAS_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir() -> Path:
    """Benchmark and test data: ``FACEATLAS_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("FACEATLAS_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def default_threads() -> int:
    """Threads per ONNX session: ``FACEATLAS_THREADS`` or the number of usable cores."""
    env = os.environ.get("FACEATLAS_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
