"""The registry's dashboard: a static page whose script reads the registry's JSON API with the API
key the person types in (kept in the tab's session storage). Served without a key, since it holds
no data; every number on it comes from an authenticated API call.

The views themselves are the console's model views (`visiondock/pages/models.js`, with its SVG
charts, served at `/dashboard/common/`): the console at the annotation service's `/app` shows
them beside labeling with one sign-in, and tries versions on photos through the scoring service;
this page is for those who reach the registry alone. Nothing comes from the internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from visiondock.errors import NotFound
from visiondock.pages import shared_page_file
from visiondock.settings import Settings

ASSETS = Path(__file__).parent / "assets"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# Never cached without revalidation: a new release's page must not run an old script.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
def dashboard_page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type=MEDIA_TYPES[".html"], headers=HEADERS)


@router.get("/dashboard/assets/{name}")
def dashboard_asset(name: str) -> FileResponse:
    path = ASSETS / name
    # Only the files shipped in the folder, by their plain names.
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise NotFound(f"the dashboard has no file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/dashboard/common/{name}")
def dashboard_common(name: str) -> FileResponse:
    return shared_page_file(name)


@router.get("/dashboard/config.json")
def dashboard_config(request: Request) -> dict:
    """What the page shows that only the settings know: where callers reach the scoring service."""
    settings: Settings = request.app.state.settings
    return {"scoring_public_url": settings.resolved_scoring_public_url, "promote_alias": "production"}
