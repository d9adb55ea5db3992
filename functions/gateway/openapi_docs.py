"""/openapi.json, /docs (Swagger UI) and /redoc, with the right URLs behind an API
Gateway stage or a custom domain's base path (the description itself is openapi.py).

- `install_docs` serves them under the prefix that API Gateway removed: Mangum routes on
  the event's `path` (`/docs`) and sets `root_path` to "", while the browser asked for
  `requestContext.path` (`/prod/docs`). With FastAPI's own pages, /docs would load
  `/openapi.json` from the host's root, which API Gateway does not route, and "Try it
  out" would call /v1/... there too. Routing itself is left alone.
- Swagger UI's own files (JavaScript, CSS, icon) are served from the `swagger-ui-bundle-v2`
  package at /docs/assets/..., so /docs works with no internet (a CDN would leave it blank).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, Response
from starlette.types import Scope

from gateway.http import json_response

# Swagger UI's files served at /docs/assets/<name> (from the swagger-ui-bundle-v2 package).
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def _prefix(scope: Scope) -> str:
    """What API Gateway removed before `scope["path"]`: the stage (`/prod`), or a custom
    domain's base path, from the REST event's `requestContext.path` (Mangum puts the event
    in the scope; the Lambda Web Adapter sends the context as `x-amzn-request-context`)."""
    context: Any = None
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
    else:
        for name, value in scope.get("headers", ()):
            if name == b"x-amzn-request-context":
                try:
                    context = json.loads(value)
                except ValueError:
                    return ""
                break
    full = context.get("path") if isinstance(context, dict) else None
    path = str(scope.get("path", ""))
    if not isinstance(full, str) or not path or full == path or not full.endswith(path):
        return ""
    prefix = full[: -len(path)].rstrip("/")
    return prefix if prefix.startswith("/") else ""


def install_docs(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc, naming the URL the browser used: FastAPI's own
    pages read the ASGI `root_path`, which Mangum leaves empty behind a stage."""

    async def openapi_json(request: Request) -> Response:
        schema = app.openapi()
        prefix = _prefix(request.scope)
        if prefix:
            schema = {**schema, "servers": [{"url": prefix}]}
        return json_response(schema)

    async def swagger(request: Request) -> Response:
        prefix = _prefix(request.scope)
        assets = prefix + "/docs/assets/"
        return get_swagger_ui_html(
            openapi_url=prefix + "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=assets + "swagger-ui-bundle.js",
            swagger_css_url=assets + "swagger-ui.css",
            swagger_favicon_url=assets + "favicon-32x32.png",
            swagger_ui_parameters={"tryItOutEnabled": True},
        )

    async def swagger_asset(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in _ASSETS:
            raise StarletteHTTPException(404, "Not Found")  # the app's 404 for any path
        return FileResponse(
            swagger_ui_dir() / name,
            media_type=_ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def redoc(request: Request) -> Response:
        url = _prefix(request.scope) + "/openapi.json"
        return get_redoc_html(openapi_url=url, title=f"{app.title} - ReDoc")

    app.add_route("/openapi.json", openapi_json, include_in_schema=False)
    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/docs/assets/{name}", swagger_asset, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)


def swagger_ui_dir() -> Path:
    """Where the installed swagger-ui-bundle-v2 keeps Swagger UI's files (imported on the
    first /docs asset request, not at start-up)."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)
