"""Server settings: one frozen dataclass, passed to worker processes through an environment variable."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from .. import config

ENV_SETTINGS = "FACEATLAS_SERVER_SETTINGS"

MB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``faceatlas serve`` can be told: binding, auth, models, limits and concurrency."""

    host: str = "127.0.0.1"
    port: int = 8000
    gallery: str | None = None
    auth: bool = True
    workers: int = 1
    concurrency: int = 0  # 0: one job per core (divided among the workers)
    threads: int | None = None
    detector: str = "yunet"
    embedder: str = "sface"
    models_dir: str | None = None
    offline: bool | None = None
    max_upload_bytes: int = 15 * MB
    max_pixels: int = 36_000_000
    max_faces: int = 20
    max_images: int = 10
    rate_limit: float = 20.0
    rate_burst: int = 40
    request_timeout: float = 30.0
    max_queue: int = 64
    keys_db: str | None = None
    warmup: bool = True
    log_level: str = "info"
    forwarded_allow_ips: str | None = None  # proxies whose X-Forwarded-For is believed (None: nobody's)
    header_timeout: float = 10.0  # seconds a connection may take to send a request's headers
    max_client_connections: int = 32  # open connections per client address (trusted proxies exempt)

    def __post_init__(self) -> None:
        if self.concurrency < 0:
            raise ValueError("concurrency must be >= 0 (0: one per core)")
        for name in ("workers", "max_upload_bytes", "max_pixels", "max_faces", "max_images", "max_queue"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.request_timeout <= 0 or self.header_timeout <= 0:
            raise ValueError("request_timeout and header_timeout must be positive")
        if self.max_client_connections < 1:
            raise ValueError("max_client_connections must be at least 1")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ValueError("rate_limit must be >= 0 (0 turns it off) and rate_burst >= 1")

    def to_env(self) -> str:
        """The settings as one JSON string (for ``FACEATLAS_SERVER_SETTINGS``)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        """Settings from ``FACEATLAS_SERVER_SETTINGS`` (defaults when unset); unknown keys are ignored."""
        raw = config.server_settings_json(environ)
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def jobs(self) -> int:
        """Images processed at once per process (``concurrency``, or one per core shared among the workers)."""
        if self.concurrency > 0:
            return self.concurrency
        from ..config import default_threads

        return max(1, default_threads() // self.workers)

    @property
    def base_url(self) -> str:
        """The URL people open in a browser."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - only for display
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
