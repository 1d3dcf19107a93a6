"""Start the server: refuse unsafe binds, create the first admin key, then run uvicorn (one or more workers)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import config
from ..errors import InvalidInputError
from .keys import KeyStore
from .settings import ENV_SETTINGS, ServerSettings, is_loopback

log = logging.getLogger("faceatlas.server")

FIRST_KEY_SCOPES = ("admin", "read", "enrol", "delete")
H11_MAX_HEAD_BYTES = 16 * 1024  # largest request line plus headers (bigger heads get a 400 and are closed)


def check_bind(settings: ServerSettings) -> None:
    """Refuse to serve without authentication on anything but a loopback address."""
    if not settings.auth and not is_loopback(settings.host):
        raise InvalidInputError(
            "invalid_input",
            f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), not {settings.host!r}",
        )


def first_run_key(settings: ServerSettings) -> str | None:
    """On a key file with no keys at all, create an admin key and return its text (shown once); else None."""
    if not settings.auth:
        return None
    store = KeyStore(settings.keys_db)
    if not store.is_empty():
        return None
    _, token = store.create(FIRST_KEY_SCOPES, ["*"], name="admin (first run)")
    return token


def key_hint(settings: ServerSettings) -> str | None:
    """On a later start (keys exist): the active keys, and how to make an admin key when it is lost or missing."""
    if not settings.auth:
        return None
    store = KeyStore(settings.keys_db)
    if store.is_empty():
        return None
    active = store.list(include_revoked=False)
    admins = sum(1 for k in active if "admin" in k.scopes)
    make = "faceatlas keys create --scope admin"
    if not admins:
        return f"No active admin API key ({len(active)} other active key(s)). Create one with: {make}"
    return (f"API keys: {len(active)} active ({admins} admin); the first-run key is not shown again. "
            f"Lost it? Create a new one with: {make} (then 'faceatlas keys revoke ID' the old one)")


def log_config(level: str) -> dict[str, Any]:
    """Logging for the server processes: plain lines for events, the JSON access lines as they are, on stderr."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"format": "%(message)s"},
        },
        "handlers": {
            "plain": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
            "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["plain"], "level": lvl, "propagate": False},
            "uvicorn.error": {"handlers": ["plain"], "level": lvl, "propagate": False},
            "faceatlas": {"handlers": ["plain"], "level": lvl, "propagate": False},
            "faceatlas.server.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }


def serve(settings: ServerSettings, echo: Callable[[str], None] = print) -> None:
    """Run the server until interrupted (prints the URL, and the first admin key on a fresh home)."""
    import uvicorn

    check_bind(settings)
    token = first_run_key(settings)
    echo(f"faceatlas server: {settings.base_url}  (API docs: {settings.base_url}docs)")
    if token is not None:
        echo("First run: created an admin API key. It is shown only this once; only its hash is stored:")
        echo(f"  {token}")
    elif (hint := key_hint(settings)) is not None:
        echo(hint)
    if not settings.auth:
        echo("WARNING: authentication is OFF (--no-auth); anyone who can reach this port can use the API.")
    config.set_var(ENV_SETTINGS, settings.to_env())
    uvicorn.run(
        "faceatlas.server.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        log_config=log_config(settings.log_level),
        server_header=False,
        http="faceatlas.server.protocol:GuardedH11Protocol",  # request-head deadline, connections per client
        h11_max_incomplete_event_size=H11_MAX_HEAD_BYTES,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        limit_concurrency=max(64, settings.max_queue * 4),
        # X-Forwarded-For/-Proto only from configured proxies; otherwise the socket's peer is the client
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )
