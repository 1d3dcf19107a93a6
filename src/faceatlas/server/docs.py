"""``/docs``: Swagger UI served from the ``fastapi-offline`` package's assets, so the API docs work without a network."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("faceatlas.server")

ASSETS_URL = "/docs/assets"


def swagger_assets() -> Path | None:
    """The folder holding swagger-ui-bundle.js and swagger-ui.css from the installed package, or None."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() and (folder / "swagger-ui.css").is_file() else None


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` to an app built with ``docs_url=None``: local assets when available, else FastAPI's CDN ones."""
    folder = swagger_assets()
    urls: dict[str, Any] = {}
    if folder is None:
        log.warning("fastapi-offline is not installed: /docs loads Swagger UI from a CDN "
                    "(pip install 'faceatlas[server]' to serve it locally)")
    else:
        app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")
        urls = {"swagger_js_url": f"{ASSETS_URL}/swagger-ui-bundle.js", "swagger_css_url": f"{ASSETS_URL}/swagger-ui.css",
                "swagger_favicon_url": f"{ASSETS_URL}/favicon.png"}
    title = f"{app.title} — API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI for this API."""
        return get_swagger_ui_html(openapi_url=openapi_url, title=title, **urls)
