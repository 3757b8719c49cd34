"""API docs that work offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from files installed with vitrina.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank without one.  The
``fastapi-offline`` package (MIT, a dependency) ships both bundles (``swagger-ui-bundle.js``,
``swagger-ui.css``, ``redoc.standalone.js``) and a favicon; this module serves them under
``/docs-assets`` and replaces the two pages with ones that point there (ReDoc without Google Fonts).

    install_offline_docs(app)   # once, after the app is created
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

ASSETS_URL = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The folder of the installed Swagger UI and ReDoc bundles."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def install_offline_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve ``docs_url`` and ``redoc_url`` from the installed bundles instead of a CDN."""
    app.router.routes[:] = [route for route in app.router.routes if _path(route) not in (docs_url, redoc_url)]
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redoc_url, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )


def _path(route: BaseRoute) -> str | None:
    return getattr(route, "path", None)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")
