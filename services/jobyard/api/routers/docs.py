"""`/docs`, `/redoc` and `/openapi.json`: served only with `JOBYARD_API_DOCS=true`.

They describe the API's shape (no data, no token needed); off by default so an exposed API
does not hand out its map. Off, each answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from jobyard.api.deps import RuntimeDep
from jobyard.api.problems import ProblemError

OPENAPI_PATH = "/openapi.json"


async def _docs_on(runtime: RuntimeDep) -> None:
    if not runtime.settings.api_docs:
        raise ProblemError(
            404,
            "not-found",
            "Not found",
            "the API documentation is off (set JOBYARD_API_DOCS=true to serve it)",
        )


DocsOn = Annotated[None, Depends(_docs_on)]

router = APIRouter(include_in_schema=False)


def _openapi_url(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + OPENAPI_PATH


@router.get(OPENAPI_PATH)
async def openapi(request: Request, _on: DocsOn) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request, _on: DocsOn) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=_openapi_url(request), title="jobyard API")


@router.get("/redoc")
async def redoc(request: Request, _on: DocsOn) -> HTMLResponse:
    return get_redoc_html(openapi_url=_openapi_url(request), title="jobyard API")
