"""The interactive API docs (Swagger UI at /docs), served without a CDN.

FastAPI's default page loads Swagger UI from a CDN and starts it with an
inline script; both would need holes in our Content-Security-Policy. Here
the Swagger UI files come from the ``swagger-ui-bundle-v2`` package (mounted
at /docs/assets), the start-up code is a static file, and the page itself is
plain HTML, so /docs works offline and under the same strict policy as the
API (hardening/headers.py). ReDoc and the OAuth2 redirect page (both with
inline scripts) are not served.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
INIT_SCRIPT_URL = "/docs/swagger-init.js"

_INIT_SCRIPT = (files("accessai.hardening") / "docs_static" / "swagger-init.js").read_bytes()

# Relative URLs, so the page also works behind a path prefix (root_path).
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API docs</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/swagger-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve /docs from local assets. Create the app with ``docs_url=None``."""
    openapi_url = (app.openapi_url or "/openapi.json").lstrip("/")
    page = _PAGE.format(title=escape(app.title), openapi_url=escape(openapi_url))

    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def swagger_init() -> Response:
        return Response(_INIT_SCRIPT, media_type="text/javascript")

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(INIT_SCRIPT_URL, swagger_init, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_URL, StaticFiles(directory=Path(swagger_ui_path)), name="swagger-ui-assets")
