"""The faceatlas REST service and web page (``faceatlas serve``); needs the ``server`` extra (FastAPI, uvicorn).

Importing this package does no work; :func:`faceatlas.server.app.create_app` builds the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app as create_app
    from .keys import KeyStore as KeyStore
    from .settings import ServerSettings as ServerSettings

_EXPORTS = {
    "create_app": "faceatlas.server.app",
    "KeyStore": "faceatlas.server.keys",
    "ServerSettings": "faceatlas.server.settings",
}


def __getattr__(name: str) -> Any:
    """Import public names lazily."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'faceatlas.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS)
