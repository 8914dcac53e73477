"""The console: static ES modules served at `/app`, its settings, and same-origin ways to the registry and
the scoring service.

The console is one page with one sign-in: labeling (projects, images, the review queue,
training) and the models (versions with their metrics, comparisons, runs, trying a version
and the code that calls it). It is plain HTML, CSS and JavaScript modules in `static/` (no
build step, nothing fetched from elsewhere), and the page code it shares with the registry's
dashboard at `/app/common/` (visiondock/pages: the model views among it). It talks to this
service's API with the API key the person signed in with (kept in the tab's session storage),
reaches the registry (training runs, versions, aliases) through `/app/registry/v1/...` and the
scoring service (trying a version on a photo) through `/app/scoring/v1/...` here: one origin
means one sign-in and no CORS settings to keep in step across deployments, and neither service
need be exposed to browsers at all. Each proxy passes the caller's key on; the service behind
it judges the key against its own permissions.
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
from visiondock.images import DEFAULT_MAX_BYTES
from visiondock.limits import body_limit
from visiondock.pages import shared_page_file
from visiondock.settings import Settings
from visiondock.web import require_role

STATIC = Path(__file__).parent / "static"
# What the app may reach in the registry: runs (start, watch) and models (versions, aliases).
REGISTRY_PATHS = ("runs", "models")
# A segment of a registry path: a name, id, number or file name. Never `.`, `..`, empty, or anything
# encoded (`..%2F` arrives here decoded, as `../`): the path cannot leave runs and models.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# What it may reach in the scoring service: the served models, and one photo scored or drawn by a model
# named in the path (at an alias, or at the version it serves).
SCORING_PATHS = re.compile(r"^models(/[A-Za-z0-9][A-Za-z0-9._-]*(/aliases/[A-Za-z0-9][A-Za-z0-9._-]*"
                           r"|/versions/[0-9]+)?/(predict|render))?$")
_FORWARDED_HEADERS = (API_KEY_HEADER.lower(), "authorization", "content-type", "if-match", "if-none-match",
                      "accept")
_RETURNED_HEADERS = ("content-type", "etag", "retry-after", "x-model", "x-model-version", "x-label", "x-uncertain")

router = APIRouter(prefix="/app", include_in_schema=False)
# The page, its scripts and its settings hold no data: open (create_app lists them).
OPEN_PATHS = ("/app", "/app/", "/app/config.json", "/app/static", "/app/common/{name}")
# Any valid key reaches the proxies; the service behind judges the key, passed on, against its own permissions.
_PROXIED = require_role(*ROLES, scope=ResourceScope(delegated="the registry"))
_SCORING_PROXIED = require_role(*ROLES, scope=ResourceScope(delegated="the scoring service"))


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
        "scoring": "/app/scoring",
        "scoring_url": settings.scoring_url,
        # Where callers outside reach the scoring service: the URL the "Use this model" snippets show.
        "scoring_public_url": settings.resolved_scoring_public_url,
        "promote_alias": "production",
        # How "Start training" asks the registry to start the trainer.
        "launch": {"on": "local" if settings.resolved_training_launcher == "local" else "kubernetes"},
    }


async def _forward(request: Request, *, base_url: str, path: str, service: str, setting: str,
                   code: str) -> Response:
    """The request sent on to `base_url` + `path` with the caller's key, and the answer as it came."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
            answer = await client.request(request.method, path, params=request.query_params,
                                          content=await request.body(), headers=headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the {service} at {base_url} ({exc.__class__.__name__}); is it running? "
                          f"({setting})", code=code) from None
    kept = {k: v for k, v in answer.headers.items() if k.lower() in _RETURNED_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


@router.api_route("/registry/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  dependencies=[Depends(_PROXIED)])
async def registry_proxy(request: Request, path: str) -> Response:
    segments = path.split("/")
    if segments[0] not in REGISTRY_PATHS or not all(_SEGMENT.match(segment) for segment in segments):
        raise NotFound(f"the app reaches only the registry's {' and '.join(REGISTRY_PATHS)}")
    settings: Settings = request.app.state.settings
    return await _forward(request, base_url=settings.registry_url, path=f"/v1/{path}", service="registry",
                          setting="VISIONDOCK_REGISTRY_URL", code="registry_unavailable")


@router.api_route("/scoring/v1/{path:path}", methods=["GET", "POST"],
                  dependencies=[Depends(_SCORING_PROXIED), Depends(body_limit(DEFAULT_MAX_BYTES))])
async def scoring_proxy(request: Request, path: str) -> Response:
    if not SCORING_PATHS.match(path):
        raise NotFound("the console reaches only the scoring service's list of served models and a named model's "
                       "predict and render routes")
    settings: Settings = request.app.state.settings
    return await _forward(request, base_url=settings.scoring_url, path=f"/v1/{path}", service="scoring service",
                          setting="VISIONDOCK_SCORING_URL", code="scoring_unavailable")


def mount_app(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="app-static")
