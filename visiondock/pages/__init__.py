"""Page code shared by the services' web pages: `common.js` (the API key kept in the tab, `api()`
and `ApiError`, the DOM helper `h()`, number formatting), one file that the annotation service
serves to the labeling app (`/app/common/<name>`) and the registry to the dashboard
(`/dashboard/common/<name>`). Services may import `visiondock`, not each other: the file lives here.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from visiondock.errors import NotFound

PAGES = Path(__file__).parent
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8"}
# Never cached without revalidation: a new release's page must not run an old script.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def shared_page_file(name: str) -> FileResponse:
    """The shared page file `name` (a plain name of a file in this folder), or NotFound."""
    path = PAGES / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise NotFound(f"no shared page file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)
