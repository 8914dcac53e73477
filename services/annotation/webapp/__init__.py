"""The labeling app: static ES modules served at `/app`, its settings, and a same-origin way to the registry.

The app is plain HTML, CSS and JavaScript modules in `static/` (no build step, nothing
fetched from elsewhere), and the page code it shares with the dashboard at `/app/common/`
(visiondock/pages). It talks to this service's API with the API key the person
signed in with (kept in the tab's session storage) and reaches the registry (training
runs, versions, aliases) through `/app/registry/v1/...` here: one origin means no CORS
settings to keep in step across deployments, and the registry need not be exposed to
browsers at all. The proxy passes the caller's key on; the registry checks it again.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from visiondock.auth import API_KEY_HEADER, ROLES, ResourceScope
from visiondock.errors import NotFound, Unavailable
from visiondock.pages import shared_page_file
from visiondock.settings import Settings
from visiondock.web import require_role

STATIC = Path(__file__).parent / "static"
# What the app may reach in the registry: runs (start, watch) and models (versions, aliases).
REGISTRY_PATHS = ("runs", "models")
# A segment of a registry path: a name, id, number or file name. Never `.`, `..`, empty, or anything
# encoded (`..%2F` arrives here decoded, as `../`): the path cannot leave runs and models.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FORWARDED_HEADERS = (API_KEY_HEADER.lower(), "authorization", "content-type", "if-match", "if-none-match")

router = APIRouter(prefix="/app", include_in_schema=False)
# The page, its scripts and its settings hold no data: open (create_app lists them).
OPEN_PATHS = ("/app", "/app/", "/app/config.json", "/app/static", "/app/common/{name}")
# Any valid key reaches the proxy; the registry judges the key, passed on, against its own permissions.
_PROXIED = require_role(*ROLES, scope=ResourceScope(delegated="the registry"))


@router.get("")
@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/common/{name}")
def common(name: str) -> FileResponse:
    """Page code shared with the dashboard (visiondock/pages)."""
    return shared_page_file(name)


@router.get("/config.json")
def config(request: Request) -> dict:
    settings: Settings = request.app.state.settings
    return {
        "registry": "/app/registry",
        "registry_url": settings.registry_url,
        "scoring_url": settings.scoring_url,
        "promote_alias": "production",
        # How "Start training" asks the registry to start the trainer.
        "launch": {"on": "local" if settings.resolved_training_launcher == "local" else "kubernetes"},
    }


@router.api_route("/registry/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  dependencies=[Depends(_PROXIED)])
async def registry_proxy(request: Request, path: str) -> Response:
    segments = path.split("/")
    if segments[0] not in REGISTRY_PATHS or not all(_SEGMENT.match(segment) for segment in segments):
        raise NotFound(f"the app reaches only the registry's {' and '.join(REGISTRY_PATHS)}")
    settings: Settings = request.app.state.settings
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
    try:
        async with httpx.AsyncClient(base_url=settings.registry_url, timeout=30.0) as client:
            answer = await client.request(request.method, f"/v1/{path}", params=request.query_params,
                                          content=await request.body(), headers=headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the registry at {settings.registry_url} ({exc.__class__.__name__}); "
                          "is it running? (VISIONDOCK_REGISTRY_URL)", code="registry_unavailable") from None
    kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "etag", "retry-after")}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


def mount_app(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="app-static")
