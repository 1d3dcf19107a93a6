"""Every environment variable faceatlas reads, in one place (arguments always win over these).

Nothing else in ``src/`` touches ``os.environ``: modules call the functions here, or read one typed ``Settings``
snapshot from :func:`settings`. :func:`privacy_defaults` switches dependency telemetry off before those
dependencies are imported (``faceatlas/__init__`` calls it; no model or file work happens at import time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Names of the variables (documented in README "Configuration").
ENV_HOME = "FACEATLAS_HOME"
ENV_MODELS = "FACEATLAS_MODELS"
ENV_DATA = "FACEATLAS_DATA"
ENV_OFFLINE = "FACEATLAS_OFFLINE"
ENV_THREADS = "FACEATLAS_THREADS"
ENV_THRESHOLD = "FACEATLAS_THRESHOLD"
ENV_GALLERY = "FACEATLAS_GALLERY"
ENV_KEY = "FACEATLAS_KEY"
ENV_KEY_FILE = "FACEATLAS_KEY_FILE"
ENV_MILVUS_TOKEN = "FACEATLAS_MILVUS_TOKEN"  # noqa: S105 - the name of a variable, not a secret
ENV_ACTOR = "FACEATLAS_ACTOR"
ENV_SPIN = "FACEATLAS_SPIN"
ENV_PROVIDERS = "FACEATLAS_PROVIDERS"
ENV_DEBUG = "FACEATLAS_DEBUG"
ENV_SERVER_SETTINGS = "FACEATLAS_SERVER_SETTINGS"
ENV_TELEMETRY = "FACEATLAS_ALLOW_TELEMETRY"
ENV_CALIBRATION = "FACEATLAS_CALIBRATION"

_TRUE = {"1", "true", "yes", "on"}

# Switches that stop dependencies from recording or sending usage data; set before those dependencies are imported
# unless the user opts in with FACEATLAS_ALLOW_TELEMETRY=1. A value the user has set is never overridden.
TELEMETRY_OFF: dict[str, str] = {
    # onnxruntime: every import queues a 1DS event (device id, OS, CPU, Python path) in
    # ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db for upload; with this set it writes nothing.
    "ORT_DISABLE_TELEMETRY": "1",
    # Ray usage statistics (Ray is not a dependency; set in case an environment brings it in).
    "RAY_USAGE_STATS_ENABLED": "0",
    # huggingface_hub, if a dependency pulls it in.
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # OpenTelemetry: FastAPI traces every request through the global OpenTelemetry providers; an installed SDK
    # (fastapi[standard], opentelemetry-instrument) with FASTAPI_OTEL_AUTO_CONFIGURE / OTEL_* variables would export
    # request spans, metrics and exception logs. With only the API installed (our extras) it is a no-op either way.
    "OTEL_SDK_DISABLED": "true",
    # The cross-tool "do not track" convention.
    "DO_NOT_TRACK": "1",
}

# Where a dependency would otherwise write into the user's home: under faceatlas' cache instead (always applied,
# unless the user set the variable). Each value is a folder name below cache_dir().
CACHE_REDIRECTS: dict[str, str] = {
    # matplotlib (eval plots) writes a font list to ~/.cache/matplotlib and makes ~/.config/matplotlib.
    "MPLCONFIGDIR": "matplotlib",
}

# Hosts gRPC must reach directly, never through http_proxy / https_proxy / grpc_proxy: Milvus Lite runs an
# in-process gRPC server on 127.0.0.1, and grpcio would otherwise send the templates to the proxy.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_PROXY_VARS = ("grpc_proxy", "https_proxy", "http_proxy", "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


def _env(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The mapping to read: the given one or the process environment."""
    return os.environ if environ is None else environ


def _flag(value: str | None) -> bool:
    """A boolean environment value (1/true/yes/on)."""
    return (value or "").strip().lower() in _TRUE


def get(name: str, default: str | None = None) -> str | None:
    """The raw value of one variable (for the few callers that pass names through, e.g. the server settings)."""
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def set_var(name: str, value: str) -> None:
    """Set a variable for this process and its children (the server hands its settings to workers this way)."""
    os.environ[name] = value


def set_default(name: str, value: str) -> None:
    """Set a variable only when the user has not set it."""
    os.environ.setdefault(name, value)


def environ_copy(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment (or of ``base``) for a child process."""
    return dict(_env(base))


def privacy_defaults() -> None:
    """Keep dependencies' files in faceatlas' cache and loopback off proxies; switch telemetry off unless opted in."""
    for name, folder in CACHE_REDIRECTS.items():
        set_default(name, str(cache_dir() / folder))
    _loopback_without_proxy()
    if _flag(os.environ.get(ENV_TELEMETRY)):
        return
    for name, value in TELEMETRY_OFF.items():
        set_default(name, value)


def _loopback_without_proxy() -> None:
    """Add the loopback hosts to gRPC's proxy exceptions (``no_grpc_proxy``) when a proxy is configured."""
    if not any(os.environ.get(name) for name in _PROXY_VARS):
        return
    current = os.environ.get("no_grpc_proxy") or os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    hosts = [h.strip() for h in current.split(",") if h.strip()]
    if "*" in hosts:
        return
    os.environ["no_grpc_proxy"] = ",".join(hosts + [h for h in LOOPBACK_HOSTS if h not in hosts])


def quiet_opencv() -> None:
    """Silence OpenCV/FFmpeg console logging unless the user asked for it."""
    set_default("OPENCV_FFMPEG_LOGLEVEL", "-8")
    set_default("OPENCV_LOG_LEVEL", "SILENT")


def home_dir() -> Path:
    """Where galleries, keys and caches live: ``FACEATLAS_HOME`` or the user's data directory."""
    env = get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    base = get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "faceatlas"


def cache_dir() -> Path:
    """Where downloaded and transformed models are cached."""
    if get(ENV_HOME):
        return home_dir() / "cache"
    base = get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceatlas"


def models_dir() -> Path | None:
    """The extra models directory from ``FACEATLAS_MODELS``, if set."""
    env = get(ENV_MODELS)
    return Path(env).expanduser() if env else None


def offline() -> bool:
    """True when ``FACEATLAS_OFFLINE`` forbids downloads."""
    return _flag(get(ENV_OFFLINE))


def data_dir() -> Path:
    """Benchmark and test data: ``FACEATLAS_DATA`` or ``../shared/data`` beside the checkout."""
    env = get(ENV_DATA)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def default_threads() -> int:
    """Threads per ONNX session: ``FACEATLAS_THREADS`` or the number of usable cores."""
    env = get(ENV_THREADS)
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_threshold() -> str | None:
    """A process-wide threshold (number or ``far=…``) from ``FACEATLAS_THRESHOLD``, if set."""
    return get(ENV_THRESHOLD)


def default_gallery() -> str:
    """Where the default gallery lives: ``FACEATLAS_GALLERY`` or ``$FACEATLAS_HOME/gallery.db``."""
    return get(ENV_GALLERY) or str(home_dir() / "gallery.db")


def template_key(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The template-encryption key source: ``("key", text)`` from ``FACEATLAS_KEY``, ``("file", path)`` or None."""
    env = _env(environ)
    if env.get(ENV_KEY):
        return ("key", env[ENV_KEY])
    if env.get(ENV_KEY_FILE):
        return ("file", env[ENV_KEY_FILE])
    return None


def calibration() -> str | None:
    """The user calibration to use (a name under ``$FACEATLAS_HOME/calibrations`` or a path), if one is chosen."""
    return get(ENV_CALIBRATION)


def milvus_token() -> str | None:
    """The Milvus server token from ``FACEATLAS_MILVUS_TOKEN``, if set."""
    return get(ENV_MILVUS_TOKEN)


def actor() -> str | None:
    """Who the audit log names for writes from this process (``FACEATLAS_ACTOR``), if set."""
    return get(ENV_ACTOR)


def spin_wait() -> bool:
    """True when ONNX Runtime may spin-wait its threads (``FACEATLAS_SPIN=1``; off by default)."""
    return get(ENV_SPIN) == "1"


def providers() -> list[str]:
    """ONNX Runtime execution providers (``FACEATLAS_PROVIDERS``, comma-separated; CPU by default)."""
    return [p for p in (get(ENV_PROVIDERS) or "").split(",") if p] or ["CPUExecutionProvider"]


def debug() -> bool:
    """True when ``FACEATLAS_DEBUG`` asks the CLI for tracebacks."""
    return bool(get(ENV_DEBUG))


def server_settings_json(environ: Mapping[str, str] | None = None) -> str | None:
    """The serialised server settings handed to worker processes, if any."""
    return _env(environ).get(ENV_SERVER_SETTINGS) or None


@dataclass(frozen=True)
class Settings:
    """One typed snapshot of every faceatlas variable (for display and for code that wants them together)."""

    home: Path
    cache: Path
    models: Path | None
    data: Path
    offline: bool
    threads: int
    threshold: str | None
    calibration: str | None
    gallery: str
    actor: str | None
    spin: bool
    providers: tuple[str, ...]
    debug: bool
    telemetry_allowed: bool


def settings() -> Settings:
    """Read every variable now (cheap; call again after changing the environment)."""
    return Settings(
        home=home_dir(),
        cache=cache_dir(),
        models=models_dir(),
        data=data_dir(),
        offline=offline(),
        threads=default_threads(),
        threshold=default_threshold(),
        calibration=calibration(),
        gallery=default_gallery(),
        actor=actor(),
        spin=spin_wait(),
        providers=tuple(providers()),
        debug=debug(),
        telemetry_allowed=_flag(get(ENV_TELEMETRY)),
    )
