"""The dashboard: a static page whose script reads the registry's JSON API with the API key the
person types in (kept in the tab's session storage). Served without a key, since it holds no
data; every number on it comes from an authenticated API call.

Charts are drawn by `assets/charts.js`, a small SVG module of our own, so the page needs
nothing from the internet. The page code it shares with the labeling app (`api()`, `h()`,
formatting, the key in the tab) is `visiondock/pages/common.js`, served at `/dashboard/common/`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from visiondock.errors import NotFound
from visiondock.pages import shared_page_file

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
